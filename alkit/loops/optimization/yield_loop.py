"""``YieldLoop``: a ``training_step`` written as a generator, one yielded loss per optimizer.

::

    generator = training_step(batch, batch_idx)      # called once per batch
    for optimizer_idx, optimizer in optimizers:
        loss = next(generator)                       # inside the optimizer's closure
        zero_grad(); backward(loss); optimizer.step()

A GAN computes the generator's output once per batch and reuses it for both losses, instead of once per optimizer
as with ``optimizer_idx``. Connect it with
``trainer.fit_loop.epoch_loop.batch_loop.connect(optimizer_loop=YieldLoop())``.

The optimizers are toggled as with the default loop (Lightning 1.x): while the loss for optimizer ``i`` is being
computed, only optimizer ``i``'s parameters require grad. The code before the first ``yield`` therefore runs while
optimizer 0 is toggled: an output shared by several losses must be computed there from optimizer 0's parameters
(the GAN generator first: ``configure_optimizers`` returns the generator's optimizer first and the step yields the
generator's loss first). Otherwise the shared output has no gradient path to the other optimizers' parameters,
and YieldLoop stops with an error that says so.

Resumed from a checkpoint written between two optimizers' steps, the batch continues with the optimizer that had
not stepped: a fresh generator is drawn up to that optimizer's loss (the earlier losses are discarded). Its code
then runs with the weights of the checkpoint, so an output computed before an earlier optimizer's step (the shared
fake images) is recomputed after it, and that one batch differs from an uninterrupted run.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable, Generator
from typing import Any

from torch.optim import Optimizer

from alkit import _seam
from alkit._seam import ClosureResult
from alkit.lightning import pl
from alkit.loops.optimization.optimizer_loop import OptimizerLoop

__all__ = ["YieldLoop"]


class YieldLoop(OptimizerLoop):
    """Optimizes with the losses a generator ``training_step`` yields: one per optimizer of ``configure_optimizers``,
    in the optimizers' order.

    With ``"frequency"`` keys only some optimizers are active on a batch; the losses of the others are drawn from
    the generator and discarded.
    """

    output_result_cls = ClosureResult  # the yielded values are losses, never generators

    def __init__(self) -> None:
        super().__init__()
        self._generator: Generator[Any, None, None] | None = None
        self._num_yielded = 0

    def on_run_start(self, optimizers: list[tuple[int, Optimizer]], kwargs: OrderedDict) -> None:  # type: ignore[override]
        super().on_run_start(optimizers, kwargs)
        lightning_module = self.trainer.lightning_module
        if not inspect.isgeneratorfunction(lightning_module.training_step):
            raise TypeError(
                f"YieldLoop needs a `training_step` that yields one loss per optimizer, but"
                f" `{type(lightning_module).__name__}.training_step` does not yield. Use the default OptimizerLoop"
                " for a step that returns its loss."
            )
        self._generator = self._get_generator(kwargs, self._indices[0] if self._indices else 0)
        self._num_yielded = 0

    def _get_generator(self, kwargs: OrderedDict, opt_idx: int = 0) -> Generator[Any, None, None]:
        """Call ``training_step`` once; it returns the generator (passed ``optimizer_idx`` if it names it)."""
        training_step = self.trainer.lightning_module.training_step
        if pl.utilities.signature_utils.is_param_in_hook_signature(training_step, "optimizer_idx", explicit=True):
            kwargs = OrderedDict(kwargs)
            kwargs["optimizer_idx"] = opt_idx
        return _seam.call_strategy_hook(self.trainer, "training_step", *kwargs.values())

    def _build_kwargs(self, kwargs: OrderedDict, opt_idx: int, hiddens: Any = None) -> OrderedDict:
        return kwargs  # the generator was created once, in on_run_start

    def _make_step_fn(self, kwargs: OrderedDict) -> Callable[[], ClosureResult]:
        optimizer_idx = self.optimizer_idx
        return lambda: self._next_loss(optimizer_idx)

    def _next_loss(self, optimizer_idx: int) -> ClosureResult:
        """The loss the generator yields for ``optimizer_idx`` (earlier yields of inactive optimizers discarded)."""
        generator = self._generator
        assert generator is not None
        if self._num_yielded > optimizer_idx:
            raise RuntimeError(
                f"The optimizer of optimizer_idx={optimizer_idx} evaluated its closure more than once (LBFGS does);"
                " YieldLoop draws each loss once from the generator and cannot recompute it. Use the default"
                " OptimizerLoop with `training_step(batch, batch_idx, optimizer_idx)` for such an optimizer."
            )
        trainer = self.trainer
        with _seam.current_hook(trainer.lightning_module, "training_step"):
            while self._num_yielded <= optimizer_idx:
                try:
                    output = next(generator)
                except StopIteration:
                    raise RuntimeError(
                        f"`training_step` yielded {self._num_yielded} loss(es) but `configure_optimizers` returned"
                        f" {len(trainer.optimizers)} optimizer(s); YieldLoop needs exactly one yield per optimizer,"
                        " in the order of the optimizers."
                    ) from None
                self._num_yielded += 1
        trainer.strategy.post_training_step()
        return self.output_result_cls.from_training_step_output(output, trainer.accumulate_grad_batches)

    def _no_graph_message(self, optimizer_idx: int) -> str:
        return (
            f"The loss `training_step` yielded for optimizer_idx={optimizer_idx} does not require grad, so it cannot be"
            " back-propagated. YieldLoop toggles the optimizers as Lightning 1.x did: while the loss for optimizer"
            " i is computed, only optimizer i's parameters require grad. The code before the first `yield` runs"
            " while optimizer 0 is toggled, so an output computed there from another optimizer's parameters (a GAN"
            " generator's images while the discriminator steps first) carries no gradient to them. Compute the"
            " shared output from optimizer 0's parameters: put the optimizer of the network that produces it first"
            " in `configure_optimizers` and yield its loss first, or compute the output after the first `yield`."
        )

    def on_run_end(self) -> Any:
        generator, self._generator = self._generator, None
        all_active = len(self._indices) == len(self.trainer.optimizers)
        if generator is not None and all_active and self._num_yielded == len(self._indices):
            with _seam.current_hook(self.trainer.lightning_module, "training_step"):
                try:
                    next(generator)  # runs the code after the last yield; there must be no further loss
                except StopIteration:
                    pass
                else:
                    raise RuntimeError(
                        f"`training_step` yielded more losses than the {len(self._indices)} optimizer(s) returned by"
                        " `configure_optimizers`; YieldLoop needs exactly one yield per optimizer."
                    )
        elif generator is not None:
            generator.close()  # inactive optimizers after the last active one (frequencies): their losses unused
        return super().on_run_end()
