"""Progress trackers: how far a loop got, in counters that survive a checkpoint.

These are Lightning's own trackers under public names (Lightning 2 made them private). Each tracker counts
``ready → started → processed → completed`` for the current run and in total, which is what lets an interrupted
loop tell, on reload, whether it stopped before, during or after an iteration.
"""

from pytorch_lightning.loops.progress import (
    _BaseProgress as BaseProgress,
)
from pytorch_lightning.loops.progress import (
    _BatchProgress as BatchProgress,
)
from pytorch_lightning.loops.progress import (
    _OptimizationProgress as OptimizationProgress,
)
from pytorch_lightning.loops.progress import (
    _OptimizerProgress as OptimizerProgress,
)
from pytorch_lightning.loops.progress import (
    _ProcessedTracker as ProcessedTracker,
)
from pytorch_lightning.loops.progress import (
    _Progress as Progress,
)
from pytorch_lightning.loops.progress import (
    _ReadyCompletedTracker as ReadyCompletedTracker,
)
from pytorch_lightning.loops.progress import (
    _SchedulerProgress as SchedulerProgress,
)
from pytorch_lightning.loops.progress import (
    _StartedTracker as StartedTracker,
)

__all__ = [
    "BaseProgress",
    "BatchProgress",
    "OptimizationProgress",
    "OptimizerProgress",
    "ProcessedTracker",
    "Progress",
    "ReadyCompletedTracker",
    "SchedulerProgress",
    "StartedTracker",
]
