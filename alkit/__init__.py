"""alkit: active learning and k-fold cross-validation on custom PyTorch Lightning loops.

Lightning 2 removed the public loop API (``Loop``, ``FitLoop`` → ``TrainingEpochLoop`` → ...) that research code
used to swap the training procedure inside the ``Trainer``. alkit brings that API back on the current stack
(:mod:`alkit.loops`, :class:`alkit.Trainer`) and builds k-fold cross-validation (:mod:`alkit.kfold`,
:func:`alkit.kfold_fit`) and uncertainty-based active learning on BaaL (:mod:`alkit.active`) on top of it, with
image-classification pieces in :mod:`alkit.vision`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alkit import active, kfold, loops, vision
    from alkit.kfold import kfold_fit
    from alkit.trainer import Trainer

__version__ = "0.1.0"

__all__ = ["Trainer", "__version__", "active", "kfold", "kfold_fit", "loops", "vision"]

_SUBMODULES = {"active", "kfold", "loops", "vision"}


def __getattr__(name: str) -> Any:
    # Everything imports torch and Lightning (and scikit-learn, BaaL, torchvision): load on first use, so that
    # `import alkit` and `alkit --help` stay instant.
    if name == "Trainer":
        from alkit.trainer import Trainer

        return Trainer
    if name in _SUBMODULES:
        return importlib.import_module(f"alkit.{name}")
    if name == "kfold_fit":
        from alkit.kfold import kfold_fit

        return kfold_fit
    raise AttributeError(f"module 'alkit' has no attribute {name!r}")
