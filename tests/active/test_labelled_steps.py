"""The labelled mask keeps BaaL's step numbers, set in dataset indices without BaaL's pool-index round trip."""

from __future__ import annotations

import numpy as np
from baal.active import ActiveLearningDataset

from alkit.active import ActiveLearningDataModule
from tests.active.synthetic import TinyData


def _label_in_baal(baal: ActiveLearningDataset, dataset_indices: list[int]) -> None:
    """Label dataset indices in BaaL through its public API (``label`` takes positions in the current pool)."""
    pool = np.flatnonzero(~np.asarray(baal.labelled))
    baal.label([int(np.searchsorted(pool, index)) for index in dataset_indices])


def test_labelling_steps_equal_what_baals_own_label_writes():
    dm = ActiveLearningDataModule(TinyData(n=20), initial_num_labels=4, seed=0)
    baal = ActiveLearningDataset(TinyData(n=20).train_dataset_for_inference(), labelled=np.zeros(20, dtype=int))
    _label_in_baal(baal, dm.labelled_indices.tolist())
    for batch in ([3, 17], [0], [19, 5, 11]):
        batch = [i for i in batch if not dm.dataset.labelled[i]]
        dm.label(batch)
        _label_in_baal(baal, batch)
    np.testing.assert_array_equal(dm.dataset.labelled_map, baal.labelled_map)
    assert sorted(set(dm.dataset.labelled_map.tolist())) == [0, 1, 2, 3, 4]
