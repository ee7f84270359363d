"""A person's answers are on disk before anything else happens, and a resume never asks them again."""

from __future__ import annotations

import json
import os

import pytest
import torch

import alkit._io
import alkit.active.loop
from alkit.active import ActiveLearningDataModule
from alkit.active.loop import RESUME_CHECKPOINT
from alkit.active.oracle import ANSWERS_NAME
from tests.active.synthetic import TinyData
from tests.active.test_loop import make_data, run
from tests.interrupt import KillAtEpoch, Killed


class Person:
    """Answers ``index % 3`` and records every index it was asked about."""

    def __init__(self) -> None:
        self.asked: list[list[int]] = []

    def __call__(self, indices, items):
        self.asked.append([int(i) for i in indices])
        return [int(i) % 3 for i in indices]

    @property
    def all_asked(self) -> list[int]:
        return [i for batch in self.asked for i in batch]


def answers_on_disk(folder) -> dict[int, int]:
    data = json.loads((folder / ANSWERS_NAME).read_text())
    return {record["index"]: record["label"] for record in data["answers"]}


def overrides(dm) -> dict[int, int]:
    return dm.state_dict()["label_overrides"]


def reference(tmp_path, rounds=3):
    person = Person()
    _, _, _, dm = run(tmp_path / "reference", rounds=rounds, datamodule=make_data(oracle=person))
    return person, dm


def test_answers_given_before_a_death_in_round_0_are_on_disk_and_not_asked_again(tmp_path):
    ref_person, ref_dm = reference(tmp_path)
    folder = tmp_path / "run"
    person = Person()
    dm = make_data(oracle=person)  # no answers_file: the loop keeps them in <run folder>/oracle_answers.json
    initial = dm.labelled_indices.tolist()
    with pytest.raises(Killed):
        run(folder, rounds=3, datamodule=dm, callbacks=[KillAtEpoch(0)])
    assert answers_on_disk(folder) == {i: i % 3 for i in initial}

    again = Person()
    dm = make_data(oracle=again, answers_file=folder / ANSWERS_NAME)  # rebuilt to resume: nothing asked
    assert again.asked == []
    run(folder, rounds=3, datamodule=dm)
    assert not set(again.all_asked) & set(initial)
    assert sorted(person.all_asked + again.all_asked) == sorted(ref_person.all_asked)  # each index asked once
    assert dm.labelled_indices.tolist() == ref_dm.labelled_indices.tolist()
    assert overrides(dm) == overrides(ref_dm)
    assert answers_on_disk(folder) == overrides(ref_dm)


@pytest.mark.parametrize("answers_file_given", [True, False])
def test_answers_of_a_round_whose_checkpoint_was_never_written_are_not_asked_again(
    tmp_path, monkeypatch, answers_file_given
):
    ref_person, ref_dm = reference(tmp_path, rounds=4)
    folder = tmp_path / "run"
    saves = []
    real_save = alkit.active.loop.save_checkpoint_atomic

    def save_then_die_in_round_1(trainer, path, **kwargs):
        saves.append(path)
        if len(saves) == 2:  # round 1: the oracle answered, the checkpoint rename never happens
            raise Killed
        return real_save(trainer, path, **kwargs)

    monkeypatch.setattr(alkit.active.loop, "save_checkpoint_atomic", save_then_die_in_round_1)
    person = Person()
    with pytest.raises(Killed):
        run(folder, rounds=4, datamodule=make_data(oracle=person))
    monkeypatch.setattr(alkit.active.loop, "save_checkpoint_atomic", real_save)
    round_1 = person.asked[-1]
    assert len(person.asked) == 3 and all(answers_on_disk(folder)[i] == i % 3 for i in round_1)
    checkpoint = torch.load(folder / RESUME_CHECKPOINT, weights_only=True)  # round 0's
    (state,) = [v for k, v in checkpoint.items() if k.endswith("ActiveLearningDataModule")]
    assert not set(round_1) & set(state["label_overrides"])  # the round's answers are in no checkpoint

    again = Person()
    kwargs = {"answers_file": folder / ANSWERS_NAME} if answers_file_given else {}
    dm = make_data(oracle=again, **kwargs)
    run(folder, rounds=4, datamodule=dm, ckpt_path=folder / RESUME_CHECKPOINT)
    # with or without `answers_file=`, the person is asked nothing they already answered (the initial labels
    # included: without the argument they are asked for only once the run's answers file is known)
    assert not set(again.all_asked) & set(person.all_asked)
    assert dm.labelled_indices.tolist() == ref_dm.labelled_indices.tolist()
    assert overrides(dm) == overrides(ref_dm)
    assert answers_on_disk(folder) == overrides(ref_dm)


def test_answers_file_is_replaced_atomically(tmp_path, monkeypatch):
    path = tmp_path / ANSWERS_NAME
    person = Person()
    dm = ActiveLearningDataModule(TinyData(n=20), initial_num_labels=4, seed=0, oracle=person, answers_file=path)
    before = path.read_bytes()
    assert answers_on_disk(tmp_path) == {i: i % 3 for i in dm.labelled_indices.tolist()}

    def crash(*args, **kwargs):
        raise OSError("power cut")

    monkeypatch.setattr(alkit._io.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        dm.label(dm.pool_indices[:2])
    monkeypatch.undo()
    assert path.read_bytes() == before  # the previous version, whole
    assert os.listdir(tmp_path) == [ANSWERS_NAME]  # no temporary file left behind
    assert dm.num_labelled == 4  # the answer never reached disk, so nothing was labelled


def test_answers_on_file_are_used_only_for_requested_indices(tmp_path):
    path = tmp_path / ANSWERS_NAME
    records = [{"index": i, "label": 2, "round": 0} for i in range(20)]
    path.write_text(json.dumps({"format": "alkit-oracle-answers", "version": 1, "answers": records}))
    person = Person()
    dm = ActiveLearningDataModule(TinyData(n=20), initial_num_labels=4, seed=0, oracle=person, answers_file=path)
    assert person.asked == [] and set(overrides(dm).values()) == {2}
    assert sorted(overrides(dm)) == dm.labelled_indices.tolist()  # the other answers labelled nothing


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"answers": []}),
        json.dumps(
            {"format": "alkit-oracle-answers", "version": 1, "answers": [{"index": 99, "label": 0, "round": 0}]}
        ),
        json.dumps({"format": "alkit-oracle-answers", "version": 1, "answers": [{"index": 1, "label": 7, "round": 0}]}),
        json.dumps({"format": "alkit-oracle-answers", "version": 1, "answers": [{"index": "1"}]}),
    ],
)
def test_corrupt_or_foreign_answers_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / ANSWERS_NAME
    path.write_text(content)
    person = Person()
    with pytest.raises(ValueError, match="oracle answers file") as error:
        ActiveLearningDataModule(TinyData(n=20), initial_num_labels=4, seed=0, oracle=person, answers_file=path)
    assert str(path) in str(error.value) and person.asked == []
