"""Every fold a splitter yields is checked before anything trains: disjoint, within range, non-empty."""

import numpy as np
import pytest

from alkit.kfold import kfold_fit
from alkit.kfold.splits import make_folds
from tests.kfold._helpers import QUIET, BlobDataWithTest, Classifier


class _FixedSplits:
    """A splitter yielding the given (train, held-out) index lists."""

    def __init__(self, splits):
        self.splits = splits

    def split(self, X, y=None, groups=None):
        yield from ((np.asarray(tr), np.asarray(va)) for tr, va in self.splits)

    def get_n_splits(self, X=None, y=None, groups=None):
        return len(self.splits)

    def __repr__(self):
        return "_FixedSplits()"


GOOD = (list(range(5, 10)), list(range(5)))


@pytest.mark.parametrize(
    "bad, match",
    [
        ((list(range(10)), [0, 1, 2]), r"fold 1: 3 held-out samples are also training samples \(indices \[0, 1, 2\]\)"),
        ((list(range(5)), [5, 6, 12]), r"fold 1: held-out indices out of range \[0, 10\): \[12\]"),
        ((list(range(-1, 5)), [5, 6]), r"fold 1: training indices out of range \[0, 10\): \[-1\]"),
        (([], list(range(10))), r"fold 1: .*no training samples"),
        ((list(range(10)), []), r"fold 1: .*no held-out samples"),
        (([0.5, 1], [5, 6]), r"fold 1: training indices must be integers"),
    ],
)
def test_a_bad_fold_is_refused_naming_the_fold_the_problem_and_the_indices(bad, match):
    with pytest.raises(ValueError, match=match):
        make_folds(10, splitter=_FixedSplits([GOOD, bad]))


def test_only_a_few_offending_indices_are_listed():
    with pytest.raises(
        ValueError,
        match=r"100 held-out samples are also training samples \(indices \[0, 1, 2, 3, 4, "
        r"\.\.\.\]\)",
    ):
        make_folds(200, splitter=_FixedSplits([(list(range(200)), list(range(100)))]))


def test_an_overlapping_or_out_of_range_splitter_is_refused_before_any_training(tmp_path):
    class _Untouchable(Classifier):
        def training_step(self, batch, batch_idx):
            raise AssertionError("trained despite a bad splitter")

    n = 60
    overlap = _FixedSplits([(list(range(n)), list(range(20))), (list(range(20, n)), list(range(20)))])
    out_of_range = _FixedSplits([(list(range(20, n)), list(range(20))), (list(range(40)), list(range(40, n + 1)))])
    for splitter, match in [(overlap, "fold 0: 20 held-out samples"), (out_of_range, r"fold 1: held-out .*\[60\]")]:
        with pytest.raises(ValueError, match=match):
            kfold_fit(
                _Untouchable(),
                BlobDataWithTest(n=n),
                splitter=splitter,
                max_epochs=1,
                **QUIET,
                default_root_dir=tmp_path,
            )
