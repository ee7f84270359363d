"""``ManualOptimization``: a batch whose ``training_step`` does its own optimization.

::

    output = training_step(batch, batch_idx)   # calls self.optimizers(), manual_backward(), opt.step()

One iteration per run; the loop wires progress tracking into ``LightningOptimizer.step`` so ``global_step`` counts
the optimizer steps the user takes. This is Lightning 2's ``_ManualOptimization`` with the public loop contract.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from alkit._seam import ManualResult, _ManualOptimization
from alkit.loops.loop import Loop, _LoopCore
from alkit.loops.optimization._checks import raise_if_generator

__all__ = ["ManualOptimization"]


class _CheckedManualResult(ManualResult):
    @classmethod
    def from_training_step_output(cls, training_step_output: Any) -> ManualResult:
        raise_if_generator(training_step_output, "ManualOptimization")
        return super().from_training_step_output(training_step_output)


class ManualOptimization(_ManualOptimization, _LoopCore):
    """Runs ``training_step`` once for the batch; the step itself calls the optimizers."""

    output_result_cls = _CheckedManualResult

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self._ran = False

    def run(self, kwargs: OrderedDict) -> Any:  # type: ignore[override]
        return Loop.run(self, kwargs)

    @property
    def done(self) -> bool:
        return self._ran

    def reset(self) -> None:
        self._ran = False

    def on_run_start(self, kwargs: OrderedDict | None = None) -> None:  # type: ignore[override]
        _ManualOptimization.on_run_start(self)

    def advance(self, kwargs: OrderedDict) -> None:
        _ManualOptimization.advance(self, kwargs)
        self._ran = True
