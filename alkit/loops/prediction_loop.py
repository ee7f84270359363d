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

from typing import Any

from alkit._seam import _DataFetcher, _DataLoaderIterDataFetcher, _no_grad_context, _PredictionLoop
from alkit.loops.dataloader_epoch_loop import DataLoaderEpochLoop
from alkit.loops.loop import Loop, _LoopCore
from alkit.loops.progress import DataLoaderProgress, DataLoaderStepProgress, Progress

__all__ = ["PredictionEpochLoop", "PredictionLoop"]


class PredictionLoop(_PredictionLoop, _LoopCore):
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


class PredictionEpochLoop(DataLoaderEpochLoop):
    """Iterates the batches of one predict dataloader; each batch is handled by :meth:`predict_step`.

    Runs once per dataloader as ``epoch_loop`` of a :class:`PredictionLoop`, with Lightning 1.x's arguments:
    ``run(data_fetcher, dataloader_idx, dl_max_batches, num_dataloaders)``. ``batch_progress`` counts this
    dataloader's batches (``current``) and every dataloader's (``total``).
    """

    _parent_class = _PredictionLoop
    _parent_name = "a `PredictionLoop`"
    _view_class = DataLoaderStepProgress
    _source_class = Progress

    def __init__(self) -> None:
        super().__init__()
        self._num_dataloaders = 0

    @property
    def prediction_loop(self) -> PredictionLoop:
        """The :class:`PredictionLoop` this epoch loop runs under."""
        return self._parent_loop()

    def on_run_start(
        self, data_fetcher: _DataFetcher, dataloader_idx: int, dl_max_batches: int | float, num_dataloaders: int
    ) -> None:
        """Record the dataloader: its index, its number of batches and the number of dataloaders."""
        self._begin(data_fetcher, dataloader_idx, dl_max_batches)
        self._num_dataloaders = num_dataloaders

    def advance(
        self, data_fetcher: _DataFetcher, dataloader_idx: int, dl_max_batches: int | float, num_dataloaders: int
    ) -> None:
        """Predict the next batch of this dataloader (``StopIteration`` when there is none)."""
        batch, batch_idx, dataloader_iter = self.fetch_batch(data_fetcher)
        self.predict_step(batch, batch_idx, self._dataloader_idx, dataloader_iter)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int, dataloader_iter: Any) -> None:
        """Predict one batch: hooks, ``predict_step``, progress and the stored predictions (Lightning's step)."""
        self._parent_loop()._predict_step(batch, batch_idx, dataloader_idx, dataloader_iter)
