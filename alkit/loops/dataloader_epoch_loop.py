"""``DataLoaderEpochLoop``: what the evaluation and prediction epoch loops share (Lightning 1.x's per-dataloader loop).

Lightning 1.x ran an epoch loop once per evaluation or predict dataloader; Lightning 2 iterates every dataloader
through one shared data fetcher. The epoch loops here run once per dataloader again, on that one fetcher: this base
fetches the current dataloader's batches (keeping a batch that already belongs to the next dataloader for its run),
counts them on the parent loop's counters through a per-dataloader view, and clears the reload flags the way
Lightning's own loops do after every batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from alkit import _seam
from alkit._seam import _DataFetcher, _DataLoaderIterDataFetcher
from alkit.loops.loop import _LoopCore

__all__ = ["DataLoaderEpochLoop"]


class DataLoaderEpochLoop(_LoopCore):
    """Base of :class:`~alkit.loops.EvaluationEpochLoop` and :class:`~alkit.loops.PredictionEpochLoop`.

    Subclasses say which parent they run under (``_parent_class``, ``_parent_name``) and which progress view counts
    their batches (``_view_class`` over the parent's ``_source_class`` counters).
    """

    _parent_class: ClassVar[type]
    _parent_name: ClassVar[str]
    _view_class: ClassVar[type]
    _source_class: ClassVar[type]

    def __init__(self) -> None:
        super().__init__()
        self.batch_progress = self._view_class()
        self._dl_max_batches: int | float = 0
        self._dataloader_idx = 0
        self._data_fetcher: _DataFetcher | None = None
        # a batch from the shared fetcher that belongs to a later dataloader (fetched when the length was unknown)
        self._pending: tuple | None = None
        # the parent loop while running (a tuple: a loop among this loop's attributes would be taken for a child)
        self._running: tuple = ()

    def _parent_loop(self) -> Any:
        """The parent loop whose counters and per-batch step this loop drives (a clear error when not connected)."""
        running = self._running
        if running:
            return running[0]
        parent = self.parent
        if not isinstance(parent, self._parent_class):
            raise RuntimeError(
                f"`{type(self).__name__}` must be connected as the `epoch_loop` of {self._parent_name};"
                f" its parent is {type(parent).__name__ if parent is not None else None}."
            )
        return parent

    @property
    def dataloader_idx(self) -> int:
        """Index of the dataloader this loop is running."""
        return self._dataloader_idx

    def _count_on_parent(self) -> None:
        """Count this dataloader's batches from zero, on the parent loop's counters (the progress view)."""
        if isinstance(self.batch_progress, self._view_class):
            source = getattr(self.parent, "batch_progress", None)
            self.batch_progress.start_dataloader(source if isinstance(source, self._source_class) else None)
        else:
            self.batch_progress.reset_on_run()

    def _begin(self, data_fetcher: _DataFetcher, dataloader_idx: int, dl_max_batches: int | float) -> None:
        """Record the dataloader this run covers (called by the subclasses' ``on_run_start``)."""
        self._running = ()
        self._running = (self._parent_loop(),)
        self._data_fetcher = data_fetcher
        self._dataloader_idx = dataloader_idx
        self._dl_max_batches = dl_max_batches
        if isinstance(self.batch_progress, self._view_class):
            self.batch_progress.max_batches = dl_max_batches

    @property
    def done(self) -> bool:
        """Whether this dataloader's batches have all been run."""
        return self.batch_progress.current.completed >= self._dl_max_batches

    def reset(self) -> None:
        """Count this dataloader's batches from zero."""
        self._dl_max_batches = 0
        self._data_fetcher = None
        self._count_on_parent()

    def fetch_batch(self, data_fetcher: _DataFetcher) -> tuple[Any, int, Iterator | None]:
        """Next ``(batch, batch_idx, dataloader_iter)`` of this dataloader; ``dataloader_iter`` only for
        iterator-style steps. Raises ``StopIteration`` when the dataloader has no more batches.

        All dataloaders share one data fetcher (Lightning 2's): a batch fetched from the next dataloader is kept for
        that dataloader's run.
        """
        pending = self._pending
        if pending is not None:
            self._pending = None
        if pending is not None and pending[0] is data_fetcher:
            _, batch, batch_idx, dataloader_idx, dataloader_iter = pending
        elif isinstance(data_fetcher, _DataLoaderIterDataFetcher):
            dataloader_iter = next(data_fetcher)
            # the indices of the batch the step fetched last (Lightning passes the same to the hooks)
            batch, batch_idx, dataloader_idx = _seam.fetched_batch(data_fetcher)
        else:
            dataloader_iter = None
            batch, batch_idx, dataloader_idx = next(data_fetcher)
        if dataloader_idx != self._dataloader_idx:
            self._pending = (data_fetcher, batch, batch_idx, dataloader_idx, dataloader_iter)
            raise StopIteration
        self.batch_progress.is_last_batch = data_fetcher.done
        return batch, batch_idx, dataloader_iter

    def on_iteration_done(self) -> None:
        # this loop's reload flags (it has no restart stage: Lightning 2 has no such loop)
        if _seam.restart_pending(self):
            _seam.finish_iteration(self)
        # Lightning clears the parent loop's restart flags after every batch
        self._parent_loop().on_iteration_done()

    def on_run_end(self) -> None:
        self._data_fetcher = None
        self._running = ()

    def teardown(self) -> None:
        self._pending = None
        self._data_fetcher = None
        self._running = ()

    def state_dict(self, destination: dict | None = None, prefix: str = "") -> dict:
        destination = super().state_dict(destination, prefix)
        if isinstance(self.batch_progress, self._view_class):
            # a view of the parent loop's counters, which are saved: the layout stays Lightning 2's
            destination.pop(prefix + "batch_progress", None)
        return destination
