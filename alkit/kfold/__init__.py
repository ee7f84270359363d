"""K-fold cross-validation on the alkit loop API.

Public names:

- :func:`kfold_fit`: all of it in one call, returning a :class:`KFoldResult` (per-fold metrics as plain data);
- :class:`KFoldLoop`: the loop standing in for the FitLoop (``loop.connect(trainer.fit_loop)``);
- :class:`KFoldDataModule`: any datamodule → folds from a scikit-learn splitter; :class:`BaseKFoldDataModule`: the
  two-method protocol the loop uses (``setup_folds``/``setup_fold_index``);
- :class:`EnsembleVotingModel`: soft vote of the fold checkpoints; :func:`make_folds`: the checked fold computation,
  into a read-only :class:`Folds` shared by the datamodule, the loop and the result;
- :func:`compare`: two results on the same folds, with the corrected (repeated) k-fold t-test.
"""

from alkit.kfold.api import kfold_fit
from alkit.kfold.compare import KFoldComparison, compare
from alkit.kfold.datamodule import BaseKFoldDataModule, KFoldDataModule
from alkit.kfold.ensemble import EnsembleVotingModel
from alkit.kfold.folds import Fold, Folds
from alkit.kfold.loop import KFoldLoop
from alkit.kfold.result import KFoldResult
from alkit.kfold.splits import make_folds

__all__ = [
    "BaseKFoldDataModule",
    "EnsembleVotingModel",
    "Fold",
    "Folds",
    "KFoldComparison",
    "KFoldDataModule",
    "KFoldLoop",
    "KFoldResult",
    "compare",
    "kfold_fit",
    "make_folds",
]
