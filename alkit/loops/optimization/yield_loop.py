"""``YieldLoop``: a ``training_step`` written as a generator, one yielded loss per optimizer.

::

    generator = training_step(batch, batch_idx)      # called once per batch
    for optimizer in optimizers:
        loss = next(generator)                       # inside the optimizer's closure
        zero_grad(); backward(loss); optimizer.step()

A GAN computes the generator's output once per batch and reuses it for both losses, instead of once per optimizer
as with ``optimizer_idx``. Connect it with
``trainer.fit_loop.epoch_loop.batch_loop.connect(optimizer_loop=YieldLoop())``.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable, Generator
from typing import Any

from alkit import _seam
from alkit._seam import ClosureResult
from alkit.loops.optimization.optimizer_loop import OptimizerLoop

__all__ = ["YieldLoop"]


class YieldLoop(OptimizerLoop):
    """Optimizes with the losses a generator ``training_step`` yields, exactly one per optimizer, in order."""

    output_result_cls = ClosureResult  # the yielded values are losses, never generators

    def __init__(self) -> None:
        super().__init__()
        self._generator: Generator[Any, None, None] | None = None
        self._num_yielded = 0

    def on_run_start(self, kwargs: OrderedDict, batch_idx: int) -> None:
        lightning_module = self.trainer.lightning_module
        if not inspect.isgeneratorfunction(lightning_module.training_step):
            raise TypeError(
                f"YieldLoop needs a `training_step` that yields one loss per optimizer, but"
                f" `{type(lightning_module).__name__}.training_step` does not yield. Use the default OptimizerLoop"
                " for a step that returns its loss."
            )
        self._generator = _seam.call_strategy_hook(self.trainer, "training_step", *kwargs.values())
        self._num_yielded = 0

    def _step_kwargs(self, kwargs: OrderedDict) -> OrderedDict:
        return kwargs  # the generator was created once in on_run_start

    def _make_step_fn(self, kwargs: OrderedDict) -> Callable[[], ClosureResult]:
        return self._next_loss

    def _next_loss(self) -> ClosureResult:
        assert self._generator is not None
        try:
            output = next(self._generator)
        except StopIteration:
            raise RuntimeError(
                f"`training_step` yielded {self._num_yielded} loss(es) but `configure_optimizers` returned"
                f" {self._num_optimizers} optimizer(s); YieldLoop needs exactly one yield per optimizer, in the"
                " order of the optimizers."
            ) from None
        self._num_yielded += 1
        self.trainer.strategy.post_training_step()
        return self.output_result_cls.from_training_step_output(output, self.trainer.accumulate_grad_batches)

    def on_run_end(self) -> Any:
        generator, self._generator = self._generator, None
        try:
            next(generator)  # type: ignore[arg-type]
        except StopIteration:
            pass
        else:
            raise RuntimeError(
                f"`training_step` yielded more losses than the {self._num_optimizers} optimizer(s) returned by"
                " `configure_optimizers`; YieldLoop needs exactly one yield per optimizer."
            )
        return super().on_run_end()
