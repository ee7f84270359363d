"""``PredictionLoop`` and ``PredictionEpochLoop``: ``trainer.predict``.

::

    on_predict_start(); on_predict_epoch_start()               # PredictionLoop.on_run_start
    for batch_idx, batch in enumerate(predict_dataloaders):    # PredictionEpochLoop
        on_predict_batch_start(); predict_step(batch, batch_idx); on_predict_batch_end()
    on_predict_epoch_end(); on_predict_end()                   # PredictionLoop.on_run_end

As for evaluation, Lightning 2 merged the two levels; alkit restores the epoch loop as a replaceable child while
keeping the bookkeeping (predictions, batch indices for ``BasePredictionWriter``) on :class:`PredictionLoop`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from alkit import _seam
from alkit._seam import _DataFetcher, _DataLoaderIterDataFetcher, _no_grad_context, _PredictionLoop
from alkit.loops.loop import Loop

__all__ = ["PredictionEpochLoop", "PredictionLoop"]


class PredictionLoop(_PredictionLoop, Loop):
    """Runs ``predict_step`` over the predict dataloaders; ``epoch_loop`` iterates the batches.

    Args:
        inference_mode: run under ``torch.inference_mode`` (else ``torch.no_grad``).
    """

    _carried_attributes = ("_data_source", "_combined_loader", "max_batches", "_return_predictions")

    def __init__(self, inference_mode: bool = True) -> None:
        super().__init__(None, inference_mode=inference_mode)  # type: ignore[arg-type]
        self.epoch_loop = PredictionEpochLoop()
        self._ran = False

    @_no_grad_context
    def run(self) -> Any:
        """Set up the predict data, then run (the :class:`~alkit.loops.Loop` contract) without gradients."""
        self.setup_data()
        return Loop.run(self)

    @property
    def done(self) -> bool:
        return self._ran

    def reset(self) -> None:
        super().reset()
        self._ran = False

    def advance(self) -> None:
        assert self._data_fetcher is not None
        self.epoch_loop.run(self._data_fetcher)
        self._ran = True


class PredictionEpochLoop(Loop):
    """Iterates the predict batches; each batch is handled by :meth:`predict_step`."""

    def __init__(self) -> None:
        super().__init__()
        self._finished = False

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
    def done(self) -> bool:
        return self._finished

    def reset(self) -> None:
        self._finished = False

    def advance(self, data_fetcher: _DataFetcher) -> None:
        prediction_loop = self.prediction_loop
        try:
            if isinstance(data_fetcher, _DataLoaderIterDataFetcher):
                dataloader_iter: Iterator | None = next(data_fetcher)
                batch, batch_idx, dataloader_idx = _seam.fetched_batch(data_fetcher)
            else:
                dataloader_iter = None
                batch, batch_idx, dataloader_idx = next(data_fetcher)
        except StopIteration:
            self._finished = True
            raise
        prediction_loop.batch_progress.is_last_batch = data_fetcher.done
        self.predict_step(batch, batch_idx, dataloader_idx, dataloader_iter)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int, dataloader_iter: Any) -> None:
        """Predict one batch: hooks, ``predict_step``, progress and the stored predictions."""
        self.prediction_loop._predict_step(batch, batch_idx, dataloader_idx, dataloader_iter)

    def on_iteration_done(self) -> None:
        super().on_iteration_done()
        self.prediction_loop._restarting = False
