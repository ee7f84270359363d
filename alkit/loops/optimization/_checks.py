"""Clear errors for training-step shapes that need a specific optimization loop."""

from __future__ import annotations

import inspect
from typing import Any


def raise_if_generator(output: Any, loop_name: str) -> None:
    """A generator from ``training_step`` means a YieldLoop-style step; without one it would be silently wrong."""
    if inspect.isgenerator(output):
        raise TypeError(
            f"`training_step` returned a generator, which {loop_name} cannot optimize. A `training_step` that yields"
            " one loss per optimizer needs `alkit.loops.YieldLoop`: connect it with"
            " `trainer.fit_loop.epoch_loop.batch_loop.connect(optimizer_loop=YieldLoop())`; otherwise return a loss"
            " tensor, a dict with a 'loss' key, or None."
        )
