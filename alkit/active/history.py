"""Per-round records of an active-learning run, saved safely and plotted as label-efficiency curves.

A research result is "accuracy as a function of the number of labels"; this module keeps exactly that, one
:class:`RoundRecord` per round, and writes it as CSV (for spreadsheets, pandas) and JSON (exact round trip) with
atomic replaces, so an interrupted write never leaves a truncated history behind.

Beside it, each round that scored the pool leaves ``<name>_scores/round_<r>.npz`` (compressed, atomic): the pool's
dataset indices, the strategy's score of each, and the dataset indices selected in the order the strategy picked
them, so that a researcher can ask *why* a sample was chosen. ``history.scores(r)`` loads one round, without
executing anything from the file (``allow_pickle=False``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from alkit._io import _fsync_dir, _umask, write_text_atomic

__all__ = [
    "ActiveLearningHistory",
    "RoundRecord",
    "RoundScores",
    "load_round_scores",
    "plot_label_efficiency",
    "save_round_scores",
]

_FIXED_COLUMNS = (
    "round",
    "num_labelled",
    "num_added",
    "indices_added",
    "train_time_s",
    "scoring_time_s",
    "scores_file",
)


class RoundScores(NamedTuple):
    """The pool of one round as the strategy saw it (what :meth:`ActiveLearningHistory.scores` returns).

    Attributes:
        indices: ``[N]`` dataset index of each scored pool sample, in scoring order.
        scores: ``[N]`` the strategy's score of each (the heuristic's uncertainty; for a diversity strategy its own
            measure, e.g. CoreSet's distance to the labelled set).
        selected: dataset indices labelled this round, in the order the strategy picked them.
        uncertainty: ``[N]`` the pool's uncertainty under the pre-filter / predictive entropy, for diversity
            strategies only (None otherwise).
    """

    indices: np.ndarray
    scores: np.ndarray
    selected: np.ndarray
    uncertainty: np.ndarray | None = None


def save_round_scores(path: str | os.PathLike, scores: RoundScores) -> Path:
    """Write ``scores`` to ``path`` with ``np.savez_compressed``, atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "indices": np.asarray(scores.indices, dtype=np.int64),
        "scores": np.asarray(scores.scores, dtype=np.float64),
        "selected": np.asarray(scores.selected, dtype=np.int64),
    }
    if scores.uncertainty is not None:
        arrays["uncertainty"] = np.asarray(scores.uncertainty, dtype=np.float64)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def load_round_scores(path: str | os.PathLike) -> RoundScores:
    """Read a file written by :func:`save_round_scores` (no pickles: nothing in the file is executed)."""
    with np.load(Path(path), allow_pickle=False) as data:
        uncertainty = data["uncertainty"] if "uncertainty" in data.files else None
        return RoundScores(data["indices"], data["scores"], data["selected"], uncertainty)


@dataclass
class RoundRecord:
    """One round: trained on ``num_labelled`` labels, evaluated, then ``indices_added`` were labelled.

    Attributes:
        round: 0-based round number.
        num_labelled: labelled samples the model of this round was trained on (validation samples excluded).
        indices_added: dataset indices labelled at the end of the round (empty after the last round).
        metrics: logged metrics by name, e.g. ``{"train_loss": ..., "val_acc": ..., "test_acc": ...}``.
        train_time_s: seconds spent fitting (and validating / testing) this round.
        scoring_time_s: seconds spent scoring the pool and labelling.
        scores_file: the round's pool scores (see :class:`RoundScores`), relative to the history's folder; None
            when the round did not score the pool.
    """

    round: int
    num_labelled: int
    indices_added: list[int] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    train_time_s: float = 0.0
    scoring_time_s: float = 0.0
    scores_file: str | None = None

    def __post_init__(self) -> None:
        self.round = int(self.round)
        self.num_labelled = int(self.num_labelled)
        self.indices_added = [int(i) for i in self.indices_added]
        self.metrics = {str(k): float(v) for k, v in self.metrics.items()}
        self.train_time_s = float(self.train_time_s)
        self.scoring_time_s = float(self.scoring_time_s)
        self.scores_file = str(self.scores_file) if self.scores_file else None

    def to_row(self) -> dict[str, Any]:
        """A flat row: fixed columns, then one column per metric."""
        row: dict[str, Any] = {
            "round": self.round,
            "num_labelled": self.num_labelled,
            "num_added": len(self.indices_added),
            "indices_added": " ".join(str(i) for i in self.indices_added),
            "train_time_s": self.train_time_s,
            "scoring_time_s": self.scoring_time_s,
            "scores_file": self.scores_file or "",
        }
        row.update(self.metrics)
        return row


class ActiveLearningHistory(Sequence):
    """The list of :class:`RoundRecord` of one run, with CSV/JSON persistence and checkpointable state."""

    def __init__(
        self, records: Iterable[RoundRecord | Mapping[str, Any]] = (), directory: str | os.PathLike | None = None
    ) -> None:
        self._records: list[RoundRecord] = [r if isinstance(r, RoundRecord) else RoundRecord(**r) for r in records]
        #: Folder the history was saved to or loaded from: where the per-round score files are read.
        self.directory: Path | None = Path(directory) if directory is not None else None

    def append(self, record: RoundRecord) -> None:
        self._records.append(record)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> RoundRecord:  # type: ignore[override]
        return self._records[index]

    def __iter__(self) -> Iterator[RoundRecord]:
        return iter(self._records)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActiveLearningHistory) and self._records == other._records

    def __repr__(self) -> str:
        return f"ActiveLearningHistory({len(self)} rounds)"

    @property
    def metric_names(self) -> list[str]:
        return sorted({name for record in self._records for name in record.metrics})

    def curve(self, metric: str) -> tuple[list[int], list[float]]:
        """``(num_labelled, metric value)`` of the rounds that logged ``metric``."""
        points = [(r.num_labelled, r.metrics[metric]) for r in self._records if metric in r.metrics]
        return [p[0] for p in points], [p[1] for p in points]

    def scores(self, round: int) -> RoundScores:
        """The pool scores and selection order of round ``round`` (see :class:`RoundScores`), read from disk.

        Raises:
            ValueError: no such round, or the round did not score the pool (e.g. the last one), or the history was
                never saved or loaded from a folder.
        """
        matches = [r for r in self._records if r.round == round]
        if not matches:
            raise ValueError(f"`round={round!r}` is not in this history; rounds: {[r.round for r in self._records]}.")
        record = matches[-1]
        if record.scores_file is None:
            stored = [r.round for r in self._records if r.scores_file]
            raise ValueError(
                f"Round {round} did not score the pool, so it stored no scores; rounds with scores: {stored}."
            )
        if self.directory is None:
            raise ValueError(
                "This history was neither saved nor loaded from a folder: its score files cannot be found."
            )
        return load_round_scores(self.directory / record.scores_file)

    # -- checkpoint state ------------------------------------------------------------------------------------------
    def state_dict(self) -> list[dict[str, Any]]:
        """Plain Python (loadable with ``torch.load(weights_only=True)``)."""
        return [asdict(record) for record in self._records]

    def load_state_dict(self, state: Iterable[Mapping[str, Any]]) -> None:
        self._records = [RoundRecord(**dict(r)) for r in state]

    # -- files -------------------------------------------------------------------------------------------------------
    def to_csv(self) -> str:
        columns = list(_FIXED_COLUMNS) + self.metric_names
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for record in self._records:
            writer.writerow(record.to_row())
        return buffer.getvalue()

    def to_json(self) -> str:
        return json.dumps({"rounds": self.state_dict()}, indent=2)

    def save(self, directory: str | os.PathLike, name: str = "active_learning_history") -> tuple[Path, Path]:
        """Write ``<directory>/<name>.csv`` and ``.json`` atomically (temporary file + ``os.replace``)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        csv_path, json_path = directory / f"{name}.csv", directory / f"{name}.json"
        write_text_atomic(json_path, self.to_json())
        write_text_atomic(csv_path, self.to_csv())
        self.directory = directory
        return csv_path, json_path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ActiveLearningHistory:
        """Read a history saved by :meth:`save` (``.json`` exactly; ``.csv`` with metrics as floats)."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            return cls(json.loads(text)["rounds"], directory=path.parent)
        if path.suffix.lower() != ".csv":
            raise ValueError(f"Cannot read a history from {str(path)!r}: expected a .json or .csv file.")
        records = []
        for row in csv.DictReader(io.StringIO(text)):
            metrics = {k: float(v) for k, v in row.items() if k not in _FIXED_COLUMNS and v not in ("", None)}
            records.append(
                RoundRecord(
                    round=int(row["round"]),
                    num_labelled=int(row["num_labelled"]),
                    indices_added=[int(i) for i in row["indices_added"].split()],
                    metrics=metrics,
                    train_time_s=float(row["train_time_s"]),
                    scoring_time_s=float(row["scoring_time_s"]),
                    scores_file=row.get("scores_file") or None,
                )
            )
        return cls(records, directory=path.parent)


HistoryLike = ActiveLearningHistory | Sequence[RoundRecord] | str | os.PathLike


def _as_history(value: HistoryLike) -> ActiveLearningHistory:
    if isinstance(value, ActiveLearningHistory):
        return value
    if isinstance(value, (str, os.PathLike)):
        return ActiveLearningHistory.load(value)
    return ActiveLearningHistory(value)


def plot_label_efficiency(
    history: HistoryLike | Mapping[str, HistoryLike] | Sequence[HistoryLike],
    metric: str = "test_acc",
    ax: Any = None,
    label: str | Sequence[str] | None = None,
) -> Any:
    """Draw ``metric`` against the number of labelled samples; returns the matplotlib axes.

    Args:
        history: one history (object, list of records or a saved .json/.csv path), several in a list, or a mapping
            ``{label: history}`` to compare heuristics on one axes.
        metric: a logged metric name, e.g. ``"test_acc"`` or ``"val_acc"``.
        ax: axes to draw on; a new figure is made when None (works on the headless Agg backend).
        label: legend label(s) when ``history`` is not a mapping.

    Raises:
        ValueError: no history logged ``metric`` (the message lists the metrics that were logged).
    """
    if isinstance(history, Mapping):
        named = [(str(k), _as_history(v)) for k, v in history.items()]
    elif isinstance(history, (ActiveLearningHistory, str, os.PathLike)) or (
        isinstance(history, Sequence) and history and isinstance(history[0], RoundRecord)
    ):
        named = [(label if isinstance(label, str) else None, _as_history(history))]  # type: ignore[arg-type]
    else:
        labels = list(label) if label is not None and not isinstance(label, str) else [None] * len(history)
        named = [(lab, _as_history(h)) for lab, h in zip(labels, history)]
    if not any(h.curve(metric)[0] for _, h in named):
        logged = sorted({m for _, h in named for m in h.metric_names})
        raise ValueError(f"No round logged the metric {metric!r}; logged metrics: {logged}.")
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6, 4))
    for name, hist in named:
        xs, ys = hist.curve(metric)
        ys = [y if math.isfinite(y) else float("nan") for y in ys]
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlabel("labelled samples")
    ax.set_ylabel(metric)
    ax.set_title(f"Label efficiency: {metric}")
    ax.grid(True, alpha=0.3)
    if any(name for name, _ in named):
        ax.legend()
    return ax
