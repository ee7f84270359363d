"""``TrainingBatchLoop``: the optimization of one training batch.

::

    if lightning_module.automatic_optimization:
        optimizers = get_active_optimizers(trainer.optimizers, frequencies, batch_idx)  # [(optimizer_idx, optimizer)]
        outputs = optimizer_loop.run(optimizers, kwargs)  # each optimizer in turn: step, backward, optimizer.step
    else:
        outputs = manual_loop.run(kwargs)                 # training_step does its own optimization
    return [outputs] if outputs else []

Lightning 2 removed this level; alkit restores it with Lightning 1.x's contract, so the optimization strategy of a
batch is a child loop that can be swapped (``batch_loop.connect(optimizer_loop=YieldLoop())``) and 1.x code calling
``batch_loop.run(kwargs)`` gets 1.x's outputs: a list with one entry for the batch (``{optimizer_idx: outputs}``
under automatic optimization, the step's outputs dict under manual optimization), empty when nothing was returned.
:func:`alkit.loops.utilities.prepare_outputs_training_batch_end` turns it into what ``on_train_batch_end`` receives.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from alkit.loops.loop import Loop, _LoopCore
from alkit.loops.optimization.manual import ManualOptimization
from alkit.loops.optimization.optimizer_loop import OptimizerLoop
from alkit.loops.utilities import get_active_optimizers, optimizer_frequencies

__all__ = ["TrainingBatchLoop"]


class TrainingBatchLoop(_LoopCore):
    """Runs one batch through ``optimizer_loop`` (automatic optimization) or ``manual_loop`` (manual)."""

    def __init__(self) -> None:
        super().__init__()
        self.optimizer_loop = OptimizerLoop()
        self.manual_loop = ManualOptimization()
        #: the index (within the epoch) of the batch being optimized
        self.batch_idx = 0
        self._outputs: list = []
        self._ran = False

    @property
    def done(self) -> bool:
        return self._ran

    def reset(self) -> None:
        self._outputs = []
        self._ran = False

    def run(self, kwargs: OrderedDict, batch_idx: int | None = None) -> list:  # type: ignore[override]
        """Optimize one batch; ``kwargs`` are ``training_step``'s arguments (1.x: ``batch_loop.run(kwargs)``).

        ``batch_idx`` defaults to ``kwargs["batch_idx"]``, else the epoch loop's current batch index. The hooks
        (``on_run_start``, ``advance``) receive ``kwargs`` only, as in 1.x; the index is ``self.batch_idx``.
        """
        if batch_idx is None:
            batch_idx = kwargs.get("batch_idx")
            if batch_idx is None:
                batch_idx = getattr(self.parent, "batch_idx", 0)
        self.batch_idx = batch_idx
        return Loop.run(self, kwargs)

    def on_run_start(self, kwargs: OrderedDict) -> None:  # type: ignore[override]
        """Called with the batch's ``training_step`` arguments before it is optimized."""

    def advance(self, kwargs: OrderedDict) -> None:  # type: ignore[override]
        trainer = self.trainer
        if trainer.lightning_module.automatic_optimization:
            optimizers = trainer.optimizers
            active = get_active_optimizers(optimizers, optimizer_frequencies(optimizers), self.batch_idx)
            outputs: Any = self.optimizer_loop.run(active, kwargs)
        else:
            outputs = self.manual_loop.run(kwargs)
        if outputs:
            self._outputs.append(outputs)
        self._ran = True

    def on_run_end(self) -> list:
        outputs, self._outputs = self._outputs, []  # free the batch outputs
        return outputs
