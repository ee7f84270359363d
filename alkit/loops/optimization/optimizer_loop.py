"""``OptimizerLoop``: automatic optimization of one batch, one optimizer after the other.

::

    for optimizer_idx, optimizer in enumerate(optimizers):
        loss = training_step(batch, batch_idx[, optimizer_idx])   # inside the optimizer's closure
        zero_grad(); backward(loss); optimizer.step()             # or only accumulate

Lightning 2 allows a single optimizer under automatic optimization. This loop restores 1.x's multiple-optimizer
support: each optimizer is stepped in turn (its parameters toggled on, the others' off), and ``training_step``
receives ``optimizer_idx`` when its signature asks for it. With one optimizer it behaves exactly like Lightning 2's
``_AutomaticOptimization`` (same closure, hooks and progress counters).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.optim import Optimizer

from alkit import _seam
from alkit._seam import ClosureResult, _AutomaticOptimization
from alkit.lightning import pl
from alkit.loops.loop import Loop
from alkit.loops.optimization._checks import raise_if_generator

__all__ = ["OptimizerLoop"]


@functools.lru_cache(maxsize=64)
def _takes_optimizer_idx(training_step: Callable) -> bool:
    # signature inspection costs more than a tiny model's step: look it up once per training_step function
    return pl.utilities.signature_utils.is_param_in_hook_signature(training_step, "optimizer_idx", explicit=True)


class _CheckedClosureResult(ClosureResult):
    @classmethod
    def from_training_step_output(cls, training_step_output: Any, normalize: int = 1) -> ClosureResult:
        raise_if_generator(training_step_output, "the default OptimizerLoop")
        return super().from_training_step_output(training_step_output, normalize)


class OptimizerLoop(_AutomaticOptimization, Loop):
    """Steps every optimizer returned by ``configure_optimizers`` in turn for the current batch.

    ``run(kwargs, batch_idx)`` returns the step's outputs (a dict such as ``{"loss": ...}``) for a single
    optimizer, or ``{optimizer_idx: outputs}`` for several.
    """

    output_result_cls = _CheckedClosureResult

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self.optimizer_idx = 0
        self._num_optimizers = 0
        self._outputs: dict[int, dict[str, Any]] = {}

    def run(self, kwargs: OrderedDict, batch_idx: int) -> Any:  # type: ignore[override]
        """Optimize the batch described by ``kwargs`` with every optimizer (the :class:`Loop` contract)."""
        return Loop.run(self, kwargs, batch_idx)

    @property
    def done(self) -> bool:
        return self.optimizer_idx >= self._num_optimizers

    def reset(self) -> None:
        self.optimizer_idx = 0
        self._num_optimizers = len(self.trainer.optimizers)

    def advance(self, kwargs: OrderedDict, batch_idx: int) -> None:
        optimizer = self.trainer.optimizers[self.optimizer_idx]
        lightning_module = self.trainer.lightning_module
        several = self._num_optimizers > 1
        if several:
            # only this optimizer's parameters receive gradients from its loss, as in Lightning 1.x
            lightning_module.toggle_optimizer(optimizer)
        try:
            self._outputs[self.optimizer_idx] = self._optimize(optimizer, batch_idx, self._step_kwargs(kwargs))
        finally:
            if several:
                lightning_module.untoggle_optimizer(optimizer)

    def on_advance_end(self) -> None:
        self.optimizer_idx += 1

    def on_run_end(self) -> Any:
        outputs, self._outputs = self._outputs, {}  # a fresh dict for the next batch
        if self._num_optimizers == 1:
            return outputs.get(0, {})
        return outputs

    # ------------------------------------------------------------------------------------------------------------
    def _optimize(self, optimizer: Optimizer, batch_idx: int, kwargs: OrderedDict) -> dict[str, Any]:
        """Closure (training step + zero_grad + backward) and, unless accumulating, the optimizer step."""
        return _AutomaticOptimization.run(self, optimizer, batch_idx, kwargs)

    def _step_kwargs(self, kwargs: OrderedDict) -> OrderedDict:
        """Add ``optimizer_idx`` for a ``training_step(batch, batch_idx, optimizer_idx)`` signature."""
        if not _takes_optimizer_idx(type(self.trainer.lightning_module).training_step):
            return kwargs
        if self._num_optimizers < 2:
            raise ValueError(
                "`training_step` takes `optimizer_idx`, but `configure_optimizers` returned a single optimizer."
                " Remove the `optimizer_idx` argument, or return one optimizer per optimizer_idx."
            )
        kwargs = OrderedDict(kwargs)
        kwargs["optimizer_idx"] = self.optimizer_idx
        return kwargs

    def _optimizer_step(self, batch_idx: int, train_step_and_backward_closure: Callable[[], Tensor | None]) -> None:
        """Call the ``optimizer_step`` hook with the current optimizer (Lightning 2 always used the first)."""
        trainer = self.trainer
        optimizer = _seam.lightning_optimizer(trainer, self.optimizer_idx)
        should_accumulate = trainer.fit_loop._should_accumulate()
        if not should_accumulate:
            self.optim_progress.optimizer.step.increment_ready()
        _seam.call_module_hook(
            trainer, "optimizer_step", trainer.current_epoch, batch_idx, optimizer, train_step_and_backward_closure
        )
        if not should_accumulate:
            self.optim_progress.optimizer.step.increment_completed()
