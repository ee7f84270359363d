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
