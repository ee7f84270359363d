"""``KFoldResult``: what a k-fold run produced, as plain data (like scikit-learn's ``cross_validate``).

Per-fold metrics are first-class: Lightning 1.9's k-fold example only surfaced the ensemble's accuracy,
which hid that three of five folds had trained at chance. Here every fold's validation and test metrics, its sizes,
indices and checkpoint are kept, with ``mean()``/``std()``/``interval()`` across folds, the out-of-fold predictions of
the whole training set, a readable table, JSON/pandas export and a plot.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alkit._io import write_text_atomic
from alkit.kfold.folds import Fold, folds_fingerprint, repeat_of_each_fold
from alkit.kfold.oof import load_oof, oof_metrics, save_oof
from alkit.statistics import MeanInterval, mean_interval

__all__ = ["KFoldResult"]


@dataclass
class KFoldResult:
    """Metrics and bookkeeping of one k-fold cross-validation run.

    Attributes:
        val_metrics: per fold, the metrics logged on its held-out part at the end of its training.
        test_metrics: per fold, the metrics of its model on the shared test set (empty dicts without test data).
        train_indices: per fold, positions (in the training set) it trained on.
        val_indices: per fold, positions it held out.
        checkpoint_paths: per fold, the checkpoint file of its trained model (``None`` when not saved).
        ensemble_metrics: test metrics of the ensemble voting over all fold models (``None`` when not run).
        n_samples: size of the training set the indices point into.
        oof_by_repeat: out-of-fold predictions, ``(n_repeats, n_samples, ...)``: for every training sample, the
            output of the fold model that held it out (probabilities for classifiers), one array per repeat of a
            repeated splitter; ``NaN`` where a sample was not held out in a repeat. ``None`` when not computed.
        oof_targets: the training targets, aligned like the predictions (``NaN`` where never held out).
        oof_task: ``"classification"`` (predictions are class probabilities) or ``"regression"``.
    """

    val_metrics: list[dict[str, float]] = field(default_factory=list)
    test_metrics: list[dict[str, float]] = field(default_factory=list)
    train_indices: list[np.ndarray] = field(default_factory=list)
    val_indices: list[np.ndarray] = field(default_factory=list)
    checkpoint_paths: list[str | None] = field(default_factory=list)
    ensemble_metrics: dict[str, float] | None = None
    n_samples: int | None = None
    oof_by_repeat: np.ndarray | None = None
    oof_targets: np.ndarray | None = None
    oof_task: str | None = None

    def __post_init__(self) -> None:
        self.val_metrics = [_floats(m) for m in self.val_metrics]
        self.test_metrics = [_floats(m) for m in self.test_metrics]
        self.train_indices = [np.asarray(i, dtype=np.int64) for i in self.train_indices]
        self.val_indices = [np.asarray(i, dtype=np.int64) for i in self.val_indices]
        self.checkpoint_paths = [None if p is None else str(p) for p in self.checkpoint_paths]
        if self.ensemble_metrics is not None:
            self.ensemble_metrics = _floats(self.ensemble_metrics)
        if self.n_samples is not None:
            self.n_samples = int(self.n_samples)
        if self.oof_by_repeat is not None:
            self.oof_by_repeat = np.asarray(self.oof_by_repeat, dtype=np.float64)
            if self.oof_by_repeat.ndim < 2 or (
                self.n_samples is not None and self.oof_by_repeat.shape[1] != self.n_samples
            ):
                raise ValueError(
                    f"oof_by_repeat has shape {self.oof_by_repeat.shape}: expected "
                    f"(n_repeats, n_samples={self.n_samples}, ...)"
                )
        if self.oof_targets is not None:
            self.oof_targets = np.asarray(self.oof_targets, dtype=np.float64)
        lengths = {
            name: len(value)
            for name, value in (
                ("val_metrics", self.val_metrics),
                ("test_metrics", self.test_metrics),
                ("train_indices", self.train_indices),
                ("val_indices", self.val_indices),
                ("checkpoint_paths", self.checkpoint_paths),
            )
            if len(value)
        }
        if len(set(lengths.values())) > 1:
            raise ValueError(f"per-fold fields of KFoldResult have different lengths {lengths}: expected one per fold")

    # ------------------------------------------------------------------ per-fold views
    @property
    def num_folds(self) -> int:
        return max(len(self.val_metrics), len(self.test_metrics), len(self.train_indices), len(self.val_indices))

    @property
    def fold_sizes(self) -> list[tuple[int, int]]:
        """``(n_train, n_held_out)`` per fold."""
        return [(len(t), len(v)) for t, v in zip(self.train_indices, self.val_indices)]

    @property
    def fingerprint(self) -> str | None:
        """Hash of every fold's indices (``None`` without indices): equal for two runs on the very same folds."""
        if not self.val_indices:
            return None
        return folds_fingerprint(Fold(t, v) for t, v in zip(self.train_indices, self.val_indices))

    @property
    def fold_repeats(self) -> tuple[int, ...]:
        """The repeat each fold belongs to (all ``0`` unless the splitter repeats, like ``RepeatedKFold``)."""
        return repeat_of_each_fold(self.val_indices)

    @property
    def n_repeats(self) -> int:
        repeats = self.fold_repeats
        return max(repeats) + 1 if repeats else 0

    # ------------------------------------------------------------------ out-of-fold predictions
    @property
    def oof_predictions(self) -> np.ndarray | None:
        """Out-of-fold predictions aligned with the training set: row ``i`` is sample ``i``'s prediction by the fold
        model that held it out (class probabilities for classifiers). ``(n_samples, ...)``; with a repeated splitter
        ``(n_repeats, n_samples, ...)``, one prediction per repeat. ``None`` when not computed."""
        if self.oof_by_repeat is None:
            return None
        return self.oof_by_repeat[0] if len(self.oof_by_repeat) == 1 else self.oof_by_repeat

    @property
    def oof_metrics(self) -> dict[str, float]:
        """The out-of-fold score over the whole training set: ``{"accuracy": ...}`` for classifiers, ``{"mse": ...}``
        for regression (averaged over repeats); empty without predictions or targets."""
        if self.oof_by_repeat is None:
            return {}
        return oof_metrics(self.oof_by_repeat, self.oof_targets, self.oof_task or "regression")

    def fold_metrics(self, fold_index: int) -> dict[str, float]:
        """Validation and test metrics of one fold in one dict (see :attr:`metric_names` for name clashes)."""
        val = self.val_metrics[fold_index] if fold_index < len(self.val_metrics) else {}
        test = self.test_metrics[fold_index] if fold_index < len(self.test_metrics) else {}
        clashes = set(val) & set(test)
        merged = {(f"val/{k}" if k in clashes else k): v for k, v in val.items()}
        merged.update({(f"test/{k}" if k in clashes else k): v for k, v in test.items()})
        return merged

    @property
    def metric_names(self) -> list[str]:
        """Every per-fold metric name, in first-seen order; a name logged in both validation and test appears as
        ``val/<name>`` and ``test/<name>``."""
        names: dict[str, None] = {}
        for i in range(self.num_folds):
            names.update(dict.fromkeys(self.fold_metrics(i)))
        return list(names)

    @property
    def metrics(self) -> dict[str, np.ndarray]:
        """``{metric: array over folds}`` (``nan`` where a fold lacks the metric), like ``cross_validate``."""
        per_fold = [self.fold_metrics(i) for i in range(self.num_folds)]
        return {name: np.array([m.get(name, math.nan) for m in per_fold], dtype=float) for name in self.metric_names}

    def mean(self, metric: str | None = None) -> float | dict[str, float]:
        """Mean over folds of ``metric`` (a float), or of every metric (a dict) when ``metric`` is ``None``."""
        return self._reduce(metric, np.nanmean)

    def std(self, metric: str | None = None) -> float | dict[str, float]:
        """Population standard deviation over folds (``ddof=0``, as ``np.std`` on ``cross_validate`` scores)."""
        return self._reduce(metric, np.nanstd)

    def interval(self, metric: str | None = None, confidence: float = 0.95) -> MeanInterval | dict[str, MeanInterval]:
        """Mean over folds with its Student-t confidence interval (``alkit.statistics.mean_interval``).

        With 5 folds the 95 % interval is ``mean ± 2.78·s/√5``. Folds share training samples, so this interval is
        optimistic; to compare two models use :func:`alkit.kfold.compare`, which corrects for that.
        """
        metrics = self.metrics
        if metric is not None and metric not in metrics:
            raise KeyError(f"metric={metric!r} was not logged by any fold; accepted: {sorted(metrics)}")
        names = list(metrics) if metric is None else [metric]
        intervals = {}
        for name in names:
            values = metrics[name][~np.isnan(metrics[name])]
            intervals[name] = (
                mean_interval(values, confidence)
                if values.size
                else MeanInterval(math.nan, math.nan, math.nan, 0, confidence)
            )
        return intervals if metric is None else intervals[metric]

    def _reduce(self, metric: str | None, reduce: Any) -> float | dict[str, float]:
        metrics = self.metrics
        if metric is None:
            return {name: _nan_safe(reduce, values) for name, values in metrics.items()}
        if metric not in metrics:
            raise KeyError(f"metric={metric!r} was not logged by any fold; accepted: {sorted(metrics)}")
        return _nan_safe(reduce, metrics[metric])

    # ------------------------------------------------------------------ display
    def __str__(self) -> str:
        names = self.metric_names
        header = ["fold", "n_train", "n_val", *names]
        rows = []
        for i in range(self.num_folds):
            sizes = self.fold_sizes[i] if i < len(self.fold_sizes) else ("", "")
            values = self.fold_metrics(i)
            rows.append([str(i), str(sizes[0]), str(sizes[1]), *(_fmt(values.get(n)) for n in names)])
        if self.num_folds:
            means, stds, intervals = self.mean(), self.std(), self.interval()
            rows.append(["mean", "", "", *(_fmt(means[n]) for n in names)])
            rows.append(["95% CI ±", "", "", *(_fmt(intervals[n].half_width) for n in names)])  # Student t
            rows.append(["std", "", "", *(_fmt(stds[n]) for n in names)])
        if self.ensemble_metrics:
            rows.append(["ensemble", "", "", *(_fmt(self.ensemble_metrics.get(n)) for n in names)])
            extra = {k: v for k, v in self.ensemble_metrics.items() if k not in names}
        else:
            extra = {}
        widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
        lines = [f"KFoldResult ({self.num_folds} folds)"]
        lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths)))
        lines.extend("  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows)
        if extra:
            lines.append("ensemble: " + ", ".join(f"{k}={_fmt(v)}" for k, v in extra.items()))
        if self.oof_metrics:
            lines.append(
                "out-of-fold: "
                + ", ".join(f"{k}={_fmt(v)}" for k, v in self.oof_metrics.items())
                + f" over the training set ({self.n_repeats} repeat(s))"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"KFoldResult(num_folds={self.num_folds}, mean={self.mean()}, ensemble={self.ensemble_metrics})"

    # ------------------------------------------------------------------ export
    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible plain data (indices as lists of ints)."""
        return {
            "num_folds": self.num_folds,
            "val_metrics": [dict(m) for m in self.val_metrics],
            "test_metrics": [dict(m) for m in self.test_metrics],
            "fold_sizes": [list(s) for s in self.fold_sizes],
            "train_indices": [i.tolist() for i in self.train_indices],
            "val_indices": [i.tolist() for i in self.val_indices],
            "checkpoint_paths": list(self.checkpoint_paths),
            "ensemble_metrics": None if self.ensemble_metrics is None else dict(self.ensemble_metrics),
            "mean": self.mean(),
            "std": self.std(),
            "ci95": {name: [i.low, i.high] for name, i in self.interval().items()},
            "n_samples": self.n_samples,
            "fingerprint": self.fingerprint,
            "oof_task": self.oof_task,
            "oof_metrics": self.oof_metrics,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KFoldResult:
        return cls(
            val_metrics=list(data.get("val_metrics", [])),
            test_metrics=list(data.get("test_metrics", [])),
            train_indices=list(data.get("train_indices", [])),
            val_indices=list(data.get("val_indices", [])),
            checkpoint_paths=list(data.get("checkpoint_paths", [])),
            ensemble_metrics=data.get("ensemble_metrics"),
            n_samples=data.get("n_samples"),
            oof_task=data.get("oof_task"),
        )

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` to ``path`` atomically (a crash never leaves a truncated file); returns the path.

        Out-of-fold predictions go beside it, to ``<stem>.oof.npz`` (written first, also atomically), which the JSON
        names.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        if self.oof_by_repeat is not None:
            oof_path = path.with_name(f"{path.stem}.oof.npz")
            save_oof(oof_path, self.oof_by_repeat, self.oof_targets)
            data["oof_file"] = oof_path.name
        write_text_atomic(path, json.dumps(data, indent=2, allow_nan=True))
        return path

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> KFoldResult:
        """Read a result :meth:`to_json` wrote, with its out-of-fold predictions (loaded without unpickling)."""
        path = Path(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        result = cls.from_dict(data)
        if data.get("oof_file"):
            result.oof_by_repeat, result.oof_targets = load_oof(path.with_name(Path(data["oof_file"]).name))
        return result

    def to_dataframe(self) -> Any:
        """One row per fold: ``fold``, ``n_train``, ``n_val``, every metric, ``checkpoint``. Needs pandas."""
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError(
                "KFoldResult.to_dataframe() needs pandas, which is not installed: `pip install pandas` "
                "(or use to_dict()/metrics, which need nothing)"
            ) from err
        rows = []
        for i in range(self.num_folds):
            sizes = self.fold_sizes[i] if i < len(self.fold_sizes) else (None, None)
            row: dict[str, Any] = {"fold": i, "n_train": sizes[0], "n_val": sizes[1]}
            row.update(self.fold_metrics(i))
            row["checkpoint"] = self.checkpoint_paths[i] if i < len(self.checkpoint_paths) else None
            rows.append(row)
        return pd.DataFrame(rows).set_index("fold")

    def plot(self, metrics: str | Sequence[str] | None = None, ax: Any = None) -> Any:
        """Per-fold bars of each metric with the mean (line) ± std (band), and the ensemble (dashed) when known.

        Args:
            metrics: one name or several; default every metric.
            ax: a matplotlib Axes (single metric) or a sequence of Axes (one per metric); default a new figure.

        Returns:
            The matplotlib ``Figure``.
        """
        import matplotlib.pyplot as plt

        names = self.metric_names if metrics is None else [metrics] if isinstance(metrics, str) else list(metrics)
        if not names:
            raise ValueError("nothing to plot: no fold logged any metric")
        unknown = [n for n in names if n not in self.metric_names]
        if unknown:
            raise KeyError(f"metrics={unknown!r} were not logged by any fold; accepted: {self.metric_names}")
        if ax is None:
            fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names) + 1, 3.2), squeeze=False)
            axes = list(axes[0])
        else:
            axes = list(ax) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
            if len(axes) != len(names):
                raise ValueError(f"ax has {len(axes)} axes for {len(names)} metrics {names}: pass one per metric")
            fig = axes[0].figure
        values = self.metrics
        folds = np.arange(self.num_folds)
        for axis, name in zip(axes, names):
            mean, std = float(self.mean(name)), float(self.std(name))
            axis.bar(folds, values[name], color="tab:blue", alpha=0.8, label="fold")
            axis.axhline(mean, color="black", linewidth=1, label=f"mean {mean:.3g} ± {std:.2g}")
            axis.axhspan(mean - std, mean + std, color="grey", alpha=0.25)
            if self.ensemble_metrics and name in self.ensemble_metrics:
                axis.axhline(self.ensemble_metrics[name], color="tab:red", linestyle="--", label="ensemble")
            axis.set_xticks(folds)
            axis.set_xlabel("fold")
            axis.set_title(name)
            axis.legend(fontsize="small")
        fig.tight_layout()
        return fig


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in dict(metrics).items():
        if hasattr(value, "item"):
            value = value.item()
        out[str(key)] = float(value)
    return out


def _nan_safe(reduce: Any, values: np.ndarray) -> float:
    if np.all(np.isnan(values)):
        return math.nan
    return float(reduce(values))


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}"
