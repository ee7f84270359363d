"""``PredictionLoop`` and ``PredictionEpochLoop``: ``trainer.predict``, one dataloader at a time (Lightning 1.x).

::

    on_predict_start(); on_predict_epoch_start()               # PredictionLoop.on_run_start
    for dataloader_idx, dataloader in enumerate(dataloaders):  # PredictionLoop.advance (dataloader_progress)
        # PredictionEpochLoop.run(data_fetcher, dataloader_idx, dl_max_batches, num_dataloaders)
        for batch_idx, batch in enumerate(dataloader):
            on_predict_batch_start(); predict_step(batch, batch_idx); on_predict_batch_end()
    on_predict_epoch_end(); on_predict_end()                   # PredictionLoop.on_run_end

As for evaluation, Lightning 2 merged the two levels; alkit restores the 1.x dataloader loop and its epoch loop,
run once per dataloader, while the bookkeeping Lightning's callbacks read (predictions, batch indices for
``BasePredictionWriter``, ``batch_progress`` across dataloaders) stays on :class:`PredictionLoop`. The epoch loop's
``batch_progress`` counts the current dataloader's batches, a view of the same counters
(:class:`~alkit.loops.progress.DataLoaderStepProgress`). Checkpoints keep Lightning 2's layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from alkit import _seam
from alkit._seam import _DataFetcher, _DataLoaderIterDataFetcher, _no_grad_context, _PredictionLoop
from alkit.loops.loop import Loop
from alkit.loops.progress import DataLoaderProgress, DataLoaderStepProgress, Progress

__all__ = ["PredictionEpochLoop", "PredictionLoop"]


class PredictionLoop(_PredictionLoop, Loop):
    """Runs ``predict_step`` over the predict dataloaders, ``epoch_loop`` once per dataloader.

    Args:
        inference_mode: run under ``torch.inference_mode`` (else ``torch.no_grad``).
    """

    def __init__(self, inference_mode: bool = True) -> None:
        super().__init__(None, inference_mode=inference_mode)  # type: ignore[arg-type]
        #: the dataloaders this loop went through (1.x): ``current`` in this run, ``total`` in every run
        self.dataloader_progress = DataLoaderProgress()
        self.epoch_loop = PredictionEpochLoop()
        self.epoch_loop._count_on_parent()

    # ------------------------------------------------------------------------------------------------------------
    # the dataloaders (1.x ``DataLoaderLoop``)
    # ------------------------------------------------------------------------------------------------------------
    @property
    def dataloaders(self) -> list:
        """The predict dataloaders of the current run (empty before the data is set up)."""
        combined_loader = self._combined_loader
        return [] if combined_loader is None else list(combined_loader.flattened)

    @property
    def current_dataloader_idx(self) -> int:
        """Index of the dataloader being predicted."""
        return self.dataloader_progress.current.ready - 1

    @property
    def current_dataloader(self) -> Any:
        """The dataloader being predicted."""
        return self.dataloaders[self.current_dataloader_idx]

    # ------------------------------------------------------------------------------------------------------------
    # the run contract
    # ------------------------------------------------------------------------------------------------------------
    @_no_grad_context
    def run(self) -> Any:
        """Set up the predict data, then run (the :class:`~alkit.loops.Loop` contract) without gradients."""
        self.setup_data()
        return Loop.run(self)

    @property
    def done(self) -> bool:
        """Whether every dataloader has been predicted."""
        return self.dataloader_progress.current.completed >= self.num_dataloaders

    def reset(self) -> None:
        """Lightning's reset (progress, data fetcher over all dataloaders), and the dataloader count from zero."""
        super().reset()
        self.dataloader_progress.reset_on_run()

    def on_advance_start(self) -> None:
        self.dataloader_progress.increment_ready()

    def advance(self) -> None:
        """Predict one dataloader: run ``epoch_loop`` over its batches."""
        dataloader_idx = self.current_dataloader_idx
        dl_max_batches = self.max_batches[dataloader_idx]
        if isinstance(self._data_fetcher, _DataLoaderIterDataFetcher):
            dl_max_batches = float("inf")  # the step pulls batches itself: the dataloader ends when they run out
        self.epoch_loop.run(self._data_fetcher, dataloader_idx, dl_max_batches, self.num_dataloaders)

    def on_advance_end(self) -> None:
        self.dataloader_progress.increment_completed()

    def teardown(self) -> None:
        super().teardown()
        self.epoch_loop.teardown()

    def state_dict(self, destination: dict | None = None, prefix: str = "") -> dict:
        # Lightning 2's layout, so that checkpoints move freely between pl.Trainer and alkit.Trainer
        destination = super().state_dict(destination, prefix)
        destination.pop(prefix + "dataloader_progress", None)
        return destination


class PredictionEpochLoop(Loop):
    """Iterates the batches of one predict dataloader; each batch is handled by :meth:`predict_step`.

    Runs once per dataloader as ``epoch_loop`` of a :class:`PredictionLoop`, with Lightning 1.x's arguments:
    ``run(data_fetcher, dataloader_idx, dl_max_batches, num_dataloaders)``. ``batch_progress`` counts this
    dataloader's batches (``current``) and every dataloader's (``total``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.batch_progress: Progress = DataLoaderStepProgress()
        self._dl_max_batches: int | float = 0
        self._num_dataloaders = 0
        self._dataloader_idx = 0
        self._data_fetcher: _DataFetcher | None = None
        # a batch from the shared fetcher that belongs to a later dataloader (fetched when the length was unknown)
        self._pending: tuple | None = None
        # the parent loop while running (a tuple: a loop among this loop's attributes would be taken for a child)
        self._running: tuple = ()

    @property
    def prediction_loop(self) -> PredictionLoop:
        parent = self.parent
        if not isinstance(parent, _PredictionLoop):
            raise RuntimeError(
                f"`{type(self).__name__}` must be connected as the `epoch_loop` of a `PredictionLoop`;"
                f" its parent is {type(parent).__name__ if parent is not None else None}."
            )
        return parent  # type: ignore[return-value]

    @property
    def dataloader_idx(self) -> int:
        """Index of the dataloader this loop is predicting."""
        return self._dataloader_idx

    def _count_on_parent(self) -> None:
        """Count this dataloader's batches from zero, on the parent loop's counters (see ``DataLoaderStepProgress``)."""
        if isinstance(self.batch_progress, DataLoaderStepProgress):
            source = getattr(self.parent, "batch_progress", None)
            self.batch_progress.start_dataloader(source if isinstance(source, Progress) else None)
        else:
            self.batch_progress.reset_on_run()

    @property
    def done(self) -> bool:
        """Whether this dataloader's batches have all been predicted."""
        return self.batch_progress.current.completed >= self._dl_max_batches

    def reset(self) -> None:
        """Count this dataloader's batches from zero."""
        self._dl_max_batches = 0
        self._data_fetcher = None
        self._count_on_parent()

    def on_run_start(
        self, data_fetcher: _DataFetcher, dataloader_idx: int, dl_max_batches: int | float, num_dataloaders: int
    ) -> None:
        """Record the dataloader: its index, its number of batches and the number of dataloaders."""
        self._running = (self.prediction_loop,)
        self._data_fetcher = data_fetcher
        self._dataloader_idx = dataloader_idx
        self._dl_max_batches = dl_max_batches
        self._num_dataloaders = num_dataloaders
        if isinstance(self.batch_progress, DataLoaderStepProgress):
            self.batch_progress.max_batches = dl_max_batches

    def advance(
        self, data_fetcher: _DataFetcher, dataloader_idx: int, dl_max_batches: int | float, num_dataloaders: int
    ) -> None:
        """Predict the next batch of this dataloader (``StopIteration`` when there is none)."""
        batch, batch_idx, dataloader_iter = self.fetch_batch(data_fetcher)
        self.predict_step(batch, batch_idx, self._dataloader_idx, dataloader_iter)

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

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int, dataloader_iter: Any) -> None:
        """Predict one batch: hooks, ``predict_step``, progress and the stored predictions (Lightning's step)."""
        running = self._running
        loop = running[0] if running else self.prediction_loop
        loop._predict_step(batch, batch_idx, dataloader_idx, dataloader_iter)

    def on_iteration_done(self) -> None:
        # this loop's reload flags (it has no restart stage: Lightning 2 has no such loop)
        if _seam.restart_pending(self):
            _seam.finish_iteration(self)
        # Lightning clears the prediction loop's restart flag after every batch
        running = self._running
        (running[0] if running else self.prediction_loop).on_iteration_done()

    def on_run_end(self) -> None:
        self._data_fetcher = None
        self._running = ()

    def teardown(self) -> None:
        self._pending = None
        self._data_fetcher = None
        self._running = ()

    def state_dict(self, destination: dict | None = None, prefix: str = "") -> dict:
        destination = super().state_dict(destination, prefix)
        if isinstance(self.batch_progress, DataLoaderStepProgress):
            # a view of the prediction loop's counters, which are saved: the layout stays Lightning 2's
            destination.pop(prefix + "batch_progress", None)
        return destination
