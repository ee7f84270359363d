"""``EvaluationLoop`` and ``EvaluationEpochLoop``: validation and testing, one dataloader at a time (Lightning 1.x).

::

    on_{validation,test}_start(); on_..._epoch_start()         # EvaluationLoop.on_run_start
    for dataloader_idx, dataloader in enumerate(dataloaders):  # EvaluationLoop.advance (dataloader_progress)
        # EvaluationEpochLoop.run(data_fetcher, dl_max_batches, kwargs)
        for batch_idx, batch in enumerate(dataloader):
            on_..._batch_start(); ..._step(batch, batch_idx); on_..._batch_end()
        store this dataloader's metrics (".../dataloader_idx_N")
    on_..._epoch_end(); on_..._end()                           # EvaluationLoop.on_run_end

Lightning 2 merged both levels into ``_EvaluationLoop.run``, one iteration over all dataloaders' batches. alkit
restores the 1.x structure: :class:`EvaluationLoop` is the dataloader loop (``dataloader_progress``,
``current_dataloader_idx``) and runs its ``epoch_loop`` once per dataloader; :class:`EvaluationEpochLoop` iterates
one dataloader's batches and evaluates each with Lightning's own step (hooks, progress, logging), so it can be
replaced (``val_loop.connect(epoch_loop=MyEvalEpochLoop())``).

Lightning's Trainer and callbacks read the evaluation loop's ``batch_progress`` (batches of every dataloader); the
epoch loop's ``batch_progress`` is the 1.x one (the current dataloader's batches), a view of the same counters
(:class:`~alkit.loops.progress.DataLoaderBatchProgress`), so a batch is counted once. Checkpoints keep Lightning
2's layout: ``dataloader_progress`` and the per-dataloader view are not saved, and an evaluation resumed from a
checkpoint written in its middle starts again at its first dataloader, as ``pytorch_lightning.Trainer`` does.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

from alkit._seam import _DataFetcher, _DataLoaderIterDataFetcher, _DataLoaderSource, _EvaluationLoop, _no_grad_context
from alkit.lightning import pl
from alkit.loops.dataloader_epoch_loop import DataLoaderEpochLoop
from alkit.loops.loop import Loop, _LoopCore
from alkit.loops.progress import BatchProgress, DataLoaderBatchProgress, DataLoaderProgress

TrainerFn = pl.trainer.states.TrainerFn
RunningStage = pl.trainer.states.RunningStage

__all__ = ["EvaluationEpochLoop", "EvaluationLoop"]


class EvaluationLoop(_EvaluationLoop, _LoopCore):
    """Runs ``validation_step``/``test_step`` over the evaluation dataloaders, ``epoch_loop`` once per dataloader.

    The same class serves ``trainer.validate_loop``, ``trainer.test_loop`` and the validation inside fit
    (``trainer.fit_loop.epoch_loop.val_loop``): assigning it to one of those places sets its role.

    Args:
        verbose: print the final metrics table.
        inference_mode: run under ``torch.inference_mode`` (else ``torch.no_grad``).
    """

    def __init__(self, verbose: bool = True, inference_mode: bool = True) -> None:
        super().__init__(
            None,  # type: ignore[arg-type]
            TrainerFn.VALIDATING,
            RunningStage.VALIDATING,
            verbose=verbose,
            inference_mode=inference_mode,
        )
        #: the dataloaders this loop went through (1.x): ``current`` in this run, ``total`` in every run
        self.dataloader_progress = DataLoaderProgress()
        self.epoch_loop = EvaluationEpochLoop()
        self.epoch_loop._count_on_parent()
        self._ready_before_dataloader = 0

    def _set_role(self, trainer_fn: TrainerFn, stage: RunningStage) -> None:
        """Make this loop the validation loop of fit, the ``validate`` loop or the ``test`` loop."""
        self._trainer_fn = trainer_fn
        self._stage = stage
        self._data_source = _DataLoaderSource(self._data_source.instance, f"{stage.dataloader_prefix}_dataloader")

    # ------------------------------------------------------------------------------------------------------------
    # the dataloaders (1.x ``DataLoaderLoop``)
    # ------------------------------------------------------------------------------------------------------------
    @property
    def dataloaders(self) -> list:
        """The evaluation dataloaders of the current run (empty before the data is set up)."""
        combined_loader = self._combined_loader
        return [] if combined_loader is None else list(combined_loader.flattened)

    @property
    def current_dataloader_idx(self) -> int:
        """Index of the dataloader being evaluated."""
        return self.dataloader_progress.current.ready - 1

    @property
    def current_dataloader(self) -> Any:
        """The dataloader being evaluated."""
        return self.dataloaders[self.current_dataloader_idx]

    @property
    def _dataloader_runs(self) -> int:
        # a CombinedLoader in another mode than "sequential" yields every dataloader's batches together: one run
        return self.num_dataloaders if self._is_sequential else 1

    # ------------------------------------------------------------------------------------------------------------
    # the run contract
    # ------------------------------------------------------------------------------------------------------------
    @_no_grad_context
    def run(self) -> list[dict[str, Any]]:
        """Set up the evaluation data, then run (the :class:`~alkit.loops.Loop` contract) without gradients."""
        self.setup_data()
        return Loop.run(self)

    def on_skip(self) -> list[dict[str, Any]]:
        return []

    @property
    def done(self) -> bool:
        """Whether every dataloader has been evaluated."""
        return self.dataloader_progress.current.completed >= self._dataloader_runs

    def reset(self) -> None:
        """Lightning's reset (progress, data fetcher over all dataloaders), and the dataloader count from zero.

        The count always starts from zero: like Lightning 2, an evaluation resumed from a checkpoint written in its
        middle goes through its dataloaders from the first one.
        """
        super().reset()
        self.dataloader_progress.reset_on_run()

    def on_advance_start(self) -> None:
        self.dataloader_progress.increment_ready()
        self._ready_before_dataloader = self.batch_progress.current.ready

    def advance(self) -> None:
        """Evaluate one dataloader: run ``epoch_loop`` over its batches."""
        dataloader_idx = self.current_dataloader_idx
        kwargs: OrderedDict[str, Any] = OrderedDict()
        if self._is_sequential:
            dl_max_batches = self.max_batches[dataloader_idx]
            if self.num_dataloaders > 1:
                kwargs["dataloader_idx"] = dataloader_idx
        else:
            dl_max_batches = math.inf
        if isinstance(self._data_fetcher, _DataLoaderIterDataFetcher):
            dl_max_batches = math.inf  # the step pulls batches itself: the dataloader ends when they run out
        self.epoch_loop.run(self._data_fetcher, dl_max_batches, kwargs)

    def on_advance_end(self) -> None:
        # The metrics logged so far belong to this dataloader (suffix `/dataloader_idx_N`). Stored when Lightning 2
        # stores them: for every dataloader that evaluated a batch, and for the first one even when it had none.
        if self.batch_progress.current.ready > self._ready_before_dataloader or self.current_dataloader_idx == 0:
            self._store_dataloader_outputs()
        self.dataloader_progress.increment_completed()

    def teardown(self) -> None:
        super().teardown()
        self.epoch_loop.teardown()

    # ------------------------------------------------------------------------------------------------------------
    # checkpoints: Lightning 2's layout, so that they move freely between pl.Trainer and alkit.Trainer
    # ------------------------------------------------------------------------------------------------------------
    def state_dict(self, destination: dict | None = None, prefix: str = "") -> dict:
        destination = super().state_dict(destination, prefix)
        destination.pop(prefix + "dataloader_progress", None)
        return destination


class EvaluationEpochLoop(DataLoaderEpochLoop):
    """Iterates the batches of one evaluation dataloader; each batch is evaluated by :meth:`evaluation_step`.

    Runs once per dataloader as ``epoch_loop`` of an :class:`EvaluationLoop`, with Lightning 1.x's arguments:
    ``run(data_fetcher, dl_max_batches, kwargs)``, ``kwargs`` holding ``dataloader_idx`` when there are several
    dataloaders (the index is also :attr:`dataloader_idx`). ``batch_progress`` counts this dataloader's batches
    (``current``) and every dataloader's (``total``).
    """

    _parent_class = _EvaluationLoop
    _parent_name = "an `EvaluationLoop`"
    _view_class = DataLoaderBatchProgress
    _source_class = BatchProgress

    @property
    def evaluation_loop(self) -> EvaluationLoop:
        """The :class:`EvaluationLoop` this epoch loop runs under."""
        return self._parent_loop()

    def on_run_start(self, data_fetcher: _DataFetcher, dl_max_batches: int | float, kwargs: OrderedDict) -> None:
        """Record the dataloader: its index (``kwargs["dataloader_idx"]``, 0 when absent) and number of batches."""
        self._begin(data_fetcher, kwargs.get("dataloader_idx", 0), dl_max_batches)

    def advance(self, data_fetcher: _DataFetcher, dl_max_batches: int | float, kwargs: OrderedDict) -> None:
        """Evaluate the next batch of this dataloader (``StopIteration`` when there is none)."""
        batch, batch_idx, dataloader_iter = self.fetch_batch(data_fetcher)
        self.evaluation_step(batch, batch_idx, self._dataloader_idx, dataloader_iter)

    def evaluation_step(self, batch: Any, batch_idx: int, dataloader_idx: int, dataloader_iter: Any) -> None:
        """Evaluate one batch: hooks, ``validation_step``/``test_step``, progress and logging (Lightning's step)."""
        self._parent_loop()._evaluation_step(batch, batch_idx, dataloader_idx, dataloader_iter)
