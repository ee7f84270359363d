"""``TrainingEpochLoop``: one epoch of training batches, with validation at the requested interval.

::

    for batch_idx, batch in enumerate(train_dataloader):
        on_train_batch_start(batch, batch_idx)
        output = batch_loop.run(kwargs, batch_idx)     # TrainingBatchLoop: the optimization of one batch
        update step-interval LR schedulers
        on_train_batch_end(output, batch, batch_idx)
        if should_check_val:
            val_loop.run()                             # EvaluationLoop

Lightning 2 inlined the batch loop into this loop (``automatic_optimization.run(...)``); alkit puts the
:class:`~alkit.loops.TrainingBatchLoop` back as a connectable child, so ``epoch_loop.batch_loop.connect(
optimizer_loop=YieldLoop())`` works as in 1.x. Everything else (restart stages, LR scheduling, validation
interval, logging) is Lightning's ``_TrainingEpochLoop``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from pytorch_lightning.loops.fetchers import _DataFetcher, _DataLoaderIterDataFetcher
from pytorch_lightning.loops.progress import _BatchProgress, _SchedulerProgress
from pytorch_lightning.loops.training_epoch_loop import RestartStage, _TrainingEpochLoop
from pytorch_lightning.trainer import call
from pytorch_lightning.trainer.connectors.logger_connector.result import _ResultCollection
from pytorch_lightning.trainer.states import RunningStage, TrainerFn
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from pytorch_lightning.utilities.rank_zero import WarningCache

from alkit.loops.evaluation_loop import EvaluationLoop
from alkit.loops.loop import Loop
from alkit.loops.optimization.manual import ManualOptimization
from alkit.loops.optimization.optimizer_loop import OptimizerLoop
from alkit.loops.training_batch_loop import TrainingBatchLoop

__all__ = ["TrainingEpochLoop"]


class TrainingEpochLoop(_TrainingEpochLoop, Loop):
    """Runs the training batches of one epoch; ``batch_loop`` optimizes each batch, ``val_loop`` validates.

    Args:
        min_steps: train at least this many optimizer steps (early stopping waits for it).
        max_steps: stop after this many optimizer steps; ``-1`` means no limit.
    """

    _carried_attributes = ("_results", "_batches_that_stepped", "_skip_next_val", "_restart_stage")

    def __init__(self, min_steps: int | None = None, max_steps: int = -1) -> None:
        # Lightning's __init__ is not called: it would build its own optimization loops where alkit has
        # `batch_loop`. The attributes below are exactly the ones it sets (a test compares both sets).
        Loop.__init__(self)
        if max_steps < -1:
            raise MisconfigurationException(
                f"`max_steps` must be a non-negative integer or -1 (no limit); got max_steps={max_steps}."
            )
        self.min_steps = min_steps
        self.max_steps = max_steps
        self.batch_progress = _BatchProgress()
        self.scheduler_progress = _SchedulerProgress()
        self.batch_loop = TrainingBatchLoop()
        self.val_loop = EvaluationLoop(verbose=False, inference_mode=False)
        self.val_loop._set_role(TrainerFn.FITTING, RunningStage.VALIDATING)
        self._results = _ResultCollection(training=True)
        self._warning_cache = WarningCache()
        self._batches_that_stepped: int = 0
        self._restart_stage = RestartStage.NONE
        self._skip_next_val = False
        self._data_fetcher: _DataFetcher | None = None

    # Lightning's Trainer, callbacks and FitLoop address the optimization loops by these names.
    @property
    def automatic_optimization(self) -> OptimizerLoop:
        """The optimizer loop of ``batch_loop`` (Lightning 2's name for it)."""
        return self.batch_loop.optimizer_loop

    @property
    def manual_optimization(self) -> ManualOptimization:
        """The manual-optimization loop of ``batch_loop`` (Lightning 2's name for it)."""
        return self.batch_loop.manual_loop

    # ------------------------------------------------------------------------------------------------------------
    # checkpoint layout: Lightning's own, so checkpoints move freely between pl.Trainer and alkit.Trainer
    # ------------------------------------------------------------------------------------------------------------
    def state_dict(self, destination: dict | None = None, prefix: str = "") -> dict:
        own: dict = Loop.state_dict(self, {}, "")
        destination = {} if destination is None else destination
        destination.update({prefix + _to_lightning_key(k): v for k, v in own.items()})
        return destination

    def load_state_dict(self, state_dict: dict, prefix: str = "") -> None:
        translated = {_from_lightning_key(k[len(prefix) :]): v for k, v in state_dict.items() if k.startswith(prefix)}
        Loop.load_state_dict(self, translated, "")

    def run(self, data_fetcher: _DataFetcher) -> Any:
        """Run one epoch over ``data_fetcher`` (the :class:`~alkit.loops.Loop` contract)."""
        return Loop.run(self, data_fetcher)

    def on_run_start(self, data_fetcher: _DataFetcher) -> None:
        self._data_fetcher = data_fetcher
        super().on_run_start(data_fetcher)

    def on_advance_end(self) -> None:  # type: ignore[override]
        """Validate if it is time to, update plateau schedulers and step counters (Lightning's logic)."""
        assert self._data_fetcher is not None
        _TrainingEpochLoop.on_advance_end(self, self._data_fetcher)

    def on_run_end(self) -> None:
        self._data_fetcher = None

    # ------------------------------------------------------------------------------------------------------------
    # one batch
    # ------------------------------------------------------------------------------------------------------------
    def advance(self, data_fetcher: _DataFetcher) -> None:
        """Train on the next batch: fetch, hooks, ``batch_loop.run``, LR schedulers, hooks, logging.

        Raises:
            StopIteration: when the data is exhausted or ``on_train_batch_start`` returned ``-1``.
        """
        if self._resume_pending_validation(data_fetcher):
            return
        # we are going to train first so the val loop does not need to restart (a write that walks the val loop's
        # children: skipped in the common case where nothing was restarting)
        if self.val_loop._restarting:
            self.val_loop.restarting = False

        trainer = self.trainer
        if torch.distributed.is_available() and torch.distributed.is_initialized() and trainer.world_size > 1:
            self._broadcast_sigterm_tensor()

        batch, batch_idx, dataloader_iter = self.fetch_batch(data_fetcher)
        using_dataloader_iter = dataloader_iter is not None
        if not using_dataloader_iter:
            batch = trainer.precision_plugin.convert_input(batch)
            batch = trainer.lightning_module._on_before_batch_transfer(batch, dataloader_idx=0)
            batch = call._call_strategy_hook(trainer, "batch_to_device", batch, dataloader_idx=0)

        self.batch_progress.increment_ready()
        trainer._logger_connector.on_batch_start(batch)

        batch_output: Any = None
        skip_rest_of_epoch = False
        if batch is None and not using_dataloader_iter:
            self._warning_cache.warn("train_dataloader yielded None. If this was on purpose, ignore this warning...")
        else:
            call._call_callback_hooks(trainer, "on_train_batch_start", batch, batch_idx)
            response = call._call_lightning_module_hook(trainer, "on_train_batch_start", batch, batch_idx)
            call._call_strategy_hook(trainer, "on_train_batch_start", batch, batch_idx)
            skip_rest_of_epoch = response == -1
            if skip_rest_of_epoch:
                self.batch_progress.increment_by(0, is_last_batch=True)
            else:
                self.batch_progress.increment_started()
                kwargs = (
                    self._build_kwargs(OrderedDict(), batch, batch_idx)
                    if not using_dataloader_iter
                    else OrderedDict(any=dataloader_iter)
                )
                with trainer.profiler.profile("run_training_batch"):
                    batch_output = self.batch_loop.run(kwargs, batch_idx)

        self.batch_progress.increment_processed()

        # non-plateau schedulers: step-interval ones now, epoch-interval ones at the end of the epoch
        self.update_lr_schedulers("step", update_plateau_schedulers=False)
        if self._num_ready_batches_reached():
            self.update_lr_schedulers("epoch", update_plateau_schedulers=False)

        if skip_rest_of_epoch:
            raise StopIteration

        if using_dataloader_iter:
            # the step may have consumed the iterator: report what it really used
            batch = data_fetcher._batch
            batch_idx = data_fetcher._batch_idx
            self.batch_progress.is_last_batch = data_fetcher.done

        call._call_callback_hooks(trainer, "on_train_batch_end", batch_output, batch, batch_idx)
        call._call_lightning_module_hook(trainer, "on_train_batch_end", batch_output, batch, batch_idx)
        trainer._logger_connector.on_batch_end()
        self.batch_progress.increment_completed()
        trainer._logger_connector.update_train_step_metrics()

    def _resume_pending_validation(self, data_fetcher: _DataFetcher) -> bool:
        """After a reload, decide whether validation that was under way must finish before training resumes.

        Returns True when this iteration must not train (the interrupted validation runs in ``on_advance_end``).
        """
        if not (self.restarting and self._should_check_val_fx(data_fetcher)):
            return False
        if self.val_loop.restarted_mid_evaluation:
            return True
        if self.restarted_on_last:
            # the checkpoint was saved after validation ran: do not run it twice
            self._skip_next_val = True
            return True
        self.val_loop.increment_progress_to_evaluation_end()
        return False

    def fetch_batch(self, data_fetcher: _DataFetcher) -> tuple[Any, int, Any]:
        """Next ``(batch, batch_idx, dataloader_iter)``; ``dataloader_iter`` is set only for iterator-style steps.

        Also records whether this is the epoch's last batch. Raises ``StopIteration`` when the data is exhausted.
        """
        if isinstance(data_fetcher, _DataLoaderIterDataFetcher):
            dataloader_iter = next(data_fetcher)
            batch, batch_idx = data_fetcher._batch, data_fetcher._batch_idx
        else:
            dataloader_iter = None
            batch, _, __ = next(data_fetcher)
            # Lightning counts from its own progress so that the index is right after a restart
            batch_idx = self.batch_idx + 1
        self.batch_progress.is_last_batch = data_fetcher.done
        return batch, batch_idx, dataloader_iter


_LAYOUT = (
    ("batch_loop.optimizer_loop.", "automatic_optimization."),
    ("batch_loop.manual_loop.", "manual_optimization."),
)


def _to_lightning_key(key: str) -> str:
    for ours, lightning in _LAYOUT:
        if key.startswith(ours):
            return lightning + key[len(ours) :]
    return key


def _from_lightning_key(key: str) -> str:
    for ours, lightning in _LAYOUT:
        if key.startswith(lightning):
            return ours + key[len(lightning) :]
    return key
