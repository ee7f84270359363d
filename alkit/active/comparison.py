"""Compare acquisition strategies fairly, and say with statistics whether one beats another.

A single label-efficiency curve cannot tell an acquisition effect from training noise: on a few hundred labels the
test accuracy of one run moves by several points between rounds. A comparison is only fair when, within a seed,
every strategy starts from the **same initial labels, the same initial weights and the same test set**, so the
only difference between two runs of a seed is what the strategy chose to label. :func:`compare_strategies` builds
the runs that way (and checks it), and :class:`StrategyComparison` summarises them:

* per run, the normalised area under the label-efficiency curve (:func:`normalised_aulc`: the trapezoid over the
  labels divided by the label range, so it reads as "the mean metric over the labelling budget");
* per strategy, the mean AULC over seeds with its Student-t confidence interval;
* per strategy, the paired difference against ``random`` and against a chosen baseline, tested over seeds with a
  paired t-test (:mod:`alkit.statistics`); pairing removes the part of the noise a seed's draw shares.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.integrate import trapezoid

from alkit._io import write_text_atomic
from alkit.statistics import MeanInterval, PairedComparison, mean_interval, paired_comparison

__all__ = [
    "StrategyComparison",
    "StrategyRun",
    "compare_strategies",
    "normalised_aulc",
    "weights_fingerprint",
]


def normalised_aulc(num_labelled: Sequence[float], values: Sequence[float]) -> float:
    """Area under ``values`` against ``num_labelled`` (trapezoid rule) divided by the label range.

    Dividing by ``num_labelled[-1] - num_labelled[0]`` keeps the number on the metric's own scale (an accuracy
    AULC is between 0 and 1) and comparable between budgets. Rounds need not be evenly spaced.

    Raises:
        ValueError: fewer than 2 points, lengths that differ, labels that do not strictly grow, or non-finite values.
    """
    x = np.asarray(num_labelled, dtype=float).reshape(-1)
    y = np.asarray(values, dtype=float).reshape(-1)
    if x.size != y.size:
        raise ValueError(f"`num_labelled` has {x.size} values but `values` has {y.size}: they must pair up.")
    if x.size < 2:
        raise ValueError(f"the area under a curve needs at least 2 rounds, got {x.size}.")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"non-finite labels or values: num_labelled={x.tolist()}, values={y.tolist()}.")
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"`num_labelled` must strictly increase, got {x.tolist()}.")
    return float(trapezoid(y, x) / (x[-1] - x[0]))


def weights_fingerprint(module: Any) -> str:
    """SHA-256 of a module's state dict (names, shapes, dtypes and values): equal fingerprints, equal weights."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        array = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(array.shape)}:{array.dtype}".encode())
        digest.update(array.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class StrategyRun:
    """One (strategy, seed) run: its curve and what it started from.

    Attributes:
        strategy: the strategy's name.
        seed: the seed of the initial labels, weights and training draws.
        num_labelled: labels trained on, per round.
        values: the compared metric per round (e.g. test accuracy).
        initial_labels: dataset indices labelled before the first round (equal for every strategy of a seed).
        initial_weights: :func:`weights_fingerprint` of the model before the first round (likewise).
        seconds: wall-clock time of the run.
    """

    strategy: str
    seed: int
    num_labelled: tuple[int, ...]
    values: tuple[float, ...]
    initial_labels: tuple[int, ...] = ()
    initial_weights: str = ""
    seconds: float = 0.0

    @property
    def aulc(self) -> float:
        """The run's :func:`normalised_aulc`."""
        return normalised_aulc(self.num_labelled, self.values)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "aulc": self.aulc}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StrategyRun:
        return cls(
            strategy=str(data["strategy"]),
            seed=int(data["seed"]),
            num_labelled=tuple(int(v) for v in data["num_labelled"]),
            values=tuple(float(v) for v in data["values"]),
            initial_labels=tuple(int(v) for v in data.get("initial_labels", ())),
            initial_weights=str(data.get("initial_weights", "")),
            seconds=float(data.get("seconds", 0.0)),
        )


#: A difference whose confidence interval excludes 0 is "ahead"/"behind"; one that contains 0 is "level".
VERDICTS = ("ahead", "level", "behind")


class StrategyComparison:
    """The runs of several strategies over the same seeds, with AULC intervals and paired tests.

    Args:
        runs: one :class:`StrategyRun` per (strategy, seed); every strategy must have run on the same seeds.
        metric: the metric the curves show (a label for tables and plots).
        baseline: the strategy every other is also compared with (besides ``random``); default: ``random`` if
            present, else the first strategy.
        confidence: level of every interval and test.
    """

    def __init__(
        self,
        runs: Sequence[StrategyRun],
        metric: str = "test_acc",
        baseline: str | None = None,
        confidence: float = 0.95,
    ) -> None:
        if not runs:
            raise ValueError("`runs` is empty: a comparison needs at least one run.")
        if not 0 < confidence < 1:
            raise ValueError(f"`confidence` must be strictly between 0 and 1, got {confidence!r}.")
        self.runs = list(runs)
        self.metric = metric
        self.confidence = confidence
        self.strategies = list(dict.fromkeys(run.strategy for run in self.runs))
        self.seeds = sorted({run.seed for run in self.runs})
        self._by_key = {(run.strategy, run.seed): run for run in self.runs}
        if len(self._by_key) != len(self.runs):
            raise ValueError("`runs` holds the same (strategy, seed) twice.")
        for strategy in self.strategies:
            missing = [seed for seed in self.seeds if (strategy, seed) not in self._by_key]
            if missing:
                raise ValueError(f"strategy {strategy!r} has no run for seed(s) {missing}: pairing needs every seed.")
        if baseline is None:
            baseline = "random" if "random" in self.strategies else self.strategies[0]
        if baseline not in self.strategies:
            raise ValueError(f"`baseline={baseline!r}` is not among the strategies run; accepted: {self.strategies}.")
        self.baseline = baseline

    # -- numbers -----------------------------------------------------------------------------------------------------
    def run(self, strategy: str, seed: int) -> StrategyRun:
        return self._by_key[(strategy, seed)]

    def aulc(self, strategy: str) -> np.ndarray:
        """The AULC of ``strategy`` per seed (in :attr:`seeds` order)."""
        self._check_strategy(strategy)
        return np.array([self.run(strategy, seed).aulc for seed in self.seeds])

    def interval(self, strategy: str) -> MeanInterval:
        """Mean AULC of ``strategy`` over seeds with its Student-t interval (NaN bounds with one seed)."""
        return mean_interval(self.aulc(strategy), self.confidence)

    def versus(self, strategy: str, other: str) -> PairedComparison | None:
        """Paired t-test over seeds of ``AULC(strategy) - AULC(other)``; ``None`` with fewer than 2 seeds."""
        self._check_strategy(other)
        if strategy == other or len(self.seeds) < 2:
            return None
        return paired_comparison(self.aulc(strategy), self.aulc(other), self.confidence)

    def verdict(self, strategy: str, other: str) -> str:
        """``"ahead"``/``"behind"`` when the paired interval of the difference excludes 0, else ``"level"``.

        With a single seed there is no interval: the verdict is ``"level"`` unless the AULCs differ at all, in
        which case it is the sign (and :meth:`summary_line` says that no test was possible).
        """
        comparison = self.versus(strategy, other)
        if comparison is None:
            difference = float(self.aulc(strategy).mean() - self.aulc(other).mean())
            return "level" if difference == 0 else ("ahead" if difference > 0 else "behind")
        if comparison.low > 0:
            return "ahead"
        if comparison.high < 0:
            return "behind"
        return "level"

    def curve(self, strategy: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(num_labelled, mean, low, high)`` per round over seeds (Student-t band; NaN bounds with one seed).

        Raises:
            ValueError: the seeds of ``strategy`` did not train on the same label counts.
        """
        self._check_strategy(strategy)
        runs = [self.run(strategy, seed) for seed in self.seeds]
        labels = runs[0].num_labelled
        if any(run.num_labelled != labels for run in runs):
            raise ValueError(f"the runs of {strategy!r} trained on different label counts: no per-round band.")
        values = np.array([run.values for run in runs])
        intervals = [mean_interval(values[:, column], self.confidence) for column in range(values.shape[1])]
        return (
            np.array(labels),
            np.array([i.mean for i in intervals]),
            np.array([i.low for i in intervals]),
            np.array([i.high for i in intervals]),
        )

    def round_std(self, strategy: str) -> np.ndarray:
        """Standard deviation of the metric across seeds, per round (how much a single curve can be trusted)."""
        runs = [self.run(strategy, seed) for seed in self.seeds]
        values = np.array([run.values for run in runs])
        return values.std(axis=0, ddof=1) if len(runs) > 1 else np.full(values.shape[1], math.nan)

    # -- words -------------------------------------------------------------------------------------------------------
    def summary_line(self, strategy: str, other: str | None = None) -> str:
        """One line: is ``strategy`` ahead of, level with or behind ``other`` (default: the baseline) on AULC?"""
        other = self.baseline if other is None else other
        mine, theirs = self.interval(strategy), self.interval(other)
        verdict = self.verdict(strategy, other)
        relation = {"ahead": "ahead of", "level": "level with", "behind": "behind"}[verdict]
        head = (
            f"{strategy} is {relation} {other} on the area under the {self.metric} curve: "
            f"{mine.mean:.3f} vs {theirs.mean:.3f}"
        )
        comparison = self.versus(strategy, other)
        if comparison is None:
            return f"{head} (1 seed: no test; run more seeds to tell an effect from noise)"
        return (
            f"{head}, difference {comparison.mean_difference:+.3f} [{comparison.low:+.3f}, {comparison.high:+.3f}] "
            f"({self.confidence:.0%} CI, paired over {len(self.seeds)} seeds, p={comparison.p_value:.3f})"
        )

    def rows(self) -> list[dict[str, Any]]:
        """One row per strategy: AULC mean and interval, and the paired differences against random and baseline."""
        rows = []
        for strategy in self.strategies:
            interval = self.interval(strategy)
            row: dict[str, Any] = {
                "strategy": strategy,
                "seeds": len(self.seeds),
                "aulc_mean": interval.mean,
                "aulc_low": interval.low,
                "aulc_high": interval.high,
            }
            for name, other in (("random", "random"), ("baseline", self.baseline)):
                comparison = self.versus(strategy, other) if other in self.strategies else None
                row[f"vs_{name}"] = None if comparison is None else asdict(comparison)
            rows.append(row)
        return rows

    def table(self) -> str:
        """A plain-text table: AULC mean [CI] per strategy, and its paired differences with p-values."""
        from alkit.demos._common import format_table

        def difference(comparison: Mapping[str, Any] | None) -> str:
            if comparison is None:
                return "-"
            return (
                f"{comparison['mean_difference']:+.3f} [{comparison['low']:+.3f}, {comparison['high']:+.3f}] "
                f"p={comparison['p_value']:.3f}"
            )

        with_baseline = self.baseline != "random" and len(self.strategies) > 1
        header = ["strategy", f"AULC {self.metric} ({self.confidence:.0%} CI)", "vs random"]
        if with_baseline:
            header.append(f"vs {self.baseline}")
        lines = []
        for row in self.rows():
            interval = f"{row['aulc_mean']:.3f}"
            if not math.isnan(row["aulc_low"]):
                interval += f" [{row['aulc_low']:.3f}, {row['aulc_high']:.3f}]"
            cells = [row["strategy"], interval, difference(row["vs_random"])]
            if with_baseline:
                cells.append(difference(row["vs_baseline"]))
            lines.append(cells)
        n = len(self.seeds)
        note = f"({n} seeds, paired t-test over seeds)" if n > 1 else "(1 seed: no interval, no paired test)"
        return format_table(header, lines) + "\n" + note

    # -- files -------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "confidence": self.confidence,
            "strategies": self.strategies,
            "seeds": self.seeds,
            "summary": self.rows(),
            "runs": [run.to_dict() for run in self.runs],
        }

    def save_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON atomically (an interrupted write never leaves half a file)."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=True)
        return write_text_atomic(path, text + "\n")

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> StrategyComparison:
        """Read a comparison written by :meth:`save_json` (plain JSON: nothing is executed)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            [StrategyRun.from_dict(run) for run in data["runs"]],
            metric=data["metric"],
            baseline=data["baseline"],
            confidence=data["confidence"],
        )

    def plot(self, ax: Any = None, strategies: Sequence[str] | None = None, seed_lines: bool = False) -> Any:
        """Mean curve per strategy with its confidence band over seeds (and each seed's curve if ``seed_lines``)."""
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(6, 4))
        shown = list(strategies or self.strategies)
        alpha = 0.2 if len(shown) <= 3 else 0.07  # many overlapping bands would hide each other
        for strategy in shown:
            labels, mean, low, high = self.curve(strategy)
            interval = self.interval(strategy)
            (line,) = ax.plot(labels, mean, marker="o", label=f"{strategy} (AULC {interval.mean:.3f})")
            if len(self.seeds) > 1:
                ax.fill_between(labels, low, high, color=line.get_color(), alpha=alpha, linewidth=0)
            if seed_lines:
                for seed in self.seeds:
                    run = self.run(strategy, seed)
                    ax.plot(run.num_labelled, run.values, color=line.get_color(), alpha=0.3, linewidth=0.8)
        band = f", bands: {self.confidence:.0%} CI over {len(self.seeds)} seeds" if len(self.seeds) > 1 else ""
        ax.set_xlabel("labelled samples")
        ax.set_ylabel(self.metric)
        ax.set_title(f"Label efficiency{band}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        return ax

    def _check_strategy(self, strategy: str) -> None:
        if strategy not in self.strategies:
            raise ValueError(f"strategy {strategy!r} was not run; accepted: {self.strategies}.")

    def __repr__(self) -> str:
        return f"StrategyComparison({self.strategies}, seeds={self.seeds}, metric={self.metric!r})"


# ------------------------------------------------------------------------------------------------------ running
def _named(strategy: Any) -> tuple[str, Any]:
    """``(name, strategy)``: a ``(name, heuristic)`` pair as given, else the name or the instance's class name."""
    if isinstance(strategy, tuple) and len(strategy) == 2 and isinstance(strategy[0], str):
        return strategy[0], strategy[1]
    return (strategy if isinstance(strategy, str) else type(strategy).__name__), strategy


def _check_arguments(strategies: Sequence[Any], seeds: Sequence[int], rounds: int, baseline: str | None) -> list[str]:
    from alkit.active.heuristics import HEURISTIC_NAMES, resolve_heuristic

    if isinstance(strategies, str) or not strategies:
        raise ValueError(f"`strategies` must be a non-empty list of strategy names, got {strategies!r}.")
    names = []
    for strategy in strategies:
        name, heuristic = _named(strategy)
        try:
            resolve_heuristic(heuristic)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"`strategies` holds {strategy!r}, which is not a strategy; accepted: {', '.join(HEURISTIC_NAMES)}, "
                "a BaaL heuristic instance or a (name, heuristic) pair."
            ) from error
        names.append(name)
    if len(set(names)) != len(names):
        raise ValueError(f"`strategies` names a strategy twice: {names}.")
    if isinstance(seeds, (str, int)) or not seeds:
        raise ValueError(f"`seeds` must be a non-empty list of integers >= 0, got {seeds!r}.")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"`seeds` holds {seed!r}; accepted: integers >= 0.")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"`seeds` repeats a seed: {list(seeds)}; each seed must be distinct.")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 2:
        raise ValueError(f"`rounds` must be an integer >= 2 (an area needs two points), got {rounds!r}.")
    if baseline is not None and baseline not in names:
        raise ValueError(f"`baseline={baseline!r}` is not among `strategies`; accepted: {names}.")
    return names


def _run_settings_match(path: Path, settings: Mapping[str, Any]) -> StrategyRun | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("settings") != json.loads(json.dumps(dict(settings))):
        raise ValueError(
            f"{str(path)!r} holds a run made with other settings ({data.get('settings')}); use another `run_dir` "
            "or delete the file to run it again."
        )
    return StrategyRun.from_dict(data["run"])


def compare_strategies(
    data: Any,
    make_model: Callable[[], Any],
    strategies: Sequence[Any],
    seeds: Sequence[int],
    *,
    rounds: int,
    initial_num_labels: int,
    query_size: int,
    label_epochs: int = 1,
    mc_iterations: int = 20,
    metric: str = "test_acc",
    baseline: str | None = None,
    confidence: float = 0.95,
    datamodule_kwargs: Mapping[str, Any] | Callable[[int], Mapping[str, Any]] | None = None,
    loop_kwargs: Mapping[str, Any] | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    finetune: str | None = None,
    run_dir: str | os.PathLike | None = None,
    settings: Mapping[str, Any] | None = None,
    on_run: Callable[[StrategyRun, Any, Any, Any], None] | None = None,
) -> StrategyComparison:
    """Run every strategy on every seed, each seed's runs from the same initial labels, weights and test set.

    For each seed: the global RNGs are seeded, ``make_model()`` builds the model once and each strategy trains a
    deep copy of it (same initial weights, checked by fingerprint); each strategy's
    :class:`~alkit.active.ActiveLearningDataModule` wraps the same ``data`` with ``seed=seed`` (same initial
    labels, checked; same test set: ``data``'s); an :class:`~alkit.active.ActiveLearningLoop` with ``seed=seed``
    runs ``rounds`` rounds, so the training draws of a round are those of the other strategies too.

    Args:
        data: the LightningDataModule to label (its test set measures every run), or ``f(seed) -> datamodule``.
        make_model: builds the model (called once per seed, after seeding).
        strategies: strategy names (any :func:`~alkit.active.resolve_heuristic` accepts), BaaL heuristics (named
            by their class) or ``(name, heuristic)`` pairs (a heuristic with other settings under a name of its own,
            e.g. ``("batch_bald", BatchBALD(10, num_draw=50))``).
        seeds: distinct seeds; several are needed for intervals and paired tests (5 or more for a useful test).
        rounds: labelling rounds per run (>= 2).
        initial_num_labels, query_size: as in ``ActiveLearningDataModule``.
        label_epochs, mc_iterations: the loop's ``label_epoch_frequency`` and ``inference_iteration``.
        metric: the logged metric the curves show.
        baseline: compared with every strategy besides ``random`` (default: ``random``, else the first).
        datamodule_kwargs, loop_kwargs, trainer_kwargs: further arguments of the datamodule, loop and
            ``alkit.Trainer``. ``datamodule_kwargs`` may also be ``f(seed) -> kwargs``, for what a seed draws
            itself (e.g. a class-balanced initial set through ``map_dataset_to_labelled``): called once per seed,
            so every strategy of the seed gets the same arguments.
        finetune: a ``Trainer.finetune`` strategy (``"freeze"``) for models with a backbone; ``None``: ``fit``.
        run_dir: a folder keeping each finished (strategy, seed) run as ``<strategy>_seed<k>.json``; a run found
            there (made with the same ``settings``) is read instead of run again, so an interrupted comparison
            resumes. ``None``: nothing is written.
        settings: what makes runs comparable (stored with each run; a stored run with other settings is an error).
        on_run: called as ``on_run(run, model, datamodule, trainer)`` after each run that trained (not read back).

    Raises:
        ValueError: a bad argument (before anything trains), or runs of a seed that did not start equal.
    """
    import alkit
    from alkit.active.datamodule import ActiveLearningDataModule
    from alkit.active.loop import ActiveLearningLoop
    from alkit.lightning import pl

    names = _check_arguments(strategies, seeds, rounds, baseline)
    if not callable(make_model):
        raise ValueError(f"`make_model` must be a callable returning a LightningModule, got {make_model!r}.")
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be strictly between 0 and 1, got {confidence!r}.")
    folder = Path(run_dir) if run_dir is not None else None
    run_settings = {
        "rounds": rounds,
        "initial_num_labels": initial_num_labels,
        "query_size": query_size,
        "label_epochs": label_epochs,
        "mc_iterations": mc_iterations,
        "metric": metric,
        **(settings or {}),
    }
    runs: list[StrategyRun] = []
    for seed in seeds:
        seed = int(seed)
        seed_data = data(seed) if callable(data) and not isinstance(data, pl.LightningDataModule) else data
        pl.seed_everything(seed, verbose=False)
        initial_model = make_model()
        seed_kwargs = dict(datamodule_kwargs(seed) if callable(datamodule_kwargs) else (datamodule_kwargs or {}))
        fingerprint = weights_fingerprint(initial_model)
        initial_labels: tuple[int, ...] | None = None
        for strategy, name in zip(strategies, names):
            path = folder / f"{name}_seed{seed}.json" if folder is not None else None
            stored = _run_settings_match(path, run_settings) if path is not None else None
            if stored is not None:
                runs.append(stored)
                continue
            start = time.perf_counter()
            datamodule = ActiveLearningDataModule(
                seed_data,
                heuristic=_named(strategy)[1],
                initial_num_labels=initial_num_labels,
                query_size=query_size,
                seed=seed,
                **seed_kwargs,
            )
            labels = tuple(int(i) for i in datamodule.labelled_indices)
            if initial_labels is None:
                initial_labels = labels
            elif labels != initial_labels:
                raise ValueError(
                    f"strategy {name!r} starts seed {seed} from other initial labels than {names[0]!r}: `data` "
                    "must give every strategy the same training set in the same order."
                )
            model = copy.deepcopy(initial_model)
            if weights_fingerprint(model) != fingerprint:  # a model whose copy is not equal cannot be compared
                raise ValueError(f"a deep copy of the model for {name!r} (seed {seed}) has other weights.")
            with tempfile.TemporaryDirectory(prefix="alkit-compare-") as scratch:
                # the loop writes its history beside the run: in run_dir when kept, else in a folder removed after
                root = folder / f"{name}_seed{seed}" if folder is not None else Path(scratch)
                trainer = alkit.Trainer(
                    **{
                        "max_epochs": rounds,
                        "logger": False,
                        "enable_checkpointing": False,
                        "enable_progress_bar": False,
                        "enable_model_summary": False,
                        "default_root_dir": root,
                        **(trainer_kwargs or {}),
                    }
                )
                loop = ActiveLearningLoop(
                    label_epoch_frequency=label_epochs,
                    inference_iteration=mc_iterations,
                    seed=seed,
                    **{"checkpoint_each_round": False, "export_path": root, **(loop_kwargs or {})},
                )
                loop.connect(trainer.fit_loop)
                trainer.fit_loop = loop
                if finetune is None:
                    trainer.fit(model, datamodule=datamodule)
                else:
                    trainer.finetune(model, datamodule=datamodule, strategy=finetune)
            num_labelled, values = loop.history.curve(metric)
            if len(values) < 2:
                logged = loop.history.metric_names
                raise ValueError(
                    f"the {name!r} run logged `metric={metric!r}` in {len(values)} round(s); the area needs 2 or "
                    f"more. Logged metrics: {logged}."
                )
            run = StrategyRun(
                strategy=name,
                seed=seed,
                num_labelled=tuple(num_labelled),
                values=tuple(values),
                initial_labels=labels,
                initial_weights=fingerprint,
                seconds=time.perf_counter() - start,
            )
            if path is not None:
                payload = {"settings": run_settings, "run": run.to_dict()}
                write_text_atomic(path, json.dumps(payload, indent=2) + "\n")
            runs.append(run)
            if on_run is not None:
                on_run(run, model, datamodule, trainer)
    return StrategyComparison(runs, metric=metric, baseline=baseline, confidence=confidence)
