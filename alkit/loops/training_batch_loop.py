"""``TrainingBatchLoop``: the optimization of one training batch.

::

    if lightning_module.automatic_optimization:
        output = optimizer_loop.run(kwargs, batch_idx)   # each optimizer in turn: step, backward, optimizer.step
    else:
        output = manual_loop.run(kwargs)                 # training_step does its own optimization

Lightning 2 removed this level; alkit restores it so the optimization strategy of a batch is a child loop that can
be swapped (``batch_loop.connect(optimizer_loop=YieldLoop())``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from alkit.loops.loop import Loop
from alkit.loops.optimization.manual import ManualOptimization
from alkit.loops.optimization.optimizer_loop import OptimizerLoop

__all__ = ["TrainingBatchLoop"]


class TrainingBatchLoop(Loop):
    """Runs one batch through ``optimizer_loop`` (automatic optimization) or ``manual_loop`` (manual)."""

    def __init__(self) -> None:
        super().__init__()
        self.optimizer_loop = OptimizerLoop()
        self.manual_loop = ManualOptimization()
        self._output: Any = None
        self._ran = False

    @property
    def done(self) -> bool:
        return self._ran

    def reset(self) -> None:
        self._ran = False  # `_output` was cleared by the previous on_run_end

    def run(self, kwargs: OrderedDict, batch_idx: int | None = None) -> Any:  # type: ignore[override]
        """Optimize one batch; ``kwargs`` are ``training_step``'s arguments (1.x: ``batch_loop.run(kwargs)``).

        ``batch_idx`` defaults to ``kwargs["batch_idx"]``, else the epoch loop's current batch index.
        """
        return Loop.run(self, kwargs, batch_idx)

    def advance(self, kwargs: OrderedDict, batch_idx: int | None = None) -> None:
        if batch_idx is None:
            batch_idx = kwargs.get("batch_idx", self.parent.batch_idx if self.parent is not None else 0)
        if self.trainer.lightning_module.automatic_optimization:
            self._output = self.optimizer_loop.run(kwargs, batch_idx)
        else:
            self._output = self.manual_loop.run(kwargs)
        self._ran = True

    def on_run_end(self) -> Any:
        output, self._output = self._output, None  # free the batch outputs
        return output
