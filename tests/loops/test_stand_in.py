"""Loops that take the FitLoop's place: the named list of fit-loop attributes they answer, and a loop from scratch.

Lightning's Trainer, callbacks and tuner read and write ``trainer.fit_loop.<name>``. A research loop wrapping the
FitLoop (``FitWrapperLoop``) or a loop written from scratch answers exactly the names of
``alkit._seam.FIT_LOOP_STAND_IN_ATTRIBUTES`` with the FitLoop doing the training; any other name is its own, so a
misspelling is an ``AttributeError`` instead of a silent read or write of the wrapped loop.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

import alkit
from alkit import _seam, loops
from alkit.examples._toy import ToyClassifier, toy_dataloader
from alkit.lightning import pl
from tests.quiet import QUIET

STAND_IN = _seam.FIT_LOOP_STAND_IN_ATTRIBUTES
OWN = _seam.FIT_LOOP_OWN_ATTRIBUTES


# ----------------------------------------------------------------------------------------------------------------------
# the list, pinned against the installed Lightning
# ----------------------------------------------------------------------------------------------------------------------
def test_every_listed_name_is_a_fit_loop_attribute():
    fit_loop = _seam._FitLoop(None)
    for name in STAND_IN:
        assert name in vars(fit_loop) or hasattr(_seam._FitLoop, name), name


def test_lightning_uses_no_fit_loop_attribute_outside_the_list():
    """Every ``fit_loop.<name>`` in the installed Lightning's sources is answered (listed or the loop's own)."""
    package = Path(pl.__file__).parent
    used: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        for name in re.findall(r"\bfit_loop\.([A-Za-z_]\w*)", path.read_text(encoding="utf-8")):
            used.setdefault(name, set()).add(str(path.relative_to(package)))
    assert "epoch_loop" in used and "_should_accumulate" in used  # the grep sees Lightning's sources
    unlisted = {name: sorted(paths) for name, paths in used.items() if name not in STAND_IN and name not in OWN}
    assert not unlisted, f"Lightning uses fit-loop attributes a stand-in does not answer: {unlisted}"
    assert not set(STAND_IN) & set(OWN)


# ----------------------------------------------------------------------------------------------------------------------
# a research loop wrapping the FitLoop
# ----------------------------------------------------------------------------------------------------------------------
class Rounds(loops.FitWrapperLoop):
    def __init__(self, rounds: int = 2) -> None:
        super().__init__()
        self.rounds = rounds
        self.current_round = 0

    @property
    def done(self) -> bool:
        return self.current_round >= self.rounds

    def advance(self) -> None:
        self.run_fit(1)
        self.current_round += 1


def test_a_research_loop_answers_the_listed_names_with_the_wrapped_fit_loop():
    trainer = alkit.Trainer(max_epochs=3, **QUIET)
    fit_loop = trainer.fit_loop
    loop = Rounds()
    loop.connect(fit_loop)
    trainer.fit_loop = loop
    assert loop.epoch_loop is fit_loop.epoch_loop and loop.epoch_progress is fit_loop.epoch_progress
    assert loop.setup_data == fit_loop.setup_data
    loop.max_batches = 5
    assert fit_loop.max_batches == 5
    loop._combined_loader = None  # Lightning writes it when new data is attached
    assert fit_loop._combined_loader is None
    # min_epochs/max_epochs are the wrapper's own (the number of rounds in Flash's API)
    assert loop.max_epochs == 3
    loop.max_epochs = 10
    assert fit_loop.max_epochs == 3


def test_a_misspelled_attribute_of_a_research_loop_is_its_own_not_the_wrapped_loops():
    trainer = alkit.Trainer(max_epochs=3, **QUIET)
    fit_loop = trainer.fit_loop
    loop = Rounds()
    loop.connect(fit_loop)
    trainer.fit_loop = loop
    with pytest.raises(AttributeError, match="'Rounds' object has no attribute 'epoch_progres'"):
        _ = loop.epoch_progres
    with pytest.raises(AttributeError):
        _ = loop.optim_progress  # an epoch-loop name, not a fit-loop one
    loop.max_batch = 3
    assert loop.__dict__["max_batch"] == 3 and not hasattr(fit_loop, "max_batch")


def test_a_research_loop_without_a_fit_loop_says_how_to_connect_one():
    with pytest.raises(RuntimeError, match=r"wraps no FitLoop: call `loop.connect\(trainer.fit_loop\)`"):
        _ = Rounds().epoch_loop


def test_a_research_loop_trains_through_the_listed_names_only(one_torch_thread):
    trainer = alkit.Trainer(max_epochs=2, **QUIET)
    loop = Rounds(rounds=2)
    loop.connect(trainer.fit_loop)
    trainer.fit_loop = loop
    trainer.fit(ToyClassifier(), toy_dataloader())
    assert loop.current_round == 2 and trainer.current_epoch == 2 and trainer.global_step == 8


class CustomTrainer(alkit.Trainer):
    """A user's Trainer subclass (module level, so that it pickles by name)."""


@pytest.mark.parametrize("trainer_cls", [alkit.Trainer, CustomTrainer])
def test_the_active_loop_is_the_wrapped_fit_loop_while_a_loop_stands_in(trainer_cls):
    """Lightning dispatches on ``trainer._active_loop``'s type; a stand-in answers with the FitLoop it wraps, also
    after the trainer is pickled (``ddp_spawn``) or copied, and a FitLoop assigned back is the active loop again."""
    import copy
    import pickle

    trainer = trainer_cls(max_epochs=1, **QUIET)
    fit_loop = trainer.fit_loop
    trainer.training = True
    assert trainer._active_loop is fit_loop
    loop = Rounds()
    loop.connect(fit_loop)
    trainer.fit_loop = loop
    assert trainer.fit_loop is loop and trainer._active_loop is fit_loop
    assert isinstance(trainer, trainer_cls) and type(trainer).__name__ == trainer_cls.__name__
    for clone in (pickle.loads(pickle.dumps(trainer)), copy.deepcopy(trainer)):
        assert isinstance(clone, trainer_cls) and isinstance(clone.fit_loop, Rounds)
        assert clone._active_loop is clone.fit_loop.stands_in_for
        assert isinstance(clone._active_loop, _seam._FitLoop)
    trainer.fit_loop = fit_loop
    assert type(trainer) is trainer_cls and trainer._active_loop is fit_loop


# ----------------------------------------------------------------------------------------------------------------------
# a loop written from scratch as trainer.fit_loop
# ----------------------------------------------------------------------------------------------------------------------
class FromScratch(loops.Loop):
    """Records what the Trainer has ready when the run starts, then trains a few steps by hand."""

    def __init__(self, steps: int = 6) -> None:
        super().__init__()
        self.steps = steps
        self.taken = 0
        self.seen: dict[str, Any] = {}

    @property
    def done(self) -> bool:
        return self.taken >= self.steps

    def on_run_start(self) -> None:
        trainer = self.trainer
        self.seen = {
            "train_dataloader": trainer.train_dataloader,
            "val_dataloaders": trainer.val_dataloaders,
            "optimizers": list(trainer.optimizers),
            "current_epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
        }
        self.batches = iter(trainer.train_dataloader)

    def advance(self) -> None:
        x, y = next(self.batches)
        optimizer = self.trainer.optimizers[0]
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(self.trainer.lightning_module(x), y).backward()
        optimizer.step()
        self.taken += 1


def test_a_loop_from_scratch_finds_data_and_optimizers_ready(one_torch_thread):
    train, val = toy_dataloader(n=128), toy_dataloader(seed=1)
    model = ToyClassifier()
    before = model.net[0].weight.detach().clone()
    trainer = alkit.Trainer(max_epochs=1, **QUIET)
    loop = FromScratch(steps=6)
    trainer.fit_loop = loop
    trainer.fit(model, train, val)
    seen = loop.seen
    assert seen["train_dataloader"] is not None and seen["train_dataloader"].dataset is train.dataset
    assert seen["val_dataloaders"] is not None and seen["val_dataloaders"].dataset is val.dataset
    assert len(seen["optimizers"]) == 1 and isinstance(seen["optimizers"][0], torch.optim.SGD)
    assert (seen["current_epoch"], seen["global_step"]) == (0, 0)
    assert loop.taken == 6 and not torch.equal(before, model.net[0].weight)


def test_a_loop_from_scratch_answers_listed_names_only():
    trainer = alkit.Trainer(max_epochs=2, **QUIET)
    fit_loop = trainer.fit_loop
    loop = FromScratch()
    trainer.fit_loop = loop
    assert loop.stands_in_for is fit_loop
    assert loop.epoch_loop is fit_loop.epoch_loop and trainer.max_epochs == 2
    loop.max_epochs = 4  # Lightning writes it when fit starts: it reaches the FitLoop stood in for
    assert fit_loop.max_epochs == 4 and "max_epochs" not in vars(loop)
    loop.steps = 3  # the loop's own attribute stays its own
    assert loop.steps == 3 and not hasattr(fit_loop, "steps")
    with pytest.raises(AttributeError, match="'FromScratch' object has no attribute 'epoch_loops'"):
        _ = loop.epoch_loops


def test_reset_dataloader_outside_a_run_is_a_clear_error():
    trainer = alkit.Trainer(max_epochs=1, **QUIET)
    with pytest.raises(RuntimeError, match="reset_train_dataloader\\(\\)` loads the dataloaders of the running"):
        trainer.reset_train_dataloader()


def test_reset_dataloader_with_another_module_is_a_clear_error(one_torch_thread):
    class ResetWithAnother(FromScratch):
        def on_run_start(self) -> None:
            self.trainer.reset_train_dataloader(ToyClassifier())

    trainer = alkit.Trainer(max_epochs=1, **QUIET)
    trainer.fit_loop = ResetWithAnother()
    with pytest.raises(ValueError, match="must be the module the trainer is running"):
        trainer.fit(ToyClassifier(), toy_dataloader())
