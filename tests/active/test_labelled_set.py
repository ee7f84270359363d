"""The labelled set has one owner, in one index space (dataset indices), and a round selects once then labels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from baal.active.heuristics import BALD
from torch.utils.data import Subset, TensorDataset

from alkit.active import ActiveLearningDataModule, ActiveLearningHistory
from alkit.active.labelled_set import LabelledSet
from alkit.active.loop import RESUME_CHECKPOINT
from alkit.lightning import pl
from tests.active.synthetic import TinyData
from tests.active.test_loop import make_data, run

FIXTURE = Path(__file__).parent / "data" / "datamodule_state_v1.json"
RUN_FIXTURE = Path(__file__).parent / "data" / "run_5a0da8f"


def test_labelling_index_i_labels_exactly_sample_i():
    labels = LabelledSet(12, labelled=np.arange(12) < 2)
    before = set(labels.unlabelled_indices().tolist())
    assert labels.label([9]).tolist() == [9]
    assert set(labels.labelled_indices().tolist()) == {0, 1, 9}
    assert set(labels.unlabelled_indices().tolist()) == before - {9}
    assert np.flatnonzero(labels.steps == 2).tolist() == [9]


def test_labelled_indices_keep_label_order_and_steps_give_the_rounds():
    labels = LabelledSet(10)
    labels.label([7, 2])
    labels.label([5])
    labels.label([0, 9, 3])
    assert labels.labelled_indices().tolist() == [2, 7, 5, 0, 3, 9]  # by step, by index within a step
    assert [np.flatnonzero(labels.steps == s).tolist() for s in (1, 2, 3)] == [[2, 7], [5], [0, 3, 9]]
    labels.hold_out([7, 5])
    assert labels.val_indices().tolist() == [5, 7] and labels.train_indices().tolist() == [0, 2, 3, 9]


class ShuffledSubsetData(TinyData):
    """TinyData whose training set is a shuffled subset of a larger set: dataset index != source position."""

    def __init__(self) -> None:
        super().__init__(n=30)
        order = np.random.default_rng(5).permutation(45)[:30].tolist()
        source = TensorDataset(torch.randn(45, 4, generator=torch.Generator().manual_seed(1)), torch.arange(45) % 3)
        self.train_dataset = Subset(source, order)
        self.train_dataset.targets = [int(source[i][1]) for i in order]
        self.x = torch.stack([self.train_dataset[i][0] for i in range(30)])

    def train_dataset_for_inference(self):
        return self.train_dataset


def test_datamodule_labels_the_sample_at_the_dataset_index_for_a_shuffled_subset():
    dm = ActiveLearningDataModule(ShuffledSubsetData(), initial_num_labels=3, seed=0)
    target = int(dm.pool_indices[11])
    trained_before = {tuple(x.tolist()) for x, _ in dm.labelled_dataset}
    dm.label([target])
    trained_after = {tuple(x.tolist()) for x, _ in dm.labelled_dataset}
    assert trained_after - trained_before == {tuple(dm.labelled.x[target].tolist())}
    assert np.flatnonzero(dm.dataset.labelled_map).tolist() == dm.labelled_indices.tolist()  # BaaL's view agrees
    assert target not in dm.current_pool_indices and target in dm.labelled_set.labelled_indices()
    pool_x = torch.cat([x for x, _ in dm.pool_dataloader()])
    torch.testing.assert_close(pool_x, dm.labelled.x[dm.current_pool_indices])


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        ([12], r"`indices` \[12\] are out of range for a training set of 12; accepted: 0..11"),
        ([-1, 3], r"`indices` \[-1\] are out of range"),
        ([4, 4], r"`indices` contains duplicates: \[4, 4\]"),
        ([1], r"`indices`: dataset indices \[1\] are already labelled"),
        ([0.5], r"`indices` must be integer dataset indices, got \[0.5\]"),
    ],
)
def test_bad_indices_are_refused_by_name_and_value_and_change_nothing(indices, message):
    labels = LabelledSet(12, labelled=np.arange(12) < 2)
    labels.label([6, 7])
    before = labels.state_dict()
    with pytest.raises(ValueError, match=message):
        labels.label(indices)
    assert labels.state_dict() == before


def test_bad_construction_and_validation_are_refused():
    with pytest.raises(ValueError, match="`size` must be an integer >= 1, got 0"):
        LabelledSet(0)
    with pytest.raises(ValueError, match="mask of length 3 for a training set of 4"):
        LabelledSet(4, labelled=[1, 0, 0])
    labels = LabelledSet(4, labelled=[1, 0, 0, 0])
    with pytest.raises(ValueError, match=r"Validation indices \[0, 2\] must be labelled"):
        labels.hold_out([0, 2])
    assert labels.val_indices().size == 0


def test_state_dict_round_trip_is_plain_and_another_size_is_refused(tmp_path):
    labels = LabelledSet(20, labelled=np.arange(20) < 3)
    labels.label([10, 4])
    labels.label([17])
    labels.hold_out([1, 4])
    torch.save(labels.state_dict(), tmp_path / "labels.pt")
    restored = LabelledSet(20)
    restored.load_state_dict(torch.load(tmp_path / "labels.pt", weights_only=True))
    assert restored.state_dict() == labels.state_dict()
    assert restored.labelled_indices().tolist() == labels.labelled_indices().tolist()
    other = LabelledSet(21)
    with pytest.raises(ValueError, match="training set of 20 samples, but this datamodule's training set has 21"):
        other.load_state_dict(labels.state_dict())
    assert other.labelled_indices().size == 0


def test_state_written_before_the_labelled_set_had_its_own_class_still_loads_and_continues():
    """A checkpoint of the earlier datamodule (same keys) restores the same labels and continues with the same picks.

    The fixture was written by the datamodule of alkit 5a0da8f: its state after two queries and a person's labels,
    then three more queries (pool, scores and picks recorded).
    """
    fixture = json.loads(FIXTURE.read_text())
    kwargs = {**fixture["kwargs"], "seed": 7}
    dm = ActiveLearningDataModule(TinyData(**fixture["data"]), **kwargs)
    dm.load_state_dict(fixture["state"])
    assert json.loads(json.dumps(dm.state_dict())) == fixture["state"]
    labelled_map = fixture["state"]["labelled_map"]
    assert dm.labelled_indices.tolist() == np.flatnonzero(labelled_map).tolist()
    assert dm.val_indices.tolist() == fixture["state"]["val_indices"]
    for step in fixture["continuation"]:
        assert dm.current_pool_indices.tolist() == step["pool"]
        assert dm.query(np.asarray(step["scores"])).tolist() == step["added"]


class CountingBALD(BALD):
    """BALD that counts the pool rows it scores and the rankings it makes."""

    def __init__(self) -> None:
        super().__init__()
        self.rows_scored = 0
        self.rankings = 0

    def get_uncertainties(self, predictions, target=None):
        self.rows_scored += int(np.shape(predictions)[0])
        return super().get_uncertainties(predictions)

    def reorder_indices(self, scores):
        self.rankings += 1
        return super().reorder_indices(scores)


def test_a_round_scores_the_pool_once_ranks_once_and_labels_query_size_new_indices(tmp_path):
    heuristic = CountingBALD()
    dm = make_data(n=30, initial=6, query_size=4, heuristic=heuristic)
    pool_sizes = []

    class PoolSize(pl.Callback):
        def on_train_end(self, trainer, pl_module):
            pool_sizes.append(len(trainer.datamodule.current_pool_indices))

    labelled_before = dm.labelled_indices.tolist()
    _, loop, _, dm = run(tmp_path, rounds=3, datamodule=dm, callbacks=[PoolSize()])
    added = [record.indices_added for record in loop.history]
    assert [len(a) for a in added] == [4, 4, 0]  # no labelling after the last round
    assert heuristic.rankings == 2 and heuristic.rows_scored == sum(pool_sizes[:2])
    every = labelled_before + added[0] + added[1]
    assert len(set(every)) == len(every) and sorted(every) == dm.labelled_indices.tolist()
    steps = dm.labelled_set.steps
    assert [sorted(np.flatnonzero(steps == steps.max() - k).tolist()) for k in (1, 0)] == [
        sorted(added[0]),
        sorted(added[1]),
    ]


def test_run_folder_written_before_the_labelled_set_had_its_own_class_resumes(tmp_path):
    """A run folder of alkit 5a0da8f (killed in round 3 of 3, after round 2's labels were saved) resumes: the labels,
    the history and the person's answers are taken from it, nothing is asked again, and the run ends with them."""
    folder = tmp_path / "run"
    shutil.copytree(RUN_FIXTURE, folder)
    saved = torch.load(folder / RESUME_CHECKPOINT, weights_only=True)["ActiveLearningDataModule"]
    answered = {record["index"] for record in json.loads((folder / "oracle_answers.json").read_text())["answers"]}
    asked: list[int] = []

    def person(indices, items):
        asked.extend(int(i) for i in indices)
        return [int(i) % 3 for i in indices]

    dm = make_data(n=30, initial=6, query_size=2, with_test=False, oracle=person)
    _, loop, _, dm = run(folder, rounds=3, datamodule=dm, ckpt_path=folder / RESUME_CHECKPOINT)
    old_history = ActiveLearningHistory.load(RUN_FIXTURE / "active_learning_history.json")
    assert list(loop.history)[:2] == list(old_history) and len(loop.history) == 3
    assert loop.history[2].num_labelled == 8 and loop.history[2].indices_added == []
    assert dm.labelled_set.state_dict()["labelled_map"] == saved["labelled_map"]  # the last round labels nothing
    assert dm.val_indices.tolist() == saved["val_indices"]
    assert not set(asked) & answered and asked == []
