"""Fold computation: the partition properties users rely on, determinism, and every rejected input."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    RepeatedStratifiedKFold,
    ShuffleSplit,
    StratifiedKFold,
)
from torch.utils.data import Dataset, Subset, TensorDataset

from alkit.kfold.splits import make_folds, read_targets


@pytest.fixture(scope="module")
def digits_targets():
    return load_digits().target


def _assert_partition(folds, n):
    held_out = np.concatenate([f.val_indices for f in folds])
    assert len(held_out) == n, "held-out folds overlap or miss samples"
    np.testing.assert_array_equal(np.sort(held_out), np.arange(n))
    for fold in folds:
        assert not set(fold.train_indices) & set(fold.val_indices)
        np.testing.assert_array_equal(np.sort(np.concatenate([fold.train_indices, fold.val_indices])), np.arange(n))


@pytest.mark.parametrize("k", [2, 3, 5, 7])
def test_default_folds_partition_the_training_set(k):
    folds = make_folds(53, k)
    assert len(folds) == k
    _assert_partition(folds, 53)
    assert all(f.train_indices.dtype == np.int64 for f in folds)


def test_default_folds_are_shuffled_so_sorted_data_does_not_give_one_class_folds():
    folds = make_folds(100, 5)
    assert not np.array_equal(np.sort(folds[0].val_indices), np.arange(20))


@pytest.mark.parametrize(
    "splitter", [KFold(4), KFold(3, shuffle=True, random_state=3), StratifiedKFold(5, shuffle=True)]
)
def test_sklearn_kfold_splitters_partition(splitter, digits_targets):
    folds = make_folds(len(digits_targets), splitter=splitter, targets=digits_targets)
    _assert_partition(folds, len(digits_targets))


def test_stratified_folds_keep_class_ratios_within_one_sample(digits_targets):
    k = 5
    folds = make_folds(len(digits_targets), k, stratify=True, targets=digits_targets, seed=1)
    _assert_partition(folds, len(digits_targets))
    classes, totals = np.unique(digits_targets, return_counts=True)
    for fold in folds:
        counts = np.array([(digits_targets[fold.val_indices] == c).sum() for c in classes])
        assert np.all(np.abs(counts - totals / k) <= 1), counts


def test_groups_never_straddle_train_and_held_out():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 12, size=90)
    folds = make_folds(90, 4, groups=groups, seed=2)
    _assert_partition(folds, 90)
    for fold in folds:
        assert not set(groups[fold.train_indices]) & set(groups[fold.val_indices])


def test_group_splitter_object_respects_groups():
    groups = np.repeat(np.arange(10), 5)
    folds = make_folds(50, splitter=GroupShuffleSplit(3, test_size=0.3), groups=groups)
    assert len(folds) == 3
    for fold in folds:
        assert not set(groups[fold.train_indices]) & set(groups[fold.val_indices])


def test_shuffle_split_train_and_held_out_never_overlap():
    folds = make_folds(40, splitter=ShuffleSplit(6, test_size=0.25))
    assert len(folds) == 6
    for fold in folds:
        assert len(fold.val_indices) == 10
        assert not set(fold.train_indices) & set(fold.val_indices)


def test_repeated_stratified_kfold_gives_every_repetition_as_folds(digits_targets):
    splitter = RepeatedStratifiedKFold(n_splits=3, n_repeats=2)
    folds = make_folds(len(digits_targets), splitter=splitter, targets=digits_targets)
    assert len(folds) == 6
    _assert_partition(folds[:3], len(digits_targets))
    _assert_partition(folds[3:], len(digits_targets))
    assert not np.array_equal(folds[0].val_indices, folds[3].val_indices)


def test_same_seed_same_folds_and_other_seed_other_folds():
    a = make_folds(60, 5, seed=7)
    b = make_folds(60, 5, seed=7)
    c = make_folds(60, 5, seed=8)
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa.val_indices, fb.val_indices)
    assert any(not np.array_equal(fa.val_indices, fc.val_indices) for fa, fc in zip(a, c))


def test_unseeded_splitter_is_pinned_to_the_seed_without_being_mutated():
    splitter = ShuffleSplit(4, test_size=0.2)  # random_state=None: would differ on every ddp rank
    a = make_folds(50, splitter=splitter, seed=3)
    b = make_folds(50, splitter=splitter, seed=3)
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa.val_indices, fb.val_indices)
    assert splitter.random_state is None


def test_explicitly_seeded_splitter_keeps_its_own_seed():
    a = make_folds(50, splitter=KFold(5, shuffle=True, random_state=11), seed=0)
    expected = list(KFold(5, shuffle=True, random_state=11).split(np.zeros(50)))
    for fold, (_, val) in zip(a, expected):
        np.testing.assert_array_equal(fold.val_indices, val)


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("k", [1, 0, -3])
def test_k_below_two_is_rejected(k):
    with pytest.raises(ValueError, match=rf"k={k} .*k >= 2"):
        make_folds(10, k)


@pytest.mark.parametrize("k", [2.5, "5", True])
def test_k_that_is_not_an_int_is_rejected(k):
    with pytest.raises(ValueError, match=r"k=.* expected an int >= 2"):
        make_folds(10, k)


def test_k_larger_than_the_number_of_samples_is_rejected():
    with pytest.raises(ValueError, match=r"k=8 is larger than the number of training samples \(5\).*2 <= k <= 5"):
        make_folds(5, 8)


def test_k_larger_than_the_smallest_class_is_rejected_when_stratified():
    targets = np.array([0] * 10 + [1] * 3)
    with pytest.raises(ValueError, match=r"k=4 is larger than the smallest class \(class 1 has 3 samples\)"):
        make_folds(13, 4, stratify=True, targets=targets)
    make_folds(13, 4, targets=targets)  # without stratification the small class does not limit k


def test_stratified_splitter_object_is_also_checked_against_the_smallest_class():
    targets = np.array([0] * 10 + [1] * 2)
    with pytest.raises(ValueError, match=r"splitter=StratifiedKFold.*\(k=3 folds\) is larger than the smallest class"):
        make_folds(12, splitter=StratifiedKFold(3), targets=targets)


def test_k_larger_than_the_number_of_groups_is_rejected():
    with pytest.raises(ValueError, match=r"k=5 is larger than the number of distinct groups \(3\)"):
        make_folds(30, 5, groups=np.arange(30) % 3)


def test_groups_of_the_wrong_length_are_rejected():
    with pytest.raises(ValueError, match=r"groups has length 9 but the training set has 10 samples"):
        make_folds(10, 2, groups=list(range(9)))


def test_splitter_without_split_is_rejected():
    with pytest.raises(TypeError, match=r"splitter=.* has no split\(X, y, groups\) method"):
        make_folds(10, splitter=object())


def test_no_training_data_is_rejected():
    with pytest.raises(ValueError, match=r"training set is empty \(0 samples\)"):
        make_folds(0, 5)


def test_stratify_without_targets_is_rejected():
    with pytest.raises(ValueError, match=r"stratify=True needs the targets"):
        make_folds(10, 2, stratify=True)


def test_group_splitter_without_groups_is_rejected():
    with pytest.raises(ValueError, match=r"splitter=GroupKFold.* splits by group but groups=None"):
        make_folds(10, splitter=GroupKFold(2))


def test_k_that_contradicts_the_splitter_is_rejected():
    with pytest.raises(ValueError, match=r"k=5 does not match splitter=ShuffleSplit.*produces 3 folds"):
        make_folds(20, 5, splitter=ShuffleSplit(3))


def test_splitter_with_more_splits_than_samples_is_rejected_naming_the_splitter():
    with pytest.raises(ValueError, match=r"splitter=KFold.*\(k=6 folds\) is larger than the number of training"):
        make_folds(4, splitter=KFold(6))


def test_errors_of_the_splitter_itself_name_the_splitter():
    with pytest.raises(ValueError, match=r"splitter=ShuffleSplit.* cannot split 4 training samples: test_size=10"):
        make_folds(4, splitter=ShuffleSplit(2, test_size=10))


# ---------------------------------------------------------------------------------------------- targets
class _LabelledOnlyByIteration(Dataset):
    def __init__(self, labels, as_dict=False):
        self.labels_ = labels
        self.as_dict = as_dict

    def __len__(self):
        return len(self.labels_)

    def __getitem__(self, i):
        x = torch.zeros(2)
        return {"input": x, "label": torch.tensor(self.labels_[i])} if self.as_dict else (x, self.labels_[i])


class _WithTargets(Dataset):
    def __init__(self, targets):
        self.targets = targets

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        raise AssertionError("reading targets must not load samples when a `targets` attribute exists")


def test_read_targets_prefers_the_targets_attribute_and_never_loads_samples():
    np.testing.assert_array_equal(read_targets(_WithTargets([3, 1, 2])), [3, 1, 2])


def test_read_targets_of_a_subset_maps_onto_the_parent_labels():
    subset = Subset(_WithTargets(torch.tensor([5, 6, 7, 8])), [3, 0])
    np.testing.assert_array_equal(read_targets(subset), [8, 5])


def test_read_targets_of_a_tensor_dataset_uses_its_second_tensor():
    dataset = TensorDataset(torch.zeros(4, 3), torch.tensor([1, 0, 1, 1]))
    np.testing.assert_array_equal(read_targets(dataset), [1, 0, 1, 1])


@pytest.mark.parametrize("as_dict", [False, True])
def test_read_targets_falls_back_to_iterating_tuples_or_dicts(as_dict):
    np.testing.assert_array_equal(read_targets(_LabelledOnlyByIteration([2, 0, 2], as_dict)), [2, 0, 2])
