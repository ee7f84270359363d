"""Progress trackers: how far a loop got, in counters that survive a checkpoint.

These are Lightning's own trackers under public names (Lightning 2 made them private). Each tracker counts
``ready → started → processed → completed`` for the current run and in total, which is what lets an interrupted
loop tell, on reload, whether it stopped before, during or after an iteration.

Two 1.x trackers Lightning 2 dropped come back here: :class:`DataLoaderProgress` (the dataloaders an evaluation or
prediction loop went through) and the batch progress of one dataloader (:class:`DataLoaderBatchProgress`,
:class:`DataLoaderStepProgress`), which the evaluation and prediction epoch loops expose as ``batch_progress``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from alkit._seam import _BaseProgress as BaseProgress
from alkit._seam import _BatchProgress as BatchProgress
from alkit._seam import _OptimizationProgress as OptimizationProgress
from alkit._seam import _OptimizerProgress as OptimizerProgress
from alkit._seam import _ProcessedTracker as ProcessedTracker
from alkit._seam import _Progress as Progress
from alkit._seam import _ReadyCompletedTracker as ReadyCompletedTracker
from alkit._seam import _SchedulerProgress as SchedulerProgress
from alkit._seam import _StartedTracker as StartedTracker

__all__ = [
    "BaseProgress",
    "BatchProgress",
    "DataLoaderBatchProgress",
    "DataLoaderProgress",
    "DataLoaderStepProgress",
    "OptimizationProgress",
    "OptimizerProgress",
    "ProcessedTracker",
    "Progress",
    "ReadyCompletedTracker",
    "SchedulerProgress",
    "StartedTracker",
]


@dataclass
class DataLoaderProgress(Progress):
    """Counts dataloaders (Lightning 1.x): ``ready`` when a loop starts one, ``completed`` when it is through.

    ``current`` counts the dataloaders of the current run, ``total`` those of every run.
    """

    total: ReadyCompletedTracker = field(default_factory=ReadyCompletedTracker)
    current: ReadyCompletedTracker = field(default_factory=ReadyCompletedTracker)


_COUNTERS = ("ready", "completed", "started", "processed")


def _counter(index: int, name: str) -> property:
    def get(self: _DataLoaderTracker) -> int:
        return getattr(self._source, name) - self._start[index]

    def set_(self: _DataLoaderTracker, value: int) -> None:
        setattr(self._source, name, self._start[index] + value)

    return property(get, set_, doc=f"``{name}`` batches of the current dataloader")


class _DataLoaderTracker(ProcessedTracker):
    """The ``current`` counters of one dataloader: the run's ``current`` counters minus their value when the
    dataloader started. Reading and writing go to the run's counters; ``reset()`` starts the dataloader at zero."""

    ready = _counter(0, "ready")
    completed = _counter(1, "completed")
    started = _counter(2, "started")
    processed = _counter(3, "processed")

    def __init__(self, source: ReadyCompletedTracker) -> None:  # not the dataclass __init__: no counters of its own
        self.__dict__["_source"] = source  # the run's `current` tracker
        self.__dict__["_start"] = (0, 0, 0, 0)

    def follow(self, source: ReadyCompletedTracker) -> None:
        """Read the counters of ``source`` (the run's ``current`` tracker), from their present values."""
        self.__dict__["_source"] = source
        self.reset()

    def reset(self) -> None:
        """Count this dataloader from zero (the run's counters are left alone)."""
        source = self._source
        self.__dict__["_start"] = tuple(getattr(source, name) for name in _COUNTERS)

    def load_state_dict(self, state_dict: dict) -> None:
        for name, value in state_dict.items():
            setattr(self, name, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReadyCompletedTracker):
            return NotImplemented
        return self.state_dict() == other.state_dict()

    __hash__ = None  # type: ignore[assignment]


class _DataLoaderProgressView:
    """The batch progress of the dataloader an epoch loop is running, read from its parent loop's progress.

    Lightning 2 counts evaluation and prediction batches once, across all dataloaders, on the outer loop
    (``val_loop.batch_progress``), where its Trainer and callbacks read them; Lightning 1.x counted them on the epoch
    loop, once per dataloader (``val_loop.epoch_loop.batch_progress``). This object is the 1.x one without a second
    set of counters: ``total`` *is* the outer loop's ``total`` tracker (the batches of every dataloader since the
    training epoch, or the stage, started) and ``current`` counts the current dataloader's batches, as the outer
    loop's ``current`` counters minus their value when the dataloader started. Incrementing it increments the outer
    loop's counters, so nothing is counted twice per batch.

    Until the epoch loop runs under an outer loop (:meth:`start_dataloader`) it counts on its own, like a plain
    tracker. It is not written to checkpoints: their layout stays Lightning 2's.
    """

    _standalone_type: type = Progress

    def __init__(self) -> None:  # not the dataclass __init__: no counters of its own
        own = self._standalone_type()
        self.__dict__["_own"] = own
        #: the progress counted on: the outer loop's, or ``_own`` when there is none
        self.__dict__["_run"] = own
        #: the run's ``total`` tracker itself (Lightning resets and loads its trackers in place)
        self.__dict__["total"] = own.total
        #: this dataloader's counters
        self.__dict__["current"] = _DataLoaderTracker(own.current)
        #: batches the current dataloader yields (``inf`` when unknown), for ``is_last_batch``
        self.__dict__["max_batches"] = math.inf

    def start_dataloader(self, source: Any) -> None:
        """Count a new dataloader from zero, on ``source`` (the outer loop's progress; ``None``: its own counters)."""
        run = self.__dict__["_own"] if source is None else source
        self.__dict__["_run"] = run
        self.__dict__["total"] = run.total
        self.__dict__["max_batches"] = math.inf
        self.current.follow(run.current)

    @property
    def is_last_batch(self) -> bool:
        """Whether the batch being evaluated is the last one of this dataloader (as far as its length is known)."""
        if getattr(self._run, "is_last_batch", False):
            return True
        return 0 < self.max_batches <= self.current.ready

    @is_last_batch.setter
    def is_last_batch(self, value: bool) -> None:
        # what Lightning 2's loop records per batch: whether the data fetcher is exhausted
        self._run.is_last_batch = value

    def reset(self) -> None:
        """Reset ``total`` and count this dataloader from zero."""
        run = self._run
        run.total.reset()
        if hasattr(run, "is_last_batch"):
            run.is_last_batch = False
        self.current.reset()

    def reset_on_run(self) -> None:
        """Count this dataloader from zero."""
        self.current.reset()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Progress):
            return NotImplemented
        return self.state_dict() == other.state_dict()

    __hash__ = None  # type: ignore[assignment]


class DataLoaderBatchProgress(_DataLoaderProgressView, BatchProgress):
    """``EvaluationEpochLoop.batch_progress``: the batches of the current dataloader (a :class:`BatchProgress`).

    See :class:`_DataLoaderProgressView` for how it relates to the evaluation loop's own ``batch_progress``.
    """

    _standalone_type = BatchProgress


class DataLoaderStepProgress(_DataLoaderProgressView, Progress):
    """``PredictionEpochLoop.batch_progress``: the batches of the current dataloader (a :class:`Progress`).

    See :class:`_DataLoaderProgressView` for how it relates to the prediction loop's own ``batch_progress``.
    """

    _standalone_type = Progress
