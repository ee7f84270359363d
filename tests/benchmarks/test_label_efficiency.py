"""``benchmarks/label_efficiency.py``: the Gal et al. (2017) reproduction, in its ``--quick`` CI form.

The end-to-end test runs the script as a user does (a subprocess per invocation) on the real MNIST files and checks
what a researcher relies on: the per-round CSV, the table beside the paper's numbers and the plot exist; an
interrupted run continues from its last round instead of starting over; a finished run is never recomputed.
Skipped when ``../shared/data/MNIST/raw`` is absent.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "benchmarks" / "label_efficiency.py"
CANDIDATES = [root / "shared" / "data" / "MNIST" / "raw" for root in (REPO_ROOT.parent, REPO_ROOT)]
DATA = next((path for path in CANDIDATES if (path / "train-images-idx3-ubyte.gz").is_file()), None)
needs_mnist = pytest.mark.skipif(DATA is None, reason="shared/data/MNIST/raw (the MNIST .gz files) is not available")


def _load_script():
    spec = importlib.util.spec_from_file_location("label_efficiency", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


le = _load_script()


def _invoke(out: Path, *extra: str) -> str:
    command = [sys.executable, str(SCRIPT), "--quick", "--heuristics", "bald,random", "--seeds", "1"]
    command += ["--threads", "1", "--data", str(DATA), "--out", str(out), *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _history(out: Path, heuristic: str) -> list[dict]:
    path = out / "runs" / f"{heuristic}_seed0" / "active_learning_history.json"
    return json.loads(path.read_text())["rounds"]


@needs_mnist
def test_quick_run_writes_outputs_resumes_and_never_recomputes(tmp_path):
    out = tmp_path / "results"
    rounds = le.Protocol(**{**le.asdict(le.PAPER), **le.QUICK}).num_rounds
    assert rounds >= 3

    # 1) an interrupted invocation: every run stops after 1 round, leaving its checkpoint behind
    log = _invoke(out, "--rounds-per-invocation", "1")
    assert "[bald seed 0] paused" in log and "[random seed 0] paused" in log
    first = {h: _history(out, h) for h in ("bald", "random")}
    for heuristic, records in first.items():
        assert len(records) == 1
        assert (out / "runs" / f"{heuristic}_seed0" / "active_learning_last_round.ckpt").is_file()
        assert not (out / "runs" / f"{heuristic}_seed0" / "run.json").exists()

    # 2) the next invocation continues those runs: the first round is kept as it was, not redone
    log = _invoke(out)
    assert "[bald seed 0] resuming" in log and "[bald seed 0] finished" in log
    for heuristic in ("bald", "random"):
        records = _history(out, heuristic)
        assert len(records) == rounds
        assert records[:1] == first[heuristic]  # same timings and labels: loaded, not recomputed
        assert [r["num_labelled"] for r in records] == [20 + 10 * k for k in range(rounds)]
        labelled = [i for r in records for i in r["indices_added"]]
        assert len(labelled) == len(set(labelled)) == 10 * (rounds - 1)
        assert (out / "runs" / f"{heuristic}_seed0" / "run.json").is_file()

    # ... and ends exactly where an uninterrupted run ends: same labels acquired, same test accuracy every round
    reference = tmp_path / "uninterrupted"
    _invoke(reference)
    for heuristic in ("bald", "random"):
        resumed, straight = _history(out, heuristic), _history(reference, heuristic)
        assert [r["indices_added"] for r in resumed] == [r["indices_added"] for r in straight]
        assert [r["metrics"]["test_acc"] for r in resumed] == [r["metrics"]["test_acc"] for r in straight]

    # outputs: per-round CSV, the table beside the paper's numbers, the plot, the protocol with its deviations
    with open(out / "rounds.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * rounds
    assert {"heuristic", "seed", "labelled", "test_acc", "time_train_s", "time_score_s"} <= set(rows[0])
    assert all(0.0 <= float(r["test_acc"]) <= 1.0 for r in rows)
    table = (out / "table.md").read_text()
    assert "| BALD |" in table and "| 145 |" in table and "| 335 |" in table and "| 835 |" in table
    assert "`mc_iterations`: 5 (paper: 100)" in table and "`test_size`: 500 (paper: 10000)" in table
    assert "Cap: every run goes on to 40 labelled images (20 acquired)" in table
    assert (out / "label_efficiency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    protocol = json.loads((out / "protocol.json").read_text())
    assert {d["setting"] for d in protocol["deviations"]} >= {"mc_iterations", "epochs", "pool_size", "max_labels"}
    assert protocol["protocol"]["mc_iterations"] == 5 and protocol["paper_protocol"]["mc_iterations"] == 100
    assert protocol["protocol"]["init"] == "glorot_uniform" and protocol["protocol"]["fresh_init_each_round"] is True
    for text in (table, (out / "protocol.json").read_text()):  # the outputs speak of the protocol only
        assert "issue" not in text.lower()

    # 3) a third invocation recomputes nothing: the finished runs' files are untouched
    run_files = sorted((out / "runs").rglob("*"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_files if p.is_file()}
    log = _invoke(out)
    assert "[bald seed 0] skipped" in log and "[random seed 0] skipped" in log
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_files if p.is_file()} == before

    # 4) --report-only rebuilds the outputs from the runs on disk and starts none (seed 1 has no run yet)
    expected = {name: (out / name).read_text() for name in ("table.md", "rounds.csv")}
    for name in expected:
        (out / name).unlink()
    _invoke(out, "--report-only", "--seeds", "2")
    assert not (out / "runs" / "bald_seed1").exists() and not (out / "runs" / "random_seed1").exists()
    assert {name: (out / name).read_text() for name in expected} == expected
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_files if p.is_file()} == before


@needs_mnist
def test_a_run_folder_is_never_continued_with_other_settings(tmp_path):
    config = le.run_config(le.PAPER, "bald", 0)
    directory = tmp_path / "runs" / "bald_seed0"
    directory.mkdir(parents=True)
    (directory / le.CONFIG_FILE).write_text(json.dumps(config))
    assert le.run_state(directory, config) == "new"
    other = le.run_config(le.Protocol(mc_iterations=20), "bald", 0)
    with pytest.raises(SystemExit, match="mc_iterations"):
        le.run_state(directory, other)


def test_bad_arguments_are_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "never"
    for argv, expected in (
        (["--heuristics", "bald,coin_flip"], "coin_flip"),
        (["--dataset", "cifar10"], "cifar10"),
        (["--mc-iterations", "1"], "mc-iterations"),
        (["--max-labels", "20"], "max-labels"),
        (["--init", "he_normal"], "he_normal"),
        (["--data", str(tmp_path / "nowhere")], "nowhere"),
    ):
        with pytest.raises(SystemExit, match=expected):
            le.main([*argv, "--out", str(out)])
    assert not out.exists()


def test_crossing_points_and_table_cells():
    def rows(errors: list[float]) -> list[dict]:
        return [{"round": k, "acquired": 10 * k, "test_error": e} for k, e in enumerate(errors)]

    # the first round at or below the level counts, even if a later round is worse again
    assert le.crossing(rows([0.3, 0.12, 0.10, 0.11, 0.04]), 0.10) == 20
    assert le.crossing(rows([0.3, 0.12, 0.10, 0.11, 0.04]), 0.05) == 40
    assert le.crossing(rows([0.3, 0.2]), 0.05) is None
    assert le._format_cell([100, 120, 140], [True] * 3, 980) == "120 ± 20"
    assert le._format_cell([None, None], [True, True], 480) == "not reached (> 480)"
    assert le._format_cell([100, None], [True, True], 480) == "100 (1/2 seeds; 1 not reached by 480)"  # no std of one
    # a run still going has not failed to reach the level: it is counted apart
    assert le._format_cell([100, None], [True, False], 480) == "100 (1/2 seeds; 1 still running)"
    assert le._format_cell([None, None], [True, False], 480) == "not reached (> 480) (1 still running)"
    assert le._format_cell([None], [False], 480) == "running"


def test_deviations_list_every_setting_that_differs_from_the_paper():
    assert le.deviations(le.PAPER) == []
    found = {d["setting"]: d for d in le.deviations(le.Protocol(mc_iterations=20, test_size=2000))}
    assert set(found) == {"mc_iterations", "test_size"}
    assert (
        found["mc_iterations"]["paper"] == 100
        and found["mc_iterations"]["ours"] == 20
        and found["mc_iterations"]["why"]
    )


def test_a_run_another_process_is_working_on_is_left_alone(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    settings = le.Settings(le.PAPER, ["bald"], [0], tmp_path, tmp_path / "data", 1, 1, None, False)
    directory = le.run_dir(tmp_path, "bald", 0)
    directory.mkdir(parents=True)
    with open(directory / le.LOCK_FILE, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another invocation holds this run
        assert le.run_one(settings, "bald", 0) == "busy"
    assert sorted(p.name for p in directory.iterdir()) == [le.LOCK_FILE]  # nothing written, nothing started


def test_glorot_uniform_init_is_keras_default_kernels_and_zero_biases():
    from _gal_model import GalCNN

    torch = pytest.importorskip("torch")
    model = GalCNN(init="glorot_uniform")
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    # Keras' fans: (in * kh * kw, out * kh * kw) for a conv kernel (out, in, kh, kw), (in, out) for a dense one
    expected_fans = [(1 * 16, 32 * 16), (32 * 16, 32 * 16), (3872, 128), (128, 10)]
    assert [(m.in_channels if hasattr(m, "in_channels") else m.in_features) for m in layers] == [1, 32, 3872, 128]
    for layer, (fan_in, fan_out) in zip(layers, expected_fans):
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        weight = layer.weight.detach()
        assert float(weight.abs().max()) <= bound * (1 + 1e-6)  # the bound itself is rounded to float32
        assert float(weight.abs().max()) > 0.9 * bound  # uniform over the whole interval, not a narrower one
        assert float(weight.std()) == pytest.approx(bound / 3**0.5, rel=0.2)
        assert torch.count_nonzero(layer.bias) == 0
    # PyTorch's default, kept as an option, is a different initialisation (non-zero biases)
    assert torch.count_nonzero(GalCNN(init="torch_default").head[1].bias) > 0
    with pytest.raises(ValueError, match="init"):
        GalCNN(init="he_normal")


def test_each_round_starts_from_a_fresh_initialisation_drawn_per_seed_and_round():
    from types import SimpleNamespace

    from _gal_model import GalCNN

    torch = pytest.importorskip("torch")

    def initial_weights(seed: int, round_index: int) -> dict:
        model = GalCNN()
        trainer = SimpleNamespace(fit_loop=SimpleNamespace(current_round=round_index))
        torch.manual_seed(1234 + round_index)  # the global RNG plays no part
        le.FreshInitEachRound(seed).on_train_start(trainer, model)
        return {k: v.clone() for k, v in model.state_dict().items()}

    def same(a: dict, b: dict) -> bool:
        return all(torch.equal(a[k], b[k]) for k in a)

    rounds = [initial_weights(0, r) for r in range(3)]
    assert not same(rounds[0], rounds[1]) and not same(rounds[1], rounds[2])  # a new model every round
    assert same(rounds[1], initial_weights(0, 1))  # reproducible: a resumed run redraws the same weights
    assert not same(rounds[1], initial_weights(1, 1))  # and the seeds differ
    assert not same(initial_weights(0, 1), initial_weights(1, 0))  # no (seed + round) collision


def test_a_run_stops_after_both_crossings_only_when_asked():
    from types import SimpleNamespace

    criterion = le.StopAfterCrossings()
    criterion.loop = SimpleNamespace(history=[SimpleNamespace(metrics={"test_acc": a}) for a in (0.7, 0.91, 0.93)])
    assert not criterion.should_stop({"test_acc": 0.949})  # 10% reached, 5% not yet
    assert criterion.should_stop({"test_acc": 0.95})
    assert le.both_levels_reached([0.3, 0.04]) and not le.both_levels_reached([0.3, 0.06])
    assert le.PAPER.stop_after_crossings is False  # the paper's runs go on to 1,000 labels
    assert [d["setting"] for d in le.deviations(le.Protocol(stop_after_crossings=True))] == ["stop_after_crossings"]


def test_the_paper_protocol_is_the_default():
    assert le.PAPER.mc_iterations == 100 and le.PAPER.test_size == 10_000 and le.PAPER.max_labels == 1000
    assert le.PAPER.init == "glorot_uniform" and le.PAPER.fresh_init_each_round is True
    found = {d["setting"]: d for d in le.deviations(le.Protocol(init="torch_default", fresh_init_each_round=False))}
    assert set(found) == {"init", "fresh_init_each_round"} and all(d["why"] for d in found.values())


@needs_mnist
def test_a_run_redraws_the_weights_at_the_start_of_every_round(tmp_path, monkeypatch):
    import _gal_model

    torch = pytest.importorskip("torch")
    started: list[tuple[int, torch.Tensor]] = []
    on_train_start = le.FreshInitEachRound.on_train_start

    def record(self, trainer, pl_module):
        on_train_start(self, trainer, pl_module)
        started.append((int(trainer.fit_loop.current_round), pl_module.head[1].weight.detach().clone()))

    monkeypatch.setattr(le.FreshInitEachRound, "on_train_start", record)
    threads = torch.get_num_threads()
    try:
        le.main(["--quick", "--heuristics", "random", "--seeds", "1", "--threads", "1", "--data", str(DATA)]
                + ["--max-labels", "30", "--out", str(tmp_path)])  # fmt: skip
    finally:
        torch.set_num_threads(threads)  # the run sets its own; the rest of the session keeps the usual
    assert [r for r, _ in started] == [0, 1]  # every round's training starts from a new draw ...
    assert not torch.equal(started[0][1], started[1][1])
    fresh = _gal_model.GalCNN()
    fresh.initialize(le.init_generator(0, 1))
    assert torch.equal(started[1][1], fresh.head[1].weight.detach())  # ... the one of (seed, round)
