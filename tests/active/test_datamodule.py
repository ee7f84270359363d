"""ActiveLearningDataModule: fixed validation split, pool/labelled bookkeeping in dataset indices, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from baal.active.heuristics import BALD
from torch.utils.data import Subset

from alkit.active import ActiveLearningDataModule
from tests.active.synthetic import TinyData


def make(n=40, **kwargs) -> ActiveLearningDataModule:
    data_kwargs = {k: kwargs.pop(k) for k in ("with_val", "with_test", "batch_size") if k in kwargs}
    kwargs.setdefault("seed", 0)
    return ActiveLearningDataModule(TinyData(n=n, **data_kwargs), **kwargs)


def all_items(loader):
    xs, ys = [], []
    for x, y in loader:
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def test_initial_labels_and_sets_partition_the_data():
    dm = make(initial_num_labels=10, val_split=0.2, query_size=3)
    assert dm.num_labelled == 10 and dm.val_indices.size == 2 and dm.train_indices.size == 8
    every = np.concatenate([dm.train_indices, dm.val_indices, dm.pool_indices])
    assert sorted(every.tolist()) == list(range(40))
    assert not set(dm.val_indices) & set(dm.train_indices)
    assert len(dm.labelled_dataset) == 8 and len(dm.pool) == 30
    assert dm.has_unlabelled_data and dm.has_labelled_data and dm.has_validation and not dm.has_test
    assert dm.num_classes == 3


def test_validation_is_drawn_once_and_never_trained_on():
    """A validation sample is never trained on: Flash redrew the split over the growing labelled set every round."""
    dm = make(initial_num_labels=10, val_split=0.3, query_size=4)
    val = dm.val_indices.tolist()
    for _ in range(5):
        dm.query(np.random.default_rng(0).random(len(dm.current_pool_indices)))
        assert dm.val_indices.tolist() == val
        assert not set(val) & set(dm.train_indices.tolist())
        assert len(dm.train_indices) + len(val) == dm.num_labelled
    _, val_targets = all_items(dm.val_dataloader())
    assert val_targets.tolist() == [int(dm.labelled.y[i]) for i in val]


def test_val_and_pool_use_eval_transforms_and_train_uses_training_transforms():
    """Validation and pool scoring are deterministic: Flash ran both with random training transforms."""
    dm = make(initial_num_labels=10, val_split=0.2, batch_size=3)
    x_val_1, _ = all_items(dm.val_dataloader())
    x_val_2, _ = all_items(dm.val_dataloader())
    torch.testing.assert_close(x_val_1, x_val_2)
    torch.testing.assert_close(x_val_1, dm.labelled.x[dm.val_indices])
    x_pool, _ = all_items(dm.pool_dataloader())
    torch.testing.assert_close(x_pool, dm.labelled.x[dm.current_pool_indices])
    x_train, _ = all_items(dm.train_dataloader())
    assert x_train.shape[0] == 8
    assert not torch.allclose(torch.sort(x_train[:, 0]).values, torch.sort(dm.labelled.x[dm.train_indices, 0]).values)


def test_train_dataloader_serves_exactly_the_training_samples():
    dm = make(initial_num_labels=10, val_split=0.2)
    dm.labelled.train_dataset.noise = 0.0
    x_train, y_train = all_items(dm.train_dataloader())
    order = torch.argsort(x_train[:, 0])
    expected = dm.labelled.x[dm.train_indices]
    torch.testing.assert_close(x_train[order], expected[torch.argsort(expected[:, 0])])
    assert len(y_train) == len(dm.train_indices)


def test_own_validation_set_is_used_and_val_split_refused():
    dm = make(initial_num_labels=6, with_val=True, with_test=True)
    assert dm.has_validation and dm.has_test and dm.val_indices.size == 0
    assert len(dm.val_dataloader().dataset) == 5 and len(dm.test_dataloader().dataset) == 6
    with pytest.raises(ValueError, match="already has a validation set"):
        make(initial_num_labels=6, with_val=True, val_split=0.2)


def test_no_validation_or_test_gives_empty_loaders():
    dm = make(initial_num_labels=6)
    assert dm.val_dataloader() == [] and dm.test_dataloader() == [] and not dm.has_validation


def test_small_validation_set_warns_and_empty_training_set_is_refused():
    with pytest.warns(UserWarning, match="1 sample"):
        make(initial_num_labels=5, val_split=0.1)  # Flash's demo setting: 1 validation image
    with pytest.raises(ValueError, match="none to train on"):
        make(initial_num_labels=1, val_split=0.5)
    with pytest.raises(ValueError, match="initial_num_labels"):
        make(val_split=0.5)


def test_query_maps_pool_positions_to_dataset_indices():
    dm = make(initial_num_labels=5, query_size=2)
    pool = dm.current_pool_indices
    scores = np.zeros(len(pool))
    scores[[3, 17]] = [1.0, 2.0]
    added = dm.query(scores)
    assert added.tolist() == [pool[17], pool[3]]
    assert set(added) <= set(dm.labelled_indices) and not set(added) & set(dm.pool_indices)


def test_pool_subset_positions_map_back_and_subset_changes_each_round():
    """Pool-subset positions map back to dataset indices: BaaL's experiment labelled them as pool indices."""
    dm = make(n=60, initial_num_labels=5, pool_size=10, seed=3)
    subsets = []
    for _ in range(4):
        subset = dm.current_pool_indices
        assert subset.size == 10 and set(subset) <= set(dm.pool_indices)
        np.testing.assert_array_equal(dm.current_pool_indices, subset)  # stable within a round
        loader_x, _ = all_items(dm.pool_dataloader())
        torch.testing.assert_close(loader_x, dm.labelled.x[subset])
        scores = np.zeros(10)
        scores[7] = 1.0
        assert dm.query(scores).tolist() == [subset[7]]
        subsets.append(subset.tolist())
    assert len({tuple(s) for s in subsets}) == 4


def test_known_most_uncertain_sample_is_labelled_end_to_end():
    """Score the pool with MC dropout through the datamodule's own dataloader, for several batch sizes and subsets."""
    from alkit.active.scoring import score_pool
    from tests.active.synthetic import SpikeModel

    spike = 17
    data = TinyData(n=30)
    data.x[:, 0] = 0.01 * torch.randn(30, generator=torch.Generator().manual_seed(0))
    data.x[spike, 0] = 4.0
    checked = {"with_spike": 0, "without_spike": 0}
    for batch_size in (1, 2, 3, 7):
        for pool_size, seed in [(None, 0), (12, 0), (12, 1), (12, 2), (12, 3)]:
            dm = ActiveLearningDataModule(
                data, "bald", initial_num_labels=3, pool_size=pool_size, seed=seed, pool_batch_size=batch_size
            )
            scored = dm.current_pool_indices
            torch.manual_seed(0)
            scores = score_pool(SpikeModel(), dm.pool_dataloader(), dm.heuristic, mc_iterations=20).scores
            added = dm.query(scores).tolist()
            if spike in scored:
                assert added == [spike], (batch_size, pool_size, seed)
                checked["with_spike"] += 1
            else:
                assert added != [spike] and set(added) <= set(scored.tolist())
                checked["without_spike"] += 1
    assert checked["with_spike"] >= 4 and checked["without_spike"] >= 1, checked


def test_filter_unlabelled_data_subset_is_mapped():
    def even_positions(dataset):
        return Subset(dataset, list(range(0, len(dataset), 2)))

    dm = make(initial_num_labels=4, filter_unlabelled_data=even_positions)
    pool = dm.pool_indices
    np.testing.assert_array_equal(dm.current_pool_indices, pool[::2])
    with pytest.raises(ValueError, match="Subset"):
        _ = make(initial_num_labels=4, filter_unlabelled_data=lambda d: list(d)).current_pool_indices


def test_map_dataset_to_labelled_sets_initial_mask():
    dm = make(map_dataset_to_labelled=lambda dataset: np.arange(len(dataset)) < 4, initial_num_labels=2)
    assert {0, 1, 2, 3} <= set(dm.labelled_indices) and dm.num_labelled == 6


def test_label_by_dataset_index_for_a_person():
    dm = make(initial_num_labels=3)
    target = int(dm.pool_indices[5])
    assert dm.label([target]).tolist() == [target]
    assert target in dm.labelled_indices and dm.round == 1
    before = dm.labelled_indices.copy()
    for bad, message in [([target], "already labelled"), ([40], "out of range"), ([-1], "out of range")]:
        with pytest.raises(ValueError, match=message):
            dm.label(bad)
    free = dm.pool_indices[:2]
    with pytest.raises(ValueError, match="duplicates"):
        dm.label([free[0], free[0]])
    with pytest.raises(ValueError, match="integer"):
        dm.label([0.5])
    np.testing.assert_array_equal(dm.labelled_indices, before)


def test_query_with_wrong_number_of_scores_is_refused():
    dm = make(initial_num_labels=3)
    with pytest.raises(ValueError, match="scores for a pool of"):
        dm.query(np.zeros(5))
    assert dm.num_labelled == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_num_labels": 41}, "initial_num_labels"),
        ({"initial_num_labels": -1}, "initial_num_labels"),
        ({"query_size": 0}, "query_size"),
        ({"val_split": 1.0, "initial_num_labels": 5}, "val_split"),
        ({"val_split": -0.1, "initial_num_labels": 5}, "val_split"),
        ({"heuristic": "most_uncertain"}, "Unknown heuristic"),
        ({"pool_size": 0}, "pool_size"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_datamodule_without_training_data_is_refused():
    data = TinyData()
    data.train_dataset = None
    data.train_dataloader = lambda: (_ for _ in ()).throw(RuntimeError("no training set"))
    with pytest.raises(ValueError, match="no training data"):
        ActiveLearningDataModule(data)


def test_heuristic_instance_kept():
    heuristic = BALD()
    assert make(heuristic=heuristic).heuristic is heuristic


def test_no_initial_labels_warns():
    with pytest.warns(UserWarning, match="No sample is labelled"):
        dm = make()
    assert not dm.has_labelled_data


def test_state_dict_round_trip_and_resume_matches():
    """A datamodule restored from a state continues exactly like the original (labels, subsets, stochastic picks)."""
    kwargs = dict(n=50, initial_num_labels=6, val_split=0.34, pool_size=15, query_size=3, heuristic="power_bald")
    original = make(**kwargs)
    rng = np.random.default_rng(0)
    for _ in range(2):
        original.query(rng.random(15))
    state = original.state_dict()
    restored = make(**{**kwargs, "seed": 99})
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored.labelled_indices, original.labelled_indices)
    np.testing.assert_array_equal(restored.val_indices, original.val_indices)
    assert restored.round == original.round == 2
    for _ in range(3):
        scores = rng.random(15)
        np.testing.assert_array_equal(restored.current_pool_indices, original.current_pool_indices)
        assert restored.query(scores).tolist() == original.query(scores).tolist()


def test_state_loads_with_weights_only(tmp_path):
    dm = make(initial_num_labels=6, val_split=0.34, heuristic="random")
    dm.label(dm.pool_indices[:2], labels=[1, 2])
    torch.save({"state": dm.state_dict()}, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)["state"]
    other = make(initial_num_labels=6, val_split=0.34, heuristic="random", seed=5)
    other.load_state_dict(loaded)
    assert other.state_dict() == dm.state_dict()


def test_checkpoint_from_another_dataset_is_refused():
    state = make(n=30, initial_num_labels=4).state_dict()
    dm = make(n=40, initial_num_labels=4)
    before = dm.labelled_indices.copy()
    with pytest.raises(ValueError, match="30 samples.*has 40"):
        dm.load_state_dict(state)
    np.testing.assert_array_equal(dm.labelled_indices, before)
    with pytest.raises(ValueError, match="Not an ActiveLearningDataModule state"):
        dm.load_state_dict({"labelled": np.zeros(40)})


def test_index_invariants_over_random_settings():
    """Property-style: every query adds query_size distinct pool indices (or what is left), none twice."""
    settings = np.random.default_rng(1234)
    for trial in range(40):
        n = int(settings.integers(5, 60))
        initial = int(settings.integers(1, n))
        query_size = int(settings.integers(1, 8))
        pool_size = None if settings.random() < 0.5 else int(settings.integers(1, 20))
        val_split = None if initial < 3 or settings.random() < 0.5 else 0.3
        heuristic = ["bald", "margin", "power_bald", "random"][trial % 4]
        if 0 < min(n - initial, pool_size or n) < query_size:  # would label the whole pool every round: refused
            with pytest.raises(ValueError, match=f"query_size={query_size}"):
                ActiveLearningDataModule(
                    TinyData(n=n), heuristic, initial_num_labels=initial, query_size=query_size, pool_size=pool_size
                )
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dm = ActiveLearningDataModule(
                TinyData(n=n, seed=trial),
                heuristic,
                initial_num_labels=initial,
                query_size=query_size,
                pool_size=pool_size,
                val_split=val_split,
                seed=trial,
            )
        val = dm.val_indices.tolist()
        ever_labelled = set(dm.labelled_indices.tolist())
        while dm.has_unlabelled_data:
            before = dm.num_labelled
            pool = set(dm.pool_indices.tolist())
            candidates = dm.current_pool_indices
            expected = min(query_size, len(candidates))
            added = dm.query(settings.random(len(candidates)))
            assert len(added) == expected == len(set(added.tolist()))
            assert set(added.tolist()) <= pool and set(added.tolist()) <= set(candidates.tolist())
            assert not set(added.tolist()) & ever_labelled
            ever_labelled |= set(added.tolist())
            assert dm.num_labelled == before + expected
            assert dm.val_indices.tolist() == val
        assert dm.num_labelled == n and sorted(ever_labelled) == list(range(n))
