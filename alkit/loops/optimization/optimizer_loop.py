"""``OptimizerLoop``: automatic optimization of one batch, one optimizer after the other.

::

    for optimizer_idx, optimizer in optimizers:                 # the active (index, optimizer) pairs
        loss = training_step(batch, batch_idx[, optimizer_idx])  # inside the optimizer's closure
        zero_grad(); backward(loss); optimizer.step()            # or only accumulate

Lightning 2 allows a single optimizer under automatic optimization. This loop restores Lightning 1.x's several
optimizers with 1.x's contract: ``run(optimizers, kwargs)`` with ``optimizers`` a list of ``(optimizer_idx,
optimizer)`` (all of them, or the active one when ``configure_optimizers`` gave ``"frequency"`` keys), returning
``{optimizer_idx: outputs}`` for the optimizers whose ``training_step`` returned a loss. Each optimizer steps with
its parameters toggled on and the others' off; ``training_step`` receives ``optimizer_idx`` when there are several
optimizers, and so do 1.x-style ``optimizer_step``/``optimizer_zero_grad``/``toggle_optimizer`` overrides.
``optim_progress.optimizer_position`` says which of the optimizers is next, and a checkpoint written between two
optimizers' steps records it, so a run resumed from it continues with the optimizer that had not stepped.

With one optimizer it is Lightning 2's ``_AutomaticOptimization`` (same closure, hooks, progress counters and
checkpoint entries).
"""

from __future__ import annotations

import functools
import inspect
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from alkit import _seam
from alkit._seam import ClosureResult, _AutomaticOptimization
from alkit.lightning import pl
from alkit.loops.loop import Loop, _LoopCore
from alkit.loops.optimization._checks import raise_if_generator
from alkit.loops.progress import OptimizationProgress
from alkit.loops.utilities import build_training_step_kwargs

__all__ = ["ClosureResult", "OptimizerLoop"]

_OUTPUTS_TYPE = dict[int, dict[str, Any]]


class _CheckedClosureResult(ClosureResult):
    @classmethod
    def from_training_step_output(cls, training_step_output: Any, normalize: int = 1) -> ClosureResult:
        raise_if_generator(training_step_output, "the default OptimizerLoop")
        return super().from_training_step_output(training_step_output, normalize)


class _PositionedOptimizationProgress(OptimizationProgress):
    """Lightning's optimization progress plus 1.x's ``optimizer_position``: the index, among the batch's active
    optimizers, of the optimizer that steps next.

    The position is not a field of the tracker's state (checkpoints keep Lightning 2's layout); the loop writes it
    to its own state when a checkpoint falls between two optimizers' steps.
    """

    optimizer_position: int = 0

    def reset(self) -> None:
        super().reset()
        self.optimizer_position = 0

    def reset_on_run(self) -> None:
        super().reset_on_run()
        self.optimizer_position = 0

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.optimizer_position = state_dict.get("optimizer_position", 0)  # a 1.x-layout entry, if any


@functools.lru_cache(maxsize=64)
def _legacy_parameters(hook: Callable) -> frozenset[str] | None:
    """For a 1.x-style override of a hook (one with an ``optimizer_idx`` parameter): the names it accepts as
    keywords (``"**"`` for ``**kwargs``). ``None`` for Lightning 2's signature."""
    if not pl.utilities.signature_utils.is_param_in_hook_signature(hook, "optimizer_idx", explicit=True):
        return None
    parameters = inspect.signature(hook).parameters.values()
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        names.add("**")
    return frozenset(names)


def _hook(module: pl.LightningModule, name: str) -> Callable:
    """The function behind ``module.<name>`` (the class's, or one assigned to the instance)."""
    hook = getattr(module, name)
    return getattr(hook, "__func__", hook)


class OptimizerLoop(_AutomaticOptimization, _LoopCore):
    """Steps the active optimizers in turn for the current batch (Lightning 1.x's ``OptimizerLoop``).

    ``run(optimizers, kwargs)`` takes the ``(optimizer_idx, optimizer)`` pairs to step and ``training_step``'s
    arguments, and returns ``{optimizer_idx: outputs}`` (``outputs`` such as ``{"loss": ...}``) for each optimizer
    whose step returned a loss.
    """

    output_result_cls = _CheckedClosureResult

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self.optim_progress: _PositionedOptimizationProgress = _PositionedOptimizationProgress()
        self._outputs: _OUTPUTS_TYPE = {}
        self._optimizers: tuple[Optimizer, ...] = ()
        self._indices: tuple[int, ...] = ()
        self._hiddens: Any = None  # 1.x's truncated-BPTT state; Lightning 2 has no truncated BPTT

    @property
    def optimizer_idx(self) -> int:
        """The index (in ``trainer.optimizers``) of the optimizer that steps now."""
        return self._indices[self.optim_progress.optimizer_position]

    @property
    def done(self) -> bool:
        """Whether every active optimizer of the batch has stepped."""
        return self.optim_progress.optimizer_position >= len(self._indices)

    def run(self, optimizers: list[tuple[int, Optimizer]], kwargs: OrderedDict) -> _OUTPUTS_TYPE:  # type: ignore[override]
        """Optimize the batch described by ``kwargs`` with each of ``optimizers`` (the :class:`Loop` contract)."""
        return Loop.run(self, optimizers, kwargs)

    def reset(self) -> None:
        if not self.restarting:
            self.optim_progress.optimizer_position = 0
        else:
            # reloaded from a checkpoint: keep the position, the batch resumes with the optimizer that had not stepped
            self.optim_progress.reset_on_restart()
        self._outputs = {}

    def on_run_start(self, optimizers: list[tuple[int, Optimizer]], kwargs: OrderedDict) -> None:  # type: ignore[override]
        self._indices, self._optimizers = tuple(zip(*optimizers)) if optimizers else ((), ())  # type: ignore[assignment]
        if self.done:
            self.optim_progress.optimizer_position = 0

    def advance(self, optimizers: list[tuple[int, Optimizer]], kwargs: OrderedDict) -> None:  # type: ignore[override]
        position = self.optim_progress.optimizer_position
        optimizer_idx = self._indices[position]
        kwargs = self._build_kwargs(kwargs, optimizer_idx, self._hiddens)
        outputs = self._run_optimization(kwargs, self._optimizers[position])
        if outputs:  # an optimizer whose training_step returned None has no entry, as in 1.x
            self._outputs[optimizer_idx] = outputs
        self.optim_progress.optimizer_position = position + 1

    def on_run_end(self) -> _OUTPUTS_TYPE:
        outputs, self._outputs = self._outputs, {}  # a fresh dict for the next batch
        self._indices, self._optimizers = (), ()
        return outputs

    # ------------------------------------------------------------------------------------------------------------
    # checkpoints: the position only when a checkpoint falls between two optimizers' steps of a batch
    # ------------------------------------------------------------------------------------------------------------
    def on_save_checkpoint(self) -> dict:
        state = super().on_save_checkpoint()
        position = self.optim_progress.optimizer_position
        if 0 < position < len(self._indices):
            state["optimizer_position"] = position
        return state

    def on_load_checkpoint(self, state_dict: dict) -> None:
        super().on_load_checkpoint(state_dict)
        self.optim_progress.optimizer_position = state_dict.get("optimizer_position", 0)

    # ------------------------------------------------------------------------------------------------------------
    # one optimizer's step
    # ------------------------------------------------------------------------------------------------------------
    def _build_kwargs(self, kwargs: OrderedDict, opt_idx: int, hiddens: Any = None) -> OrderedDict:
        """``training_step``'s arguments for optimizer ``opt_idx`` (adds ``optimizer_idx`` with several)."""
        trainer = self.trainer
        return build_training_step_kwargs(kwargs, trainer.lightning_module, trainer.optimizers, opt_idx, hiddens)

    def _run_optimization(self, kwargs: OrderedDict, optimizer: Optimizer) -> dict[str, Any]:
        """Closure (training step + zero_grad + backward) and, unless accumulating, the optimizer step.

        With several optimizers, only ``optimizer``'s parameters require grad meanwhile (toggling, as in 1.x).
        Returns the step's outputs (``{}`` when ``training_step`` returned ``None``).
        """
        toggle = len(self.trainer.optimizers) > 1
        if toggle:
            self._toggle(optimizer)
        try:
            return _AutomaticOptimization.run(self, optimizer, self._batch_idx(kwargs), kwargs)
        finally:
            if toggle:
                self._untoggle(optimizer)

    def _batch_idx(self, kwargs: Mapping) -> int:
        batch_idx = getattr(self.parent, "batch_idx", None)  # set by the TrainingBatchLoop running this loop
        if batch_idx is None:
            batch_idx = kwargs.get("batch_idx", 0)
        return batch_idx

    def _current_optimizer_idx(self) -> int:
        return self.optimizer_idx if not self.done else 0

    def _toggle(self, optimizer: Optimizer) -> None:
        module = self.trainer.lightning_module
        if _legacy_parameters(_hook(module, "toggle_optimizer")) is not None:
            module.toggle_optimizer(optimizer, self.optimizer_idx)  # type: ignore[call-arg]
        else:
            module.toggle_optimizer(optimizer)

    def _untoggle(self, optimizer: Optimizer) -> None:
        module = self.trainer.lightning_module
        if _legacy_parameters(_hook(module, "untoggle_optimizer")) is not None:
            module.untoggle_optimizer(self.optimizer_idx)  # type: ignore[arg-type]
        else:
            module.untoggle_optimizer(optimizer)

    def _make_closure(self, kwargs: OrderedDict, optimizer: Optimizer, batch_idx: int | None = None) -> Any:
        """The closure for ``optimizer`` (1.x's ``_make_closure(kwargs, optimizer)`` form works too)."""
        if batch_idx is None:
            batch_idx = self._batch_idx(kwargs)
        return super()._make_closure(kwargs, optimizer, batch_idx)

    def _make_backward_fn(self, optimizer: Optimizer) -> Callable[[Tensor], None] | None:
        backward_fn = super()._make_backward_fn(optimizer)
        if backward_fn is None or len(self.trainer.optimizers) < 2:
            return backward_fn
        optimizer_idx = self._current_optimizer_idx()

        def checked_backward(loss: Tensor) -> None:
            # without a graph autograd would only say "element 0 of tensors does not require grad"
            if not loss.requires_grad:
                raise RuntimeError(self._no_graph_message(optimizer_idx))
            backward_fn(loss)

        return checked_backward

    def _no_graph_message(self, optimizer_idx: int) -> str:
        return (
            f"The loss for optimizer_idx={optimizer_idx} does not require grad, so it cannot be back-propagated. With"
            " several optimizers, each optimizer's loss is computed while only that optimizer's parameters require"
            f" grad (optimizer toggling, as in Lightning 1.x): the loss `training_step` returns for"
            f" optimizer_idx={optimizer_idx} must be computed from that optimizer's parameters, in the same call."
        )

    def _optimizer_step(self, batch_idx: int, train_step_and_backward_closure: Callable[[], Tensor | None]) -> None:
        """Call ``optimizer_step`` with the current optimizer (Lightning 2 always steps the first one).

        A 1.x-style override ``optimizer_step(epoch, batch_idx, optimizer, optimizer_idx, optimizer_closure, on_tpu,
        using_lbfgs)`` receives the optimizer's index (and ``on_tpu``/``using_lbfgs`` if it takes them).
        """
        trainer = self.trainer
        optimizer_idx = self.optimizer_idx
        legacy = _legacy_parameters(_hook(trainer.lightning_module, "optimizer_step"))
        if optimizer_idx == 0 and legacy is None:
            return super()._optimizer_step(batch_idx, train_step_and_backward_closure)  # Lightning's own
        optimizer = _seam.lightning_optimizer(trainer, optimizer_idx)
        args: tuple = (trainer.current_epoch, batch_idx, optimizer, train_step_and_backward_closure)
        kwargs: dict[str, Any] = {}
        if legacy is not None:
            args = (*args[:3], optimizer_idx, train_step_and_backward_closure)
            extra = {
                "on_tpu": isinstance(trainer.accelerator, pl.accelerators.XLAAccelerator),
                "using_lbfgs": isinstance(trainer.optimizers[optimizer_idx], torch.optim.LBFGS),
            }
            kwargs = {name: value for name, value in extra.items() if name in legacy or "**" in legacy}
        should_accumulate = _seam.should_accumulate(trainer)
        if not should_accumulate:
            self.optim_progress.optimizer.step.increment_ready()
        _seam.call_module_hook(trainer, "optimizer_step", *args, **kwargs)
        if not should_accumulate:
            self.optim_progress.optimizer.step.increment_completed()
        return None

    def _optimizer_zero_grad(self, batch_idx: int, optimizer: Optimizer) -> None:
        """``optimizer_zero_grad``; a 1.x-style override (``..., optimizer, optimizer_idx)``) gets the index."""
        trainer = self.trainer
        if _legacy_parameters(_hook(trainer.lightning_module, "optimizer_zero_grad")) is None:
            return super()._optimizer_zero_grad(batch_idx, optimizer)
        idx = self._current_optimizer_idx()
        _seam.call_module_hook(trainer, "optimizer_zero_grad", trainer.current_epoch, batch_idx, optimizer, idx)
        self.optim_progress.optimizer.zero_grad.increment_completed()
        return None
