"""``EvaluationLoop`` and ``EvaluationEpochLoop``: validation and testing.

::

    on_{validation,test}_start(); on_..._epoch_start()          # EvaluationLoop.on_run_start
    for batch_idx, batch in enumerate(dataloaders):             # EvaluationEpochLoop
        on_..._batch_start(); ..._step(batch, batch_idx); on_..._batch_end()
    on_..._epoch_end(); on_..._end()                            # EvaluationLoop.on_run_end

Lightning 2 merged both levels into ``_EvaluationLoop.run``; alkit splits the batch iteration back out into
:class:`EvaluationEpochLoop` so it can be replaced (``val_loop.connect(epoch_loop=MyEvalEpochLoop())``). The
per-step bookkeeping (progress counters, hooks, result collection) stays on :class:`EvaluationLoop`, where
Lightning's Trainer and callbacks read it (``trainer.fit_loop.epoch_loop.val_loop.batch_progress``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from alkit import _seam
from alkit._seam import _DataFetcher, _DataLoaderIterDataFetcher, _DataLoaderSource, _EvaluationLoop, _no_grad_context
from alkit.lightning import pl
from alkit.loops.loop import Loop

TrainerFn = pl.trainer.states.TrainerFn
RunningStage = pl.trainer.states.RunningStage

__all__ = ["EvaluationEpochLoop", "EvaluationLoop"]


class EvaluationLoop(_EvaluationLoop, Loop):
    """Runs ``validation_step``/``test_step`` over the evaluation dataloaders; ``epoch_loop`` iterates the batches.

    The same class serves ``trainer.validate_loop``, ``trainer.test_loop`` and the validation inside fit
    (``trainer.fit_loop.epoch_loop.val_loop``): assigning it to one of those places sets its role.

    Args:
        verbose: print the final metrics table.
        inference_mode: run under ``torch.inference_mode`` (else ``torch.no_grad``).
    """

    _carried_attributes = (
        "_trainer_fn",
        "_stage",
        "_data_source",
        "_combined_loader",
        "_max_batches",
        "_last_val_dl_reload_epoch",
        "_seen_batches_per_dataloader",
        "_results",
    )

    def __init__(self, verbose: bool = True, inference_mode: bool = True) -> None:
        super().__init__(
            None,  # type: ignore[arg-type]
            TrainerFn.VALIDATING,
            RunningStage.VALIDATING,
            verbose=verbose,
            inference_mode=inference_mode,
        )
        self.epoch_loop = EvaluationEpochLoop()
        self._ran = False

    def _set_role(self, trainer_fn: TrainerFn, stage: RunningStage) -> None:
        """Make this loop the validation loop of fit, the ``validate`` loop or the ``test`` loop."""
        self._trainer_fn = trainer_fn
        self._stage = stage
        self._data_source = _DataLoaderSource(self._data_source.instance, f"{stage.dataloader_prefix}_dataloader")

    @_no_grad_context
    def run(self) -> list[dict[str, Any]]:
        """Set up the evaluation data, then run (the :class:`~alkit.loops.Loop` contract) without gradients."""
        self.setup_data()
        return Loop.run(self)

    def on_skip(self) -> list[dict[str, Any]]:
        return []

    @property
    def done(self) -> bool:
        return self._ran

    def reset(self) -> None:
        super().reset()
        self._ran = False

    def advance(self) -> None:
        """Run every evaluation batch (all dataloaders, one after the other)."""
        assert self._data_fetcher is not None
        self.epoch_loop.run(self._data_fetcher)
        self._ran = True


class EvaluationEpochLoop(Loop):
    """Iterates the evaluation batches; each batch is evaluated by :meth:`evaluation_step`.

    Connected as ``epoch_loop`` of an :class:`EvaluationLoop`, whose progress counters and hooks it drives.
    """

    def __init__(self) -> None:
        super().__init__()
        self._finished = False
        self._previous_dataloader_idx = 0

    @property
    def evaluation_loop(self) -> EvaluationLoop:
        parent = self.parent
        if not isinstance(parent, _EvaluationLoop):
            raise RuntimeError(
                f"`{type(self).__name__}` must be connected as the `epoch_loop` of an `EvaluationLoop`;"
                f" its parent is {type(parent).__name__ if parent is not None else None}."
            )
        return parent  # type: ignore[return-value]

    @property
    def done(self) -> bool:
        return self._finished

    def reset(self) -> None:
        self._finished = False
        self._previous_dataloader_idx = 0

    def advance(self, data_fetcher: _DataFetcher) -> None:
        evaluation_loop = self.evaluation_loop
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
        if self._previous_dataloader_idx != dataloader_idx:
            # metrics of the previous dataloader are complete: store them under its index
            evaluation_loop._store_dataloader_outputs()
        self._previous_dataloader_idx = dataloader_idx
        evaluation_loop.batch_progress.is_last_batch = data_fetcher.done
        self.evaluation_step(batch, batch_idx, dataloader_idx, dataloader_iter)

    def evaluation_step(self, batch: Any, batch_idx: int, dataloader_idx: int, dataloader_iter: Any) -> None:
        """Evaluate one batch: hooks, ``validation_step``/``test_step``, progress and logging."""
        self.evaluation_loop._evaluation_step(batch, batch_idx, dataloader_idx, dataloader_iter)

    def on_iteration_done(self) -> None:
        super().on_iteration_done()
        # Lightning clears the evaluation loop's restart flags after every batch
        self.evaluation_loop.on_iteration_done()

    def on_run_end(self) -> None:
        self.evaluation_loop._store_dataloader_outputs()
