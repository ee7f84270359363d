"""The Lightning 1.x loop API on Lightning 2.

Default nesting (as built by :class:`alkit.Trainer`)::

    FitLoop.epoch_loop: TrainingEpochLoop
        .batch_loop: TrainingBatchLoop
            .optimizer_loop: OptimizerLoop          (or YieldLoop)
            .manual_loop: ManualOptimization
        .val_loop: EvaluationLoop
            .epoch_loop: EvaluationEpochLoop
    EvaluationLoop.epoch_loop: EvaluationEpochLoop  (validate_loop, test_loop)
    PredictionLoop.epoch_loop: PredictionEpochLoop  (predict_loop)

Research loops that run the FitLoop several times derive from :class:`FitWrapperLoop`.
"""

from alkit.loops.evaluation_loop import EvaluationEpochLoop, EvaluationLoop
from alkit.loops.fit_loop import FitLoop
from alkit.loops.fit_wrapper import FitWrapperLoop
from alkit.loops.loop import Loop
from alkit.loops.optimization.manual import ManualOptimization
from alkit.loops.optimization.optimizer_loop import OptimizerLoop
from alkit.loops.optimization.yield_loop import YieldLoop
from alkit.loops.prediction_loop import PredictionEpochLoop, PredictionLoop
from alkit.loops.progress import (
    BaseProgress,
    BatchProgress,
    DataLoaderProgress,
    OptimizationProgress,
    OptimizerProgress,
    ProcessedTracker,
    Progress,
    ReadyCompletedTracker,
    SchedulerProgress,
    StartedTracker,
)
from alkit.loops.training_batch_loop import TrainingBatchLoop
from alkit.loops.training_epoch_loop import TrainingEpochLoop

__all__ = [
    "BaseProgress",
    "BatchProgress",
    "DataLoaderProgress",
    "EvaluationEpochLoop",
    "EvaluationLoop",
    "FitLoop",
    "FitWrapperLoop",
    "Loop",
    "ManualOptimization",
    "OptimizationProgress",
    "OptimizerLoop",
    "OptimizerProgress",
    "PredictionEpochLoop",
    "PredictionLoop",
    "ProcessedTracker",
    "Progress",
    "ReadyCompletedTracker",
    "SchedulerProgress",
    "StartedTracker",
    "TrainingBatchLoop",
    "TrainingEpochLoop",
    "YieldLoop",
]
