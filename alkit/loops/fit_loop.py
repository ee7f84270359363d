"""``FitLoop``: the top-level training loop, counting epochs.

::

    for epoch in range(max_epochs):          # FitLoop
        for batch in train_dataloader:       # TrainingEpochLoop
            ...                              # TrainingBatchLoop → OptimizerLoop | ManualOptimization
            if time_to_validate:
                for val_batch in val_dataloader:  # EvaluationLoop → EvaluationEpochLoop
                    ...

All bookkeeping (hooks, progress, restart stages, dataloader set-up) is Lightning 2's own ``_FitLoop``; this class
adds the public contract of :class:`~alkit.loops.Loop` so it can be subclassed, replaced and run like in 1.x.
"""

from __future__ import annotations

from typing import Any

from alkit._seam import _FitLoop
from alkit.loops.loop import Loop, _LoopCore
from alkit.loops.training_epoch_loop import TrainingEpochLoop

__all__ = ["FitLoop"]


class FitLoop(_FitLoop, _LoopCore):
    """Iterates over epochs; its ``epoch_loop`` (a :class:`TrainingEpochLoop`) runs one epoch per ``advance``.

    Args:
        min_epochs: train at least this many epochs (early stopping waits for it); ``None``: the Trainer's.
        max_epochs: stop after this many epochs; ``-1`` means no limit; ``None``: the Trainer's.

    A limit left out (or ``None``) is the Trainer's ``min_epochs``/``max_epochs``, taken when the loop is attached
    (``trainer.fit_loop = FitLoop()`` follows ``Trainer(max_epochs=...)``); a limit given here wins.
    """

    def __init__(self, min_epochs: int | None = None, max_epochs: int | None = None) -> None:
        super().__init__(None, min_epochs=min_epochs, max_epochs=max_epochs)  # type: ignore[arg-type]
        self.epoch_loop = TrainingEpochLoop()

    def run(self) -> Any:
        """Set up the training data, then run the epochs (the :class:`~alkit.loops.Loop` contract)."""
        self.setup_data()
        return Loop.run(self)
