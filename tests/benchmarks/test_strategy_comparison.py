"""``benchmarks/strategy_comparison.py`` in its ``--quick`` form on the digits: outputs, resume, bad flags."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "benchmarks" / "strategy_comparison.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("strategy_comparison", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


sc = _load_script()


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """One torch thread (see ``tests/conftest.py``)."""


def test_quick_digits_run_writes_the_tables_and_resumes_without_training(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    comparison = sc.main(["--quick", "--strategies", "random,entropy", "--out", str(out)])
    assert comparison.strategies == ["random", "entropy"] and comparison.seeds == [0, 1]
    for name in ("table.md", "comparison.json", "label_efficiency.png"):
        assert (out / name).stat().st_size > 0
    assert sorted(p.name for p in (out / "runs").glob("*.json")) == [
        "entropy_seed0.json",
        "entropy_seed1.json",
        "random_seed0.json",
        "random_seed1.json",
    ]
    table = (out / "table.md").read_text()
    assert "| labels | random | entropy |" in table and "vs random" in table
    assert json.loads((out / "comparison.json").read_text())["seeds"] == [0, 1]
    printed = capsys.readouterr().out
    assert "entropy seed 1:" in printed

    # a second invocation reads every finished run back: nothing trains
    import alkit.active.loop as loop_module

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(loop_module.ActiveLearningLoop, "advance", no_training)
    again = sc.main(["--quick", "--strategies", "random,entropy", "--out", str(out)])
    assert again.runs == comparison.runs


def test_default_strategies_include_every_diversity_strategy_alkit_has():
    from alkit.active.heuristics import HEURISTIC_NAMES

    strategies = sc.default_strategies()
    assert strategies[:5] == ["random", "entropy", "margin", "bald", "batch_bald"]
    assert set(strategies) <= set(HEURISTIC_NAMES)
    assert [name for name in sc.DIVERSITY if name in HEURISTIC_NAMES] == strategies[5:]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--strategies", "bald,bold"], "--strategies 'bald,bold': unknown ['bold']; accepted: "),
        (["--seeds", "0"], "--seeds 0 is invalid; accepted: an integer >= 1"),
        (["--strategies", "bald,random", "--baseline", "margin"], "--baseline 'margin' is not among --strategies"),
        (["--rounds", "1"], "--rounds 1 is invalid; accepted: an integer >= 2"),
    ],
)
def test_bad_flags_are_refused_before_anything_loads(argv, message):
    with pytest.raises(SystemExit) as error:
        sc.check_args(sc.build_parser().parse_args(argv))
    assert message in str(error.value)


def test_cold_start_pairs_a_typiclust_initial_set_with_a_random_one(tmp_path):
    out = tmp_path / "cold"
    comparison = sc.main(["--cold-start", "--quick", "--out", str(out)])
    assert comparison.strategies == ["random start", "typiclust start"] and comparison.seeds == [0, 1]
    for seed in comparison.seeds:
        random_start, typical_start = comparison.run("random start", seed), comparison.run("typiclust start", seed)
        assert random_start.initial_weights == typical_start.initial_weights  # only the initial labels differ
        assert random_start.initial_labels != typical_start.initial_labels
        assert len(typical_start.initial_labels) == 8 and random_start.num_labelled == (8, 18, 28)
    assert "typiclust start is " in (out / "cold_start.md").read_text()


# ---------------------------------------------------------------------------------------------------------- mnist
MNIST_CANDIDATES = [root / "shared" / "data" / "MNIST" / "raw" for root in (REPO_ROOT.parent, REPO_ROOT)]
MNIST = next((path for path in MNIST_CANDIDATES if (path / "t10k-labels-idx1-ubyte.gz").is_file()), None)
needs_mnist = pytest.mark.skipif(
    MNIST is None, reason="shared/data/MNIST/raw (the four MNIST .gz files) is not available"
)


@needs_mnist
def test_quick_mnist_run_starts_every_strategy_of_a_seed_from_the_same_balanced_labels(tmp_path):
    import numpy as np
    from _mnist import MNISTActiveData

    out = tmp_path / "mnist"
    argv = ["--dataset", "mnist", "--quick", "--strategies", "random,badge", "--data", str(MNIST), "--out", str(out)]
    comparison = sc.main(argv)
    assert comparison.strategies == ["random", "badge"] and comparison.seeds == [0, 1]
    for seed in comparison.seeds:
        random_run, badge_run = comparison.run("random", seed), comparison.run("badge", seed)
        assert random_run.initial_labels == badge_run.initial_labels
        assert random_run.initial_weights == badge_run.initial_weights
        assert random_run.num_labelled == badge_run.num_labelled == (20, 30)
        # same labels, same weights, same training draws: the first round measures the same model
        assert random_run.values[0] == badge_run.values[0]
        targets = np.asarray(MNISTActiveData(MNIST, val_size=100, test_size=200, seed=seed).train_dataset.targets)
        assert np.bincount(targets[list(random_run.initial_labels)], minlength=10).tolist() == [2] * 10
    assert comparison.run("random", 0).initial_labels != comparison.run("random", 1).initial_labels
    assert "| labels | random | badge |" in (out / "table.md").read_text()
    assert (out / "label_efficiency.png").stat().st_size > 0


def test_diversity_strategies_read_the_gal_cnns_128_penultimate_features():
    import torch
    from _gal_model import GalCNN

    from alkit.active.embeddings import EmbeddingTap

    model = GalCNN().eval()
    tap = EmbeddingTap(model)
    assert tap.linear is model.head[-1] and tap.linear.in_features == 128
    images = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        embeddings = tap.forward(images, 3)
        penultimate = model.head[:-1](model.backbone(images))
    assert embeddings.shape == (3, 128) and torch.equal(embeddings, penultimate)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--test-size", "500"], "--test-size 500 does not apply to --task digits; accepted with: mnist"),
        (["--dataset", "mnist", "--initial-labels", "25"], "--initial-labels 25 is invalid for mnist; accepted: a"),
        (["--dataset", "mnist", "--test-size", "5"], "--test-size 5 is invalid; accepted: 10..10000"),
    ],
)
def test_bad_mnist_flags_are_refused_before_anything_loads(argv, message):
    with pytest.raises(SystemExit) as error:
        sc.check_args(sc.build_parser().parse_args(argv))
    assert message in str(error.value)


def test_pixel_pca_projects_on_the_leading_principal_components_of_the_sample():
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    # 300 "images" of 4x4 pixels whose variance lies mostly along two directions
    basis = np.linalg.qr(rng.normal(size=(16, 16)))[0]
    scales = np.array([5.0, 3.0] + [0.1] * 14)
    flat = (rng.normal(size=(300, 16)) * scales) @ basis.T + 2.0
    images = torch.from_numpy(flat.reshape(300, 1, 4, 4)).float()
    pca = sc.PixelPCA(images, components=2, seed=0, sample=300)
    embedded = pca.embed(images)
    assert embedded.shape == (300, 2)
    # the same subspace as numpy's SVD of the centred data, largest component first (signs are arbitrary)
    centred = flat - flat.mean(0)
    expected = np.linalg.svd(centred, full_matrices=False)[2][:2]
    assert np.allclose(np.abs(expected @ pca.components.double().numpy()), np.eye(2), atol=1e-3)
    assert np.abs(embedded[:, 0].numpy()).std() > np.abs(embedded[:, 1].numpy()).std()
    with pytest.raises(ValueError, match="`components=17` is invalid; accepted: 1..16"):
        sc.PixelPCA(images, components=17)


@needs_mnist
def test_mnist_train_size_keeps_a_stratified_subset_drawn_per_seed_and_the_same_test_set():
    import numpy as np
    from _mnist import MNISTActiveData

    full = MNISTActiveData(MNIST, val_size=100, test_size=200, seed=3)
    small, other = (MNISTActiveData(MNIST, val_size=100, test_size=200, seed=s, train_size=2000) for s in (3, 4))
    assert len(small.train_dataset) == 2000 and len(full.train_dataset) == 59_900
    counts = np.bincount(np.asarray(small.train_dataset.targets), minlength=10)
    expected = np.bincount(np.asarray(full.train_dataset.targets), minlength=10) * 2000 / 59_900
    assert np.all(np.abs(counts - expected) < 1)  # class proportions kept (largest remainders)
    assert not torch_equal(small.train_images, other.train_images)  # drawn per seed
    assert torch_equal(small.val_x, full.val_x) and torch_equal(small.test_x, other.test_x)
    with pytest.raises(ValueError, match="`train_size=5` is invalid; accepted: 10..59900 or None"):
        MNISTActiveData(MNIST, val_size=100, test_size=200, train_size=5)


def torch_equal(a, b) -> bool:
    import torch

    return a.shape == b.shape and bool(torch.equal(a, b))


@needs_mnist
def test_mnist_cold_start_pairs_a_typiclust_initial_set_with_a_random_one(tmp_path):
    out = tmp_path / "cold"
    argv = ["--dataset", "mnist", "--cold-start", "--quick", "--train-size", "2000", "--data", str(MNIST)]
    comparison = sc.main([*argv, "--out", str(out)])
    assert comparison.strategies == ["random start", "typiclust start"] and comparison.seeds == [0, 1]
    for seed in comparison.seeds:
        random_start, typical_start = comparison.run("random start", seed), comparison.run("typiclust start", seed)
        assert random_start.initial_weights == typical_start.initial_weights
        assert random_start.initial_labels != typical_start.initial_labels
        assert all(index < 2000 for index in typical_start.initial_labels + random_start.initial_labels)
        assert random_start.num_labelled == typical_start.num_labelled == (8, 18, 28)
    assert "typiclust start is " in (out / "cold_start.md").read_text()
