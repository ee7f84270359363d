"""Progress trackers: how far a loop got, in counters that survive a checkpoint.

These are Lightning's own trackers under public names (Lightning 2 made them private). Each tracker counts
``ready → started → processed → completed`` for the current run and in total, which is what lets an interrupted
loop tell, on reload, whether it stopped before, during or after an iteration.
"""

from alkit._seam import _BaseProgress as BaseProgress
from alkit._seam import _BatchProgress as BatchProgress
from alkit._seam import _OptimizationProgress as OptimizationProgress
from alkit._seam import _OptimizerProgress as OptimizerProgress
from alkit._seam import _ProcessedTracker as ProcessedTracker
from alkit._seam import _Progress as Progress
from alkit._seam import _ReadyCompletedTracker as ReadyCompletedTracker
from alkit._seam import _SchedulerProgress as SchedulerProgress
from alkit._seam import _StartedTracker as StartedTracker

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
