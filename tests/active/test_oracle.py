"""Oracles: simulated by default, user labels checked before anything is labelled, and really trained on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alkit.active import ActiveLearningDataModule
from alkit.active.oracle import TargetOverrideDataset, check_labels, reveal_labels
from tests.active.synthetic import TinyData


class Person:
    """A user oracle that always answers class 2 and records what it was shown."""

    def __init__(self, answer=None):
        self.calls = []
        self.answer = answer

    def __call__(self, indices, items):
        self.calls.append((indices.tolist(), [items[k][0] for k in range(len(items))]))
        return self.answer(indices) if self.answer else [2] * len(indices)


def labels_served(dm, loader):
    """Map dataset index -> label, by matching served inputs to the deterministic data."""
    data = dm.labelled
    served = {}
    for x, y in loader:
        for row, label in zip(x, y):
            index = int(torch.argmin((data.x - row).abs().sum(1)))
            served[index] = int(label)
    return served


def test_default_oracle_reveals_labels_in_the_data():
    data = TinyData(n=20)
    dm = ActiveLearningDataModule(data, initial_num_labels=5, seed=0)
    data.train_dataset.noise = 0.0
    served = labels_served(dm, dm.train_dataloader())
    assert served == {int(i): int(data.y[i]) for i in dm.train_indices}
    assert reveal_labels(data.train_dataset, np.array([3, 4])) == [0, 1]


def test_user_oracle_labels_are_trained_on_and_validated_on():
    person = Person()
    data = TinyData(n=20)
    dm = ActiveLearningDataModule(data, initial_num_labels=6, val_split=0.34, oracle=person, seed=0)
    # without an answers file the initial labels are asked for when first needed (a loop names the file first)
    assert person.calls == []
    dm.train_dataloader()
    assert sorted(person.calls[0][0]) == sorted(dm.labelled_indices.tolist())  # initial labels came from the person
    # the person saw the samples with evaluation transforms (deterministic)
    torch.testing.assert_close(torch.stack(person.calls[0][1]), data.x[person.calls[0][0]])
    new = dm.label(dm.pool_indices[:3])
    assert person.calls[1][0] == new.tolist()
    data.train_dataset.noise = 0.0
    assert set(labels_served(dm, dm.train_dataloader()).values()) == {2}
    assert set(labels_served(dm, dm.val_dataloader()).values()) == {2}
    assert any(int(data.y[i]) != 2 for i in dm.labelled_indices)  # the data said otherwise


def test_class_names_are_accepted():
    data = TinyData(n=12)
    data.classes = ["ant", "bee", "wasp"]
    dm = ActiveLearningDataModule(data, initial_num_labels=2, seed=0, oracle=lambda idx, items: ["bee"] * len(idx))
    dm.label(dm.pool_indices[:1], labels=["wasp"])
    assert sorted(dm.state_dict()["label_overrides"].values()) == [1, 1, 2]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda idx: [1] * (len(idx) - 1), r"returned \d+ label"),
        (lambda idx: [7] * len(idx), "label 7"),
        (lambda idx: ["bee"] * len(idx), "'bee'"),
        (lambda idx: [1.5] * len(idx), "1.5"),
        (lambda idx: [True] * len(idx), "True"),
    ],
)
def test_bad_oracle_answers_change_nothing(answer, message):
    dm = ActiveLearningDataModule(TinyData(n=20), initial_num_labels=4, seed=0, oracle=Person())
    dm.train_dataloader()  # the initial labels are answered (well)
    dm.oracle = Person(answer)
    before = dm.state_dict()
    with pytest.raises(ValueError, match=message):
        dm.label(dm.pool_indices[:2])
    with pytest.raises(ValueError, match=message):
        dm.query(np.arange(len(dm.current_pool_indices), dtype=float))
    assert dm.state_dict() == before


def test_bad_oracle_for_the_initial_labels_is_a_clear_error_and_they_stay_unanswered(tmp_path):
    dm = ActiveLearningDataModule(TinyData(n=10), initial_num_labels=3, oracle=lambda idx, items: [])
    for _ in range(2):  # nothing is served with a label the person did not give
        with pytest.raises(ValueError, match="returned 0 label"):
            dm.train_dataloader()
    with pytest.raises(ValueError, match="returned 0 label"):
        ActiveLearningDataModule(
            TinyData(n=10), initial_num_labels=3, oracle=lambda idx, items: [], answers_file=tmp_path / "answers.json"
        )
    with pytest.raises(TypeError, match="oracle"):
        ActiveLearningDataModule(TinyData(n=10), oracle="person")


def test_items_are_loaded_lazily():
    loads = []

    class Counting(torch.utils.data.Dataset):
        targets = [0, 1, 0, 1]

        def __len__(self):
            return 4

        def __getitem__(self, index):
            loads.append(index)
            return torch.zeros(2), self.targets[index]

    assert reveal_labels(Counting(), np.array([1, 2])) == [1, 0] and loads == []


def test_override_keeps_target_type():
    dataset = TargetOverrideDataset(torch.utils.data.TensorDataset(torch.zeros(3, 2), torch.tensor([0, 1, 2])), {1: 2})
    assert dataset[1][1].dtype == torch.int64 and int(dataset[1][1]) == 2 and int(dataset[0][1]) == 0
    dict_dataset = TargetOverrideDataset([{"input": 1, "target": 0}], {0: 1})
    assert dict_dataset[0] == {"input": 1, "target": 1}


def test_check_labels_accepts_numpy_and_tensors():
    assert check_labels(np.array([0, 2]), np.array([5, 6]), 3) == [0, 2]
    assert check_labels(torch.tensor([1, 0]), np.array([5, 6]), 3) == [1, 0]
