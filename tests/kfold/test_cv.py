"""cv= as in scikit-learn (an int, a splitter, an iterable of pairs), resolved once into read-only Folds."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.model_selection import KFold, RepeatedKFold, ShuffleSplit

from alkit.kfold import Folds, KFoldDataModule, kfold_fit, make_folds
from alkit.kfold.splits import resolve_cv
from tests.kfold._helpers import QUIET, BlobData, BlobDataWithTest, Classifier


def _folds(**kwargs):
    datamodule = KFoldDataModule(BlobData(n=40), **kwargs)
    datamodule.setup("fit")  # computes the folds from its own cv and selects fold 0
    return datamodule


def test_cv_int_is_k():
    assert _folds(cv=4).folds == _folds(k=4).folds
    assert len(_folds(cv=4).folds) == 4
    assert len(_folds().folds) == 5  # neither: 5 folds, as scikit-learn


def test_an_iterable_of_pairs_gives_the_splitters_folds():
    pairs = list(KFold(4).split(np.zeros(40)))
    from_pairs, from_splitter = _folds(cv=pairs).folds, _folds(cv=KFold(4)).folds
    assert from_pairs.fingerprint == from_splitter.fingerprint
    assert len(_folds(cv=iter(pairs)).folds) == 4  # a one-shot iterator works too: it is read once
    assert len(_folds(cv=ShuffleSplit(3, test_size=0.25)).folds) == 3


class _NamedLikeAKFold:
    """A splitter whose class name and fields say nothing about its number of folds: only get_n_splits does."""

    n_splits = 99

    def split(self, X, y=None, groups=None):
        n = len(X)
        for start in (0, n // 2):
            held_out = np.arange(start, start + n // 2)
            yield np.setdiff1d(np.arange(n), held_out), held_out

    def get_n_splits(self, X=None, y=None, groups=None):
        return 2


def test_the_fold_count_comes_from_get_n_splits():
    assert len(make_folds(10, cv=_NamedLikeAKFold())) == 2
    with pytest.raises(ValueError, match=r"k=3 does not match splitter=.*_NamedLikeAKFold.*which produces 2 folds"):
        make_folds(10, 3, cv=_NamedLikeAKFold())

    class Liar(_NamedLikeAKFold):
        def get_n_splits(self, X=None, y=None, groups=None):
            return 3

    with pytest.raises(ValueError, match=r"produced 2 folds but its get_n_splits\(\) says 3"):
        make_folds(10, cv=Liar())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cv": 5, "k": 3}, ValueError, r"k=3 and cv=5 disagree"),
        ({"cv": KFold(4), "k": 3}, ValueError, r"k=3 does not match splitter=KFold.*which produces 4 folds"),
        ({"cv": 3, "splitter": KFold(3)}, ValueError, r"cv=3 and splitter=KFold.* were both given"),
        ({"cv": "kfold"}, TypeError, r"cv='kfold' is invalid: expected an int >= 2 .*splitter.*pairs"),
        ({"cv": 1}, ValueError, r"cv=1 is invalid: k-fold cross-validation needs k >= 2"),
        ({"cv": 2.5}, TypeError, r"cv=2.5 is invalid"),
        ({"cv": [(np.arange(5), np.arange(5, 10), None)]}, ValueError, r"cv\[0\]=.* is invalid: every item"),
        ({"cv": []}, ValueError, r"cv=\[\] is invalid"),
        ({"cv": object()}, TypeError, r"cv=<object object .*> is invalid"),
    ],
)
def test_bad_cv_is_refused_before_any_training(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        resolve_cv(**kwargs) if not isinstance(kwargs.get("cv"), KFold) else make_folds(40, **kwargs)

    class Untouchable(Classifier):
        def training_step(self, batch, batch_idx):
            raise AssertionError("no training may happen for bad input")

    with pytest.raises(error, match=match):
        kfold_fit(Untouchable(), BlobDataWithTest(n=40), max_epochs=1, default_root_dir=tmp_path, **kwargs, **QUIET)


def test_folds_are_read_only_and_shared():
    folds = make_folds(20, cv=RepeatedKFold(n_splits=4, n_repeats=2, random_state=0))
    assert isinstance(folds, Folds) and len(folds) == 8 and folds.n_samples == 20
    assert folds.repeats == (0, 0, 0, 0, 1, 1, 1, 1) and folds.n_repeats == 2
    assert [len(f.val_indices) for f in folds] == [5] * 8
    with pytest.raises(ValueError, match="read-only"):
        folds[0].val_indices[0] = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        folds.n_samples = 3
    assert folds == make_folds(20, cv=RepeatedKFold(n_splits=4, n_repeats=2, random_state=0))
    assert folds != make_folds(20, cv=RepeatedKFold(n_splits=4, n_repeats=2, random_state=1))


def test_the_datamodule_takes_its_fold_count_from_its_cv_not_from_the_trainer():
    datamodule = KFoldDataModule(BlobData(n=40), cv=3)
    datamodule.trainer = SimpleNamespace(fit_loop=SimpleNamespace(num_folds=7))  # ignored: one source of truth
    datamodule.setup("fit")
    assert datamodule.num_folds == 3 and datamodule.fold_index == 0
    with pytest.raises(ValueError, match=r"num_folds=4 does not match this KFoldDataModule's cv=3"):
        datamodule.setup_folds(4)
    first = datamodule.folds
    datamodule.setup_folds(3)
    assert datamodule.folds is first  # computed once, asked again
