"""K-fold cross-validation on the alkit loop API.

Public names: :class:`KFoldDataModule` (any datamodule → folds from a scikit-learn splitter),
:class:`BaseKFoldDataModule` (the two-method protocol the loop uses), :class:`KFoldResult` (per-fold metrics as
plain data), :class:`EnsembleVotingModel` (soft vote of the fold checkpoints) and :func:`make_folds`.
"""

from alkit.kfold.datamodule import BaseKFoldDataModule, KFoldDataModule
from alkit.kfold.ensemble import EnsembleVotingModel
from alkit.kfold.result import KFoldResult
from alkit.kfold.splits import Fold, make_folds

__all__ = ["BaseKFoldDataModule", "EnsembleVotingModel", "Fold", "KFoldDataModule", "KFoldResult", "make_folds"]
