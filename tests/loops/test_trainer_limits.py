"""Loops built without limits take the Trainer's when attached; limits given to the constructor win."""

from __future__ import annotations

import pytest

import alkit
from alkit import loops
from alkit.examples._toy import ToyClassifier, toy_dataloader
from alkit.lightning import pl
from tests.quiet import QUIET

FLAGS = [
    {},
    {"max_epochs": 2},
    {"max_steps": 5},
    {"min_epochs": 1, "max_epochs": 3},
    {"min_steps": 2, "max_steps": 6},
    {"max_epochs": -1, "max_steps": 4},
]


class MyFitLoop(loops.FitLoop):
    """A 1.x-style subclass that passes no limits."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs_seen = 0

    def on_advance_end(self) -> None:
        super().on_advance_end()
        self.epochs_seen += 1


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "defaults")
def test_attached_loops_hold_the_limits_lightning_builds_for_the_same_flags(flags):
    reference = pl.Trainer(**flags, **QUIET).fit_loop
    trainer = alkit.Trainer(**flags, **QUIET)
    fit_loop = loops.FitLoop()
    fit_loop.epoch_loop = loops.TrainingEpochLoop()
    trainer.fit_loop = fit_loop  # attaching a tree attaches every loop in it
    assert (fit_loop.min_epochs, fit_loop.max_epochs) == (reference.min_epochs, reference.max_epochs)
    assert (fit_loop.epoch_loop.min_steps, fit_loop.epoch_loop.max_steps) == (
        reference.epoch_loop.min_steps,
        reference.epoch_loop.max_steps,
    )


def test_a_fit_loop_without_limits_runs_the_trainers_epochs(one_torch_thread):
    trainer = alkit.Trainer(max_epochs=2, **QUIET)
    trainer.fit_loop = MyFitLoop()
    trainer.fit(ToyClassifier(), toy_dataloader())
    assert trainer.fit_loop.epochs_seen == 2 and trainer.current_epoch == 2 and trainer.max_epochs == 2


def test_an_epoch_loop_without_limits_stops_at_the_trainers_max_steps(one_torch_thread):
    trainer = alkit.Trainer(max_steps=3, **QUIET)
    trainer.fit_loop.epoch_loop = loops.TrainingEpochLoop()
    trainer.fit(ToyClassifier(), toy_dataloader())  # 4 batches per epoch
    assert trainer.global_step == 3


def test_min_epochs_of_the_trainer_hold_a_loop_built_without_them(one_torch_thread):
    class StopAtOnce(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            trainer.should_stop = True

    trainer = alkit.Trainer(min_epochs=2, max_epochs=5, callbacks=[StopAtOnce()], **QUIET)
    trainer.fit_loop = MyFitLoop()
    trainer.fit(ToyClassifier(), toy_dataloader())
    assert trainer.current_epoch == 2


def test_limit_train_batches_comes_from_the_trainer(one_torch_thread):
    trainer = alkit.Trainer(max_epochs=2, limit_train_batches=2, **QUIET)
    trainer.fit_loop = MyFitLoop()
    trainer.fit(ToyClassifier(), toy_dataloader())
    assert trainer.global_step == 4


def test_limits_given_to_the_constructor_win(one_torch_thread):
    trainer = alkit.Trainer(max_epochs=3, **QUIET)
    trainer.fit_loop = loops.FitLoop(max_epochs=1)
    trainer.fit(ToyClassifier(), toy_dataloader())
    assert trainer.current_epoch == 1

    # an explicit "no step limit" wins over Trainer(max_steps=3), although it is the constructor's default
    trainer = alkit.Trainer(max_epochs=1, max_steps=3, **QUIET)
    trainer.fit_loop.epoch_loop = loops.TrainingEpochLoop(max_steps=-1)
    trainer.fit(ToyClassifier(), toy_dataloader())
    assert trainer.global_step == 4


def test_a_limit_a_subclass_sets_itself_wins():
    class OneEpochFitLoop(loops.FitLoop):
        def __init__(self) -> None:
            super().__init__(max_epochs=1)

    trainer = alkit.Trainer(max_epochs=3, min_epochs=2, **QUIET)
    trainer.fit_loop = OneEpochFitLoop()
    assert trainer.fit_loop.max_epochs == 1
    assert trainer.fit_loop.min_epochs == 2  # the limit it left out is still the Trainer's


def test_a_loop_follows_the_trainer_it_is_attached_to_unless_changed_since():
    loop = loops.FitLoop()
    alkit.Trainer(max_epochs=2, **QUIET).fit_loop = loop
    assert loop.max_epochs == 2
    alkit.Trainer(max_epochs=4, **QUIET).fit_loop = loop
    assert loop.max_epochs == 4
    loop.max_epochs = 7  # set by hand: the loop's own from now on
    alkit.Trainer(max_epochs=5, **QUIET).fit_loop = loop
    assert loop.max_epochs == 7


def test_an_unattached_loop_keeps_none_for_the_limits_it_was_not_given():
    loop = loops.FitLoop()
    assert (loop.min_epochs, loop.max_epochs) == (None, None)
    assert (loop.epoch_loop.min_steps, loop.epoch_loop.max_steps) == (None, -1)


def test_pl_trainer_environment_defaults_apply_to_alkit_trainer(monkeypatch):
    # Lightning reads `PL_TRAINER_<FLAG>` defaults from the Trainer's signature; alkit's must be Lightning's.
    monkeypatch.setenv("PL_TRAINER_MAX_STEPS", "7")
    trainer = alkit.Trainer(logger=False, enable_checkpointing=False)
    assert trainer.max_steps == 7
    assert trainer.fit_loop.epoch_loop.max_steps == 7
