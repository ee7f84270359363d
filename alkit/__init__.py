"""alkit: active learning and k-fold cross-validation on custom PyTorch Lightning loops.

Lightning 2 removed the public loop API (``Loop``, ``FitLoop`` → ``TrainingEpochLoop`` → ...) that research code
used to swap the training procedure inside the ``Trainer``. alkit brings that API back on the current stack
(:mod:`alkit.loops`, :class:`alkit.Trainer`) and builds k-fold cross-validation (:mod:`alkit.kfold`) and
uncertainty-based active learning on BaaL (:mod:`alkit.active`) on top of it.
"""

from alkit.trainer import Trainer

__version__ = "0.1.0"

__all__ = ["Trainer", "__version__"]
