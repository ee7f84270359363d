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

import inspect
from typing import Any

from alkit import _seam
from alkit._seam import (
    _AutomaticOptimization,
    _DataFetcher,
    _DataLoaderIterDataFetcher,
    _ManualOptimization,
    _TrainingEpochLoop,
)
from alkit.lightning import pl
from alkit.loops.evaluation_loop import EvaluationLoop
from alkit.loops.loop import Loop, _LoopCore
from alkit.loops.optimization.manual import ManualOptimization
from alkit.loops.optimization.optimizer_loop import OptimizerLoop, _hook, _legacy_parameters
from alkit.loops.training_batch_loop import TrainingBatchLoop
from alkit.loops.utilities import prepare_outputs_training_batch_end

TrainerFn = pl.trainer.states.TrainerFn
RunningStage = pl.trainer.states.RunningStage

__all__ = ["TrainingEpochLoop"]


class TrainingEpochLoop(_TrainingEpochLoop, _LoopCore):
    """Runs the training batches of one epoch; ``batch_loop`` optimizes each batch, ``val_loop`` validates.

    Args:
        min_steps: train at least this many optimizer steps (early stopping waits for it).
        max_steps: stop after this many optimizer steps; ``-1`` means no limit.
    """

    def __init__(self, min_steps: int | None = None, max_steps: int = -1) -> None:
        # Lightning's own set-up (limits, progress, results, restart stage), then alkit's connectable children in
        # place of the optimization loops and validation loop it built.
        object.__setattr__(self, "_building", True)
        _TrainingEpochLoop.__init__(self, None, min_steps=min_steps, max_steps=max_steps)  # type: ignore[arg-type]
        object.__setattr__(self, "_building", False)
        self.batch_loop = TrainingBatchLoop()
        self.val_loop = EvaluationLoop(verbose=False, inference_mode=False)
        self.val_loop._set_role(TrainerFn.FITTING, RunningStage.VALIDATING)
        self._data_fetcher: _DataFetcher | None = None
        # Lightning's epoch loop, Trainer and tuner address the optimization by these two names: both lead to
        # `batch_loop`, so that Lightning's own `advance` runs alkit's connectable TrainingBatchLoop. Plain instance
        # attributes (not properties): Lightning reads them for every batch.
        object.__setattr__(self, "automatic_optimization", _BatchLoopEntry(self, "optimizer_loop"))
        object.__setattr__(self, "manual_optimization", _BatchLoopEntry(self, "manual_loop"))

    #: a loop assigned to Lightning 2's name of an optimization loop is connected to ``batch_loop`` under its 1.x name
    _loop_aliases = {"automatic_optimization": "optimizer_loop", "manual_optimization": "manual_loop"}
    _building = False  # while Lightning's __init__ runs

    def _set_aliased_loop(self, name: str, loop: Any) -> None:
        if self._building:
            return  # Lightning's __init__ builds its own; alkit's TrainingBatchLoop holds the real ones
        setattr(self.batch_loop, self._loop_aliases[name], loop)

    @property
    def global_step(self) -> int:
        """Optimizer steps taken, from the connected optimizer loop's progress (Lightning's rule).

        Read several times per batch (``trainer.global_step``): straight from ``batch_loop``'s children, the loops
        ``automatic_optimization``/``manual_optimization`` lead to.
        """
        lightning_module = self.trainer.lightning_module
        if lightning_module is None or lightning_module.automatic_optimization:
            return self.batch_loop.optimizer_loop.optim_progress.optimizer_steps
        return self.batch_loop.manual_loop.optim_step_progress.total.completed

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

    #: Lightning 1.x's name for the conversion of the batch loop's outputs for ``on_train_batch_end``
    _prepare_outputs_training_batch_end = staticmethod(prepare_outputs_training_batch_end)

    def run(self, data_fetcher: _DataFetcher) -> Any:
        """Run one epoch over ``data_fetcher`` (the :class:`~alkit.loops.Loop` contract)."""
        return Loop.run(self, data_fetcher)

    def on_run_start(self, data_fetcher: _DataFetcher) -> None:
        self._data_fetcher = data_fetcher
        super().on_run_start(data_fetcher)
        self.automatic_optimization.prepare()
        self.manual_optimization.prepare()

    def on_advance_end(self) -> None:  # type: ignore[override]
        """Validate if it is time to, update plateau schedulers and step counters (Lightning's logic)."""
        assert self._data_fetcher is not None
        _TrainingEpochLoop.on_advance_end(self, self._data_fetcher)

    def on_run_end(self) -> None:
        self._data_fetcher = None

    # ``advance(data_fetcher)`` is Lightning's: fetch, hooks, ``batch_loop.run`` (through
    # ``automatic_optimization``/``manual_optimization``), LR schedulers, hooks, logging.

    def fetch_batch(self, data_fetcher: _DataFetcher) -> tuple[Any, int, Any]:
        """Next ``(batch, batch_idx, dataloader_iter)``; ``dataloader_iter`` is set only for iterator-style steps.

        For an ``advance`` written by hand. Also records whether this is the epoch's last batch. Raises
        ``StopIteration`` when the data is exhausted.
        """
        if isinstance(data_fetcher, _DataLoaderIterDataFetcher):
            dataloader_iter = next(data_fetcher)
            batch, batch_idx, _ = _seam.fetched_batch(data_fetcher)
        else:
            dataloader_iter = None
            batch, _, __ = next(data_fetcher)
            # counted from the loop's own progress, so that the index is right after a restart
            batch_idx = self.batch_idx + 1
        self.batch_progress.is_last_batch = data_fetcher.done
        return batch, batch_idx, dataloader_iter


class _BatchLoopEntry:
    """Stands where Lightning 2's epoch loop keeps ``_AutomaticOptimization`` / ``_ManualOptimization``.

    Lightning's ``advance`` calls ``automatic_optimization.run(optimizer, batch_idx, kwargs)`` or
    ``manual_optimization.run(kwargs)``; both run the epoch loop's ``batch_loop``, which dispatches to its
    ``optimizer_loop`` or ``manual_loop`` (whatever loop is connected there). The progress Lightning reads through
    these names (``global_step``, the tuner's reset) is the connected loop's own. The names are listed, not
    forwarded wholesale, so a misspelling is an ``AttributeError``.

    A user who never replaces a loop pays nothing for the restored batch level: when the connected loops are
    alkit's own and nothing 1.x-specific is in play (one optimizer, no ``"frequency"``, no 1.x-style hook
    overrides, no yielding ``training_step``), the batch runs straight through Lightning's own optimization with
    the connected loop's progress trackers, which is exactly what the batch and optimizer loops would have done.
    """

    __slots__ = ("_epoch_loop", "_name", "_native", "_pending")

    def __init__(self, epoch_loop: TrainingEpochLoop, name: str) -> None:
        self._epoch_loop = epoch_loop
        self._name = name
        self._native: _NativeBatch | None = None
        self._pending: _NativeBatch | None = None

    @property
    def loop(self) -> Any:
        """The loop connected at ``batch_loop.<name>``."""
        return getattr(self._epoch_loop.batch_loop, self._name)

    def prepare(self) -> None:
        """Decide (once per epoch) whether the batches can run through Lightning's own optimization directly."""
        native = _native_batch(self._epoch_loop, self._name)
        if native is not None and native.restart_pending():
            # the slow path clears the reload flags after the first batch; the fast one takes over from there
            self._native, self._pending = None, native
        else:
            self._native, self._pending = native, None

    def run(self, *args: Any) -> Any:
        # (optimizer, batch_idx, kwargs) for automatic optimization, (kwargs,) for manual
        epoch_loop = self._epoch_loop
        native = self._native
        if native is not None:
            # still connected? (inlined: once per batch)
            batch_loop = native.batch_loop
            if (
                getattr(epoch_loop, "batch_loop", None) is batch_loop
                and getattr(batch_loop, self._name, None) is native.loop
            ):
                runner = native.runner
                if runner is None:
                    return _ManualOptimization.run(native.loop, args[0])
                object.__setattr__(batch_loop, "batch_idx", args[1])
                runner._skip_backward = native.loop._skip_backward
                return runner.run(*args)
        kwargs = args[-1]
        batch_idx = args[1] if len(args) == 3 else None
        outputs = epoch_loop.batch_loop.run(kwargs, batch_idx)
        trainer = epoch_loop.trainer
        pending = self._pending
        if pending is not None and pending.still_connected(epoch_loop) and not pending.restart_pending():
            self._native, self._pending = pending, None
        # what `on_train_batch_end` receives, as in Lightning 1.x (Lightning 2's `{"loss": ...}` with one optimizer)
        return prepare_outputs_training_batch_end(outputs, trainer.lightning_module, len(trainer.optimizers))

    @property
    def optim_progress(self) -> Any:
        # read for `trainer.global_step` several times per batch: the connected loop without an extra call layer
        return getattr(self._epoch_loop.batch_loop, self._name).optim_progress

    @property
    def optim_step_progress(self) -> Any:
        return self.loop.optim_step_progress

    @property
    def _skip_backward(self) -> bool:
        return self.loop._skip_backward

    @_skip_backward.setter
    def _skip_backward(self, value: bool) -> None:
        self.loop._skip_backward = value

    def state_dict(self) -> dict:
        return self.loop.state_dict()

    def load_state_dict(self, state_dict: dict, prefix: str = "") -> None:
        self.loop.load_state_dict(state_dict, prefix)


class _NativeBatch:
    """One batch through Lightning's own optimization, for the default batch and optimizer loops.

    Automatic optimization runs a plain ``_AutomaticOptimization`` that shares the ``OptimizerLoop``'s progress
    trackers (so ``global_step``, checkpoints and 1.x progress paths are the same objects); manual optimization runs
    Lightning's ``_ManualOptimization.run`` on the connected ``ManualOptimization``.
    """

    __slots__ = ("batch_loop", "loop", "runner")

    def __init__(self, batch_loop: TrainingBatchLoop, loop: Any, runner: Any) -> None:
        self.batch_loop = batch_loop
        self.loop = loop
        #: the ``_AutomaticOptimization`` that runs the batch; ``None`` under manual optimization
        self.runner = runner

    def still_connected(self, epoch_loop: TrainingEpochLoop) -> bool:
        batch_loop = self.batch_loop
        return getattr(epoch_loop, "batch_loop", None) is batch_loop and (
            getattr(batch_loop, "manual_loop" if self.runner is None else "optimizer_loop", None) is self.loop
        )

    def restart_pending(self) -> bool:
        return _seam.restart_pending(self.batch_loop) or _seam.restart_pending(self.loop)


def _native_batch(epoch_loop: TrainingEpochLoop, name: str) -> _NativeBatch | None:
    """The native runner for ``batch_loop.<name>``, or ``None`` when the batch level must run as loops."""
    batch_loop = getattr(epoch_loop, "batch_loop", None)
    trainer = epoch_loop.trainer
    if type(batch_loop) is not TrainingBatchLoop or trainer is None:
        return None
    module = trainer.lightning_module
    training_step = getattr(module, "training_step", None)
    if training_step is None or inspect.isgeneratorfunction(training_step):
        return None
    loop = getattr(batch_loop, name, None)
    if name == "manual_loop":
        return _NativeBatch(batch_loop, loop, None) if type(loop) is ManualOptimization else None
    if type(loop) is not OptimizerLoop or len(trainer.optimizers) != 1:
        return None
    if any(_legacy_parameters(_hook(module, hook)) is not None for hook in ("optimizer_step", "optimizer_zero_grad")):
        return None
    runner = _AutomaticOptimization(trainer)
    runner.optim_progress = loop.optim_progress
    # 1.x readers of `optimizer_loop.optimizer_idx` during the step see the one optimizer
    object.__setattr__(loop, "_indices", (0,))
    object.__setattr__(loop, "_optimizers", tuple(trainer.optimizers))
    return _NativeBatch(batch_loop, loop, runner)


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
