"""Strategy comparisons: equal starts within a seed, the AULC by hand, paired statistics, files, bad input."""

from __future__ import annotations

import json
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402
from torch import nn  # noqa: E402

from alkit.active.comparison import (  # noqa: E402
    StrategyComparison,
    StrategyRun,
    compare_strategies,
    normalised_aulc,
    weights_fingerprint,
)
from alkit.lightning import pl  # noqa: E402
from tests.active.synthetic import TinyData  # noqa: E402


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """One torch thread (see ``tests/conftest.py``)."""


class TinyClassifier(pl.LightningModule):
    """A dropout MLP logging test accuracy: weights drawn from the global RNG, as any model's are."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 16), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_acc", (self(x).argmax(-1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.9)


SETTINGS = {"rounds": 3, "initial_num_labels": 6, "query_size": 3, "mc_iterations": 3}


@pytest.fixture(scope="module")
def comparison_and_models():
    torch.set_num_threads(1)
    started: list[tuple[StrategyRun, str, list[int]]] = []

    def record(run, model, datamodule, trainer):
        started.append((run, weights_fingerprint(model), datamodule.labelled_indices.tolist()))

    comparison = compare_strategies(
        TinyData(n=40, with_test=True),
        TinyClassifier,
        ["entropy", "random", "bald"],
        seeds=[0, 1],
        baseline="entropy",
        on_run=record,
        **SETTINGS,
    )
    return comparison, started


def test_within_a_seed_every_strategy_starts_from_the_same_labels_and_weights(comparison_and_models):
    comparison, started = comparison_and_models
    assert comparison.strategies == ["entropy", "random", "bald"] and comparison.seeds == [0, 1]
    for seed in comparison.seeds:
        runs = [comparison.run(strategy, seed) for strategy in comparison.strategies]
        assert len({run.initial_labels for run in runs}) == 1 and len(runs[0].initial_labels) == 6
        assert len({run.initial_weights for run in runs}) == 1
        # same start and same training draws: the first round (before any acquisition) measures the same model
        assert len({run.values[0] for run in runs}) == 1
    # seeds differ in both
    first, second = (comparison.run("entropy", seed) for seed in comparison.seeds)
    assert first.initial_labels != second.initial_labels and first.initial_weights != second.initial_weights
    # the models really trained (the fingerprint after the run is not the start's) and labelled query_size per round
    for run, final_fingerprint, labelled in started:
        assert final_fingerprint != run.initial_weights
        assert len(labelled) == 6 + 3 * (SETTINGS["rounds"] - 1)
        assert run.num_labelled == (6, 9, 12)


def test_strategies_choose_different_labels(comparison_and_models):
    _, started = comparison_and_models
    by_seed: dict[int, set[tuple[int, ...]]] = {}
    for run, _, labelled in started:
        by_seed.setdefault(run.seed, set()).add(tuple(labelled))
    assert any(len(chosen) > 1 for chosen in by_seed.values())


def test_aulc_is_the_trapezoid_over_the_label_range():
    # (10, 0.5) -> (20, 0.7) -> (40, 0.8): areas 10 * 0.6 + 20 * 0.75 = 21 over a range of 30
    assert normalised_aulc([10, 20, 40], [0.5, 0.7, 0.8]) == pytest.approx(21 / 30)
    assert normalised_aulc([0, 1], [0.3, 0.3]) == pytest.approx(0.3)
    run = StrategyRun("bald", 0, (10, 20, 40), (0.5, 0.7, 0.8))
    assert run.aulc == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("labels", "values", "message"),
    [
        ([10], [0.5], "at least 2 rounds"),
        ([10, 20], [0.5], "must pair up"),
        ([10, 10], [0.5, 0.6], "strictly increase"),
        ([10, 20], [0.5, math.nan], "non-finite"),
    ],
)
def test_aulc_refuses_curves_without_an_area(labels, values, message):
    with pytest.raises(ValueError, match=message):
        normalised_aulc(labels, values)


def _runs(table: dict[str, list[list[float]]]) -> list[StrategyRun]:
    return [
        StrategyRun(strategy, seed, tuple(10 * (i + 1) for i in range(len(values))), tuple(values))
        for strategy, curves in table.items()
        for seed, values in enumerate(curves)
    ]


def test_intervals_and_paired_tests_are_those_of_scipy():
    runs = _runs(
        {
            "random": [[0.5, 0.6, 0.7], [0.55, 0.6, 0.72], [0.5, 0.62, 0.69], [0.52, 0.58, 0.7]],
            "bald": [[0.5, 0.7, 0.8], [0.55, 0.68, 0.8], [0.5, 0.71, 0.79], [0.52, 0.69, 0.82]],
        }
    )
    comparison = StrategyComparison(runs)
    bald, random = comparison.aulc("bald"), comparison.aulc("random")
    assert bald[0] == pytest.approx(normalised_aulc([10, 20, 30], [0.5, 0.7, 0.8]))
    interval = comparison.interval("bald")
    expected = stats.t.interval(0.95, df=3, loc=bald.mean(), scale=stats.sem(bald))
    assert (interval.low, interval.high) == pytest.approx(expected)
    versus = comparison.versus("bald", "random")
    reference = stats.ttest_rel(bald, random)
    assert versus.t_statistic == pytest.approx(reference.statistic)
    assert versus.p_value == pytest.approx(reference.pvalue)
    assert comparison.verdict("bald", "random") == "ahead" and comparison.verdict("random", "bald") == "behind"
    line = comparison.summary_line("bald")
    assert line.startswith("bald is ahead of random on the area under the test_acc curve")
    assert f"{bald.mean():.3f} vs {random.mean():.3f}" in line and "paired over 4 seeds" in line
    # per round: the mean curve and a band that holds it; the first round is equal for every seed pair
    labels, mean, low, high = comparison.curve("bald")
    assert labels.tolist() == [10, 20, 30] and np.all(low <= mean) and np.all(mean <= high)
    np.testing.assert_allclose(comparison.round_std("random"), np.std(_values(runs, "random"), axis=0, ddof=1))


def _values(runs: list[StrategyRun], strategy: str) -> np.ndarray:
    return np.array([run.values for run in runs if run.strategy == strategy])


def test_noise_without_an_effect_is_level():
    runs = _runs({"random": [[0.5, 0.6], [0.6, 0.7], [0.5, 0.6]], "entropy": [[0.5, 0.62], [0.6, 0.68], [0.5, 0.6]]})
    comparison = StrategyComparison(runs)
    assert comparison.verdict("entropy", "random") == "level"
    assert "entropy is level with random" in comparison.summary_line("entropy")


def test_one_seed_gives_a_sign_and_says_no_test_was_possible():
    comparison = StrategyComparison(_runs({"random": [[0.5, 0.6]], "bald": [[0.5, 0.7]]}))
    assert comparison.versus("bald", "random") is None
    assert comparison.verdict("bald", "random") == "ahead"
    assert "1 seed: no test" in comparison.summary_line("bald")
    assert "-" in comparison.table().splitlines()[2]


def test_table_json_round_trip_and_plot(comparison_and_models, tmp_path):
    comparison, _ = comparison_and_models
    table = comparison.table()
    assert "vs random" in table and "vs entropy" in table and "(2 seeds, paired t-test over seeds)" in table
    path = comparison.save_json(tmp_path / "out" / "comparison.json")
    assert [p.name for p in path.parent.iterdir()] == ["comparison.json"]  # atomic: no temporary file left
    data = json.loads(path.read_text())
    assert data["baseline"] == "entropy" and len(data["runs"]) == 6
    assert data["runs"][0]["aulc"] == pytest.approx(comparison.runs[0].aulc)
    again = StrategyComparison.load_json(path)
    assert again.runs == comparison.runs and again.table() == table
    ax = comparison.plot(seed_lines=True)
    assert len(ax.collections) == 3  # one band per strategy
    assert len(ax.lines) == 3 * (1 + 2)  # a mean line and one line per seed for each strategy


def test_run_dir_resumes_finished_runs_and_refuses_other_settings(tmp_path):
    calls = []

    def make_model():
        calls.append(1)
        return TinyClassifier()

    data = TinyData(n=40, with_test=True)
    kwargs = dict(strategies=["random", "entropy"], seeds=[3], run_dir=tmp_path, **SETTINGS)
    first = compare_strategies(data, make_model, **kwargs)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["entropy_seed3.json", "random_seed3.json"]
    trained = []
    again = compare_strategies(data, make_model, on_run=lambda *a: trained.append(a), **kwargs)
    assert again.runs == first.runs and trained == []  # read back, nothing trained again
    with pytest.raises(ValueError, match="made with other settings"):
        compare_strategies(data, make_model, **{**kwargs, "query_size": 4})


def test_per_seed_datamodule_arguments_give_each_seed_its_own_initial_set_and_every_strategy_the_same():
    asked = []

    def per_seed(seed: int) -> dict[str, Any]:
        asked.append(seed)
        chosen = np.random.default_rng(seed).choice(40, size=6, replace=False)
        return {"map_dataset_to_labelled": lambda dataset: np.isin(np.arange(len(dataset)), chosen)}

    settings = {**SETTINGS, "initial_num_labels": 0}
    comparison = compare_strategies(
        TinyData(n=40, with_test=True), TinyClassifier, ["random", "entropy"], [4, 5], datamodule_kwargs=per_seed,
        **settings,
    )  # fmt: skip
    assert asked == [4, 5]  # once per seed, not once per run
    for seed in (4, 5):
        expected = tuple(sorted(np.random.default_rng(seed).choice(40, size=6, replace=False).tolist()))
        assert comparison.run("random", seed).initial_labels == expected
        assert comparison.run("entropy", seed).initial_labels == expected
        assert comparison.run("random", seed).num_labelled == (6, 9, 12)


def test_a_named_pair_runs_its_heuristic_under_its_name():
    from baal.active.heuristics import BALD

    comparison = compare_strategies(
        TinyData(n=40, with_test=True), TinyClassifier, ["random", ("my_bald", BALD())], [0], **SETTINGS
    )
    assert comparison.strategies == ["random", "my_bald"]
    named = compare_strategies(TinyData(n=40, with_test=True), TinyClassifier, ["random", "bald"], [0], **SETTINGS)
    # the same heuristic as the name "bald" resolves to: the same labels, so the same curve
    assert comparison.run("my_bald", 0).values == named.run("bald", 0).values


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"strategies": []}, "`strategies` must be a non-empty list"),
        ({"strategies": "bald"}, "`strategies` must be a non-empty list"),
        ({"strategies": ["bald", "bold"]}, r"`strategies` holds 'bold', which is not a strategy; accepted: bald"),
        ({"strategies": ["bald", "bald"]}, "names a strategy twice"),
        ({"seeds": []}, "`seeds` must be a non-empty list"),
        ({"seeds": [0, 0]}, "repeats a seed"),
        ({"seeds": [-1]}, r"`seeds` holds -1; accepted: integers >= 0"),
        ({"rounds": 1}, r"`rounds` must be an integer >= 2 \(an area needs two points\), got 1"),
        ({"baseline": "margin"}, r"`baseline='margin'` is not among `strategies`; accepted: \['bald', 'random'\]"),
    ],
)
def test_bad_arguments_are_refused_before_anything_trains(changes, message):
    built = []

    def make_model():
        built.append(1)
        return TinyClassifier()

    arguments = {"strategies": ["bald", "random"], "seeds": [0, 1], **SETTINGS, **changes}
    with pytest.raises(ValueError, match=message):
        compare_strategies(TinyData(n=40, with_test=True), make_model, **arguments)
    assert built == []


def test_a_metric_never_logged_is_named_with_the_logged_ones():
    with pytest.raises(ValueError, match=r"logged `metric='val_acc'` in 0 round\(s\).*Logged metrics: \["):
        compare_strategies(
            TinyData(n=40, with_test=True), TinyClassifier, ["random"], [0], metric="val_acc", **SETTINGS
        )


def test_a_comparison_needs_every_strategy_on_every_seed():
    runs = _runs({"random": [[0.5, 0.6], [0.6, 0.7]], "bald": [[0.5, 0.7]]})
    with pytest.raises(ValueError, match=r"strategy 'bald' has no run for seed\(s\) \[1\]"):
        StrategyComparison(runs)
    with pytest.raises(ValueError, match="`baseline='margin'` is not among the strategies run"):
        StrategyComparison(runs[:2], baseline="margin")
