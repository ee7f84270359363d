"""The demos behind ``alkit demo``: finding data and weights, checking flags first, and the hymenoptera run itself."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from alkit.demos import _common, hymenoptera  # noqa: E402
from alkit.demos._common import DemoError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SHARED_HYMENOPTERA = SHARED_DATA / "hymenoptera_data"
SHARED_WEIGHTS = SHARED_DATA / "weights" / "mobilenet_v2_imagenet_features.pth"
needs_hymenoptera = pytest.mark.skipif(
    not SHARED_HYMENOPTERA.is_dir(), reason=f"needs the shared hymenoptera images at {SHARED_HYMENOPTERA}"
)


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """Every test here runs on one torch thread (see ``tests/conftest.py``)."""


# ------------------------------------------------------------------------------------------------ weights
@pytest.mark.skipif(not SHARED_WEIGHTS.is_file(), reason=f"needs the shared MobileNetV2 weights at {SHARED_WEIGHTS}")
def test_auto_weights_are_the_shared_imagenet_mobilenet():
    pretrained, description, warning = _common.resolve_weights("mobilenet_v2", "auto")
    assert Path(pretrained).resolve() == SHARED_WEIGHTS.resolve()
    assert warning is None and "ImageNet" in description


def test_a_backbone_without_offline_weights_is_random_and_says_so():
    pretrained, _, warning = _common.resolve_weights("resnet18", "auto")
    assert pretrained is False
    assert "RANDOM" in warning and "--weights" in warning


@pytest.mark.parametrize(("value", "expected"), [("none", False), ("imagenet", True)])
def test_weight_keywords(value, expected):
    pretrained, _, warning = _common.resolve_weights("resnet18", value)
    assert pretrained is expected and warning is None


def test_a_missing_weights_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "weights.pth"
    with pytest.raises(DemoError, match=r"--weights '.*weights\.pth': no such file; accepted: .*'auto', 'imagenet'"):
        _common.resolve_weights("resnet18", missing)


# ------------------------------------------------------------------------------------------------ output folders
def test_default_output_folders_are_new_for_every_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = _common.new_output_dir("demo"), _common.new_output_dir("demo")
    assert first != second and first.is_dir() and second.is_dir()
    assert first.parent == second.parent == Path("alkit_runs") / "demo"


def test_an_output_folder_with_an_earlier_run_is_kept_unless_overwrite(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    assert _common.new_output_dir("demo", folder) == folder  # empty: fine
    (folder / "final_model.ckpt").write_text("earlier")
    with pytest.raises(DemoError, match="already holds files of an earlier run"):
        _common.new_output_dir("demo", folder)
    assert _common.new_output_dir("demo", folder, overwrite=True) == folder
    (tmp_path / "file").write_text("")
    with pytest.raises(DemoError, match="is a file"):
        _common.new_output_dir("demo", tmp_path / "file")


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    path = _common.write_text_atomic(tmp_path / "a" / "summary.txt", "hello\n")
    assert path.read_text() == "hello\n"
    assert [p.name for p in path.parent.iterdir()] == ["summary.txt"]


def test_table_cells_are_aligned_and_missing_values_shown_as_dash():
    table = _common.format_table(["round", "test_acc"], [[1, 0.5], [10, math.nan], [11, None]])
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[2].split() == ["1", "0.500"] and lines[3].split() == ["10", "-"] and lines[4].split() == ["11", "-"]


# ------------------------------------------------------------------------------------------------ flags
def _args(*argv: str) -> argparse.Namespace:
    return hymenoptera.build_parser().parse_args(list(argv))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--query-size", "0"], "--query-size 0 is invalid; accepted: an integer >= 1"),
        (["--rounds", "0"], "--rounds 0 is invalid"),
        (["--initial-labels", "1"], "--initial-labels 1 is invalid; accepted: an integer >= 2"),
        (["--val-split", "1"], "--val-split 1.0 is invalid; accepted: a number in [0, 1)"),
        (["--dropout", "1"], "--dropout 1.0 is invalid"),
        (["--heuristic", "bald", "--mc-iterations", "1"], "--mc-iterations 1 is invalid with --heuristic bald"),
        (["--backbone", "vgg7"], "--backbone 'vgg7' is unknown; accepted: ["),
        (["--seeds", "0"], "--seeds 0 is invalid; accepted: an integer >= 1"),
        (["--weight-decay", "-1"], "--weight-decay -1.0 is invalid; accepted: a number >= 0"),
        (
            ["--heuristic", "bald", "--baseline", "bald"],
            "--baseline bald is the --heuristic itself; accepted: another strategy, or 'none'",
        ),
        (
            ["--heuristic", "entropy", "--baseline", "bald", "--mc-iterations", "1"],
            "--mc-iterations 1 is invalid with --baseline bald",
        ),
    ],
)
def test_bad_flags_are_refused_before_any_work(argv, message):
    with pytest.raises(DemoError) as error:
        hymenoptera.check_args(_args(*argv))
    assert message in str(error.value)


def test_a_single_pass_heuristic_needs_no_mc_iterations(tmp_path):
    (tmp_path / "train" / "ants").mkdir(parents=True)
    args = hymenoptera.check_args(_args("--heuristic", "entropy", "--mc-iterations", "1", "--data-dir", str(tmp_path)))
    assert args.mc_iterations == 1
    assert args.test_dir is None  # no val/ folder: no test set, not an error


def test_the_baseline_runs_beside_the_heuristic_unless_none(tmp_path):
    (tmp_path / "train" / "ants").mkdir(parents=True)
    data = ("--data-dir", str(tmp_path))
    assert hymenoptera.check_args(_args(*data)).strategies == [hymenoptera.DEFAULT_HEURISTIC, "random"]
    assert hymenoptera.check_args(_args("--heuristic", "bald", "--baseline", "entropy", *data)).strategies == [
        "bald",
        "entropy",
    ]
    assert hymenoptera.check_args(_args("--heuristic", "bald", "--baseline", "none", *data)).strategies == ["bald"]


def test_unknown_heuristic_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        _args("--heuristic", "bold")
    assert "invalid choice: 'bold'" in capsys.readouterr().err


def test_missing_images_point_to_the_download_script(tmp_path):
    with pytest.raises(DemoError) as error:
        hymenoptera.check_args(_args("--data-dir", str(tmp_path)))
    assert "no train/ folder" in str(error.value)
    assert "data_scripts/download_hymenoptera.py" in str(error.value)


def test_quick_presets_the_settings_not_given_explicitly():
    args = _args("--quick", "--rounds", "9")
    try:
        hymenoptera.check_args(args)
    except DemoError:
        pass  # without the images the data check fails last; the settings were applied before it
    assert args.rounds == 9  # an explicit flag wins over --quick's preset
    assert args.image_size == hymenoptera.QUICK["image_size"]
    assert args.pool_size == hymenoptera.QUICK["pool_size"]


@needs_hymenoptera
def test_default_data_dir_is_the_shared_copy():
    assert hymenoptera.default_data_dir().resolve() == SHARED_HYMENOPTERA.resolve()


# ------------------------------------------------------------------------------------------------ the run
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    if not SHARED_HYMENOPTERA.is_dir():
        pytest.skip(f"needs the shared hymenoptera images at {SHARED_HYMENOPTERA}")
    output = tmp_path_factory.mktemp("hymenoptera") / "run"
    args = _args(
        "--quick", "--heuristic", "bald", "--data-dir", str(SHARED_HYMENOPTERA), "--output", str(output), "--seed", "3"
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: runs before the function-scoped one_torch_thread fixture
    try:
        return hymenoptera.run(args)
    finally:
        torch.set_num_threads(threads)


@needs_hymenoptera
def test_quick_run_labels_query_size_new_images_per_round_and_none_after_the_last(quick_run):
    history, datamodule = quick_run["history"], quick_run["datamodule"]  # the heuristic's first seed
    quick = hymenoptera.QUICK
    assert [r.round for r in history] == list(range(quick["rounds"]))
    assert [r.num_labelled for r in history] == [
        quick["initial_labels"] + r * quick["query_size"] for r in range(quick["rounds"])
    ]
    added = [i for r in history[:-1] for i in r.indices_added]
    assert len(added) == len(set(added)) == quick["query_size"] * (quick["rounds"] - 1)
    assert history[-1].indices_added == []  # no pool scoring for a label nobody would train on
    assert set(added) <= set(datamodule.train_indices.tolist())


@needs_hymenoptera
def test_quick_run_measures_the_test_set_every_round(quick_run):
    for record in quick_run["history"]:
        assert 0.0 <= record.metrics["test_acc"] <= 1.0
        assert record.train_time_s > 0
    assert quick_run["datamodule"].has_test  # val/ (153 images) is the test set


@needs_hymenoptera
def test_quick_run_saves_history_plot_and_the_final_model(quick_run):
    from alkit.active import ActiveLearningHistory
    from alkit.vision import ImageClassifier

    files, output = quick_run["files"], quick_run["output_dir"]
    assert all(path.parent == output for path in files.values())
    assert ActiveLearningHistory.load(files["history_json"]) == quick_run["history"]
    assert len(ActiveLearningHistory.load(files["history_csv"])) == len(quick_run["history"])
    assert files["plot"].stat().st_size > 0
    summary = files["summary"].read_text()
    assert quick_run["summary_line"] in summary and "vs random" in summary

    # the checkpoint holds the weights trained on the final labelled set (Flash's held the initial ones)
    model = quick_run["model"]
    checkpoint = torch.load(files["checkpoint"], map_location="cpu", weights_only=False)
    for name, value in model.state_dict().items():
        assert torch.equal(checkpoint["state_dict"][name], value), name
    head = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(model.num_features, 2))
    loaded = ImageClassifier.load_from_checkpoint(files["checkpoint"], head=head)
    path, label, probability = quick_run["prediction"]
    assert loaded.predict(path) == label in ("ants", "bees")
    assert 0.5 <= probability <= 1.0


@needs_hymenoptera
def test_quick_run_compares_the_heuristic_with_random_from_the_same_start(quick_run):
    from alkit.active.comparison import StrategyComparison

    comparison = quick_run["comparison"]
    quick = hymenoptera.QUICK
    assert comparison.strategies == ["bald", "random"] and comparison.seeds == list(range(3, 3 + quick["seeds"]))
    for seed in comparison.seeds:
        bald, random = comparison.run("bald", seed), comparison.run("random", seed)
        assert bald.initial_labels == random.initial_labels and len(bald.initial_labels) == quick["initial_labels"]
        assert bald.initial_weights == random.initial_weights
        assert bald.values[0] == random.values[0]  # same labels, weights and draws: the same first model
    first, second = (comparison.run("bald", seed) for seed in comparison.seeds)
    assert first.initial_labels != second.initial_labels
    assert StrategyComparison.load_json(quick_run["files"]["comparison"]).runs == comparison.runs
    line = quick_run["summary_line"]
    assert line.startswith("bald is ") and f"paired over {quick['seeds']} seeds" in line
    assert any(word in line for word in ("ahead of random", "level with random", "behind random"))


@needs_hymenoptera
def test_the_final_image_model_scores_the_test_images_as_its_feature_run_did(quick_run):
    # the head trained on features computed once, put back on the backbone, classifies the image files the same way
    feature_accuracy = quick_run["history"][-1].metrics["test_acc"]
    assert quick_run["final_metrics"]["test_acc"] == pytest.approx(feature_accuracy, abs=0.01)


@needs_hymenoptera
def test_quick_run_is_reproducible_with_its_seed(quick_run, tmp_path):
    again_dir = str(tmp_path / "again")
    args = _args(
        "--quick", "--heuristic", "bald", "--data-dir", str(SHARED_HYMENOPTERA), "--output", again_dir, "--seed", "3"
    )
    again = hymenoptera.run(args)
    first = quick_run["history"]
    assert [r.indices_added for r in again["history"]] == [r.indices_added for r in first]
    np.testing.assert_allclose(
        [r.metrics["test_acc"] for r in again["history"]], [r.metrics["test_acc"] for r in first], atol=1e-6
    )


@needs_hymenoptera
def test_settings_that_do_not_fit_the_data_are_refused_before_the_output_folder_exists(tmp_path):
    out = tmp_path / "run"
    args = _args("--initial-labels", "400", "--data-dir", str(SHARED_HYMENOPTERA), "--output", str(out))
    with pytest.raises(DemoError, match=r"--initial-labels 400.*exceeds the 245 unlabelled samples"):
        hymenoptera.run(args)
    assert not out.exists()
