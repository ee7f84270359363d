"""``Loop.replace`` as in Lightning 1.x, and a 1.x-style k-fold loop that replaces its fit loop every fold.

1.x ``replace(name=Class)`` builds a *new* loop from the replaced loop's constructor arguments and connects the
replaced loop's children to it: the new loop's own progress starts at zero (a fit loop replaced after a fold is not
already ``done``), while what the Trainer's connectors set on the old loop (its data source) keeps feeding it.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

import alkit
from alkit import loops
from alkit.examples._toy import ToyClassifier, toy_dataloader
from alkit.lightning import pl
from tests.quiet import QUIET


# ----------------------------------------------------------------------------------------------------------------------
# replace() semantics
# ----------------------------------------------------------------------------------------------------------------------
class PatientEpochLoop(loops.TrainingEpochLoop):
    """An epoch loop with one more constructor argument, stored under its own name (readable back)."""

    def __init__(self, min_steps: int | None = None, max_steps: int = -1, patience: int = 3) -> None:
        super().__init__(min_steps=min_steps, max_steps=max_steps)
        self.patience = patience


def test_a_class_is_built_from_the_replaced_loops_constructor_arguments():
    trainer = alkit.Trainer(max_epochs=1, **QUIET)
    trainer.fit_loop.epoch_loop = PatientEpochLoop(min_steps=2, max_steps=9, patience=7)
    trainer.fit_loop.replace(epoch_loop=PatientEpochLoop)
    new = trainer.fit_loop.epoch_loop
    assert (new.min_steps, new.max_steps, new.patience) == (2, 9, 7)


def test_the_new_loops_own_progress_starts_fresh_and_the_children_move_across():
    trainer = alkit.Trainer(max_epochs=3, **QUIET)
    trainer.fit(ToyClassifier(), toy_dataloader())
    old = trainer.fit_loop
    assert old.done and old.epoch_progress.current.completed == 3
    outer = loops.FitWrapperLoop()
    outer.connect(old)
    outer.replace(fit_loop=loops.FitLoop)
    new = outer.fit_loop
    assert type(new) is loops.FitLoop and new is not old
    assert new.max_epochs == old.max_epochs == 3
    assert new.epoch_progress.current.completed == 0 and new.epoch_progress.total.completed == 0
    assert new.epoch_loop is old.epoch_loop and new.epoch_loop.parent is new
    assert new.epoch_loop.batch_progress.total.completed == 12  # the child keeps its own progress (as in 1.x)
    assert new.trainer is trainer
    assert outer.stands_in_for is new  # the stand-in now answers Lightning with the new fit loop


def test_an_instance_gets_the_children_it_has_a_slot_for_and_keeps_its_own_state():
    trainer = alkit.Trainer(max_epochs=1, **QUIET)
    old = trainer.fit_loop.epoch_loop
    new = PatientEpochLoop(max_steps=5, patience=1)
    own_batch_loop = new.batch_loop
    new.batch_progress.total.completed = 4
    trainer.fit_loop.replace(epoch_loop=new)
    assert trainer.fit_loop.epoch_loop is new and new.parent is trainer.fit_loop and new.trainer is trainer
    assert new.batch_loop is old.batch_loop is not own_batch_loop and new.val_loop is old.val_loop
    assert (new.max_steps, new.patience) == (5, 1)
    assert new.batch_progress.total.completed == 4  # an instance's state is its own


def test_a_required_argument_the_replaced_loop_cannot_give_is_a_clear_error():
    class NeedsSchedule(loops.TrainingEpochLoop):
        def __init__(self, schedule: list, min_steps: int | None = None, max_steps: int = -1) -> None:
            super().__init__(min_steps=min_steps, max_steps=max_steps)
            self.schedule = schedule

    trainer = alkit.Trainer(max_epochs=1, **QUIET)
    old = trainer.fit_loop.epoch_loop
    with pytest.raises(TypeError, match=r"required argument\(s\) \['schedule'\].*Pass an instance instead"):
        trainer.fit_loop.replace(epoch_loop=NeedsSchedule)
    assert trainer.fit_loop.epoch_loop is old  # nothing was replaced


def test_a_class_that_does_not_take_the_replaced_loops_arguments_is_a_clear_error():
    class NoLimits(loops.TrainingEpochLoop):
        def __init__(self) -> None:
            super().__init__()

    trainer = alkit.Trainer(max_steps=5, **QUIET)
    with pytest.raises(TypeError, match=r"NoLimits does not take \['min_steps', 'max_steps'\].*replace\(epoch_loop="):
        trainer.fit_loop.replace(epoch_loop=NoLimits)
    trainer.fit_loop.replace(epoch_loop=NoLimits())  # an instance is always accepted
    assert type(trainer.fit_loop.epoch_loop) is NoLimits


def test_a_replaced_validation_loop_keeps_its_role_and_data():
    """What Lightning's connectors set on the replaced loop (role, data source) moves to the new one."""

    class CountingEvaluationLoop(loops.EvaluationLoop):
        runs = 0

        def on_run_start(self) -> None:
            type(self).runs += 1
            super().on_run_start()

    trainer = alkit.Trainer(max_epochs=2, num_sanity_val_steps=0, **QUIET)
    trainer.fit_loop.epoch_loop.replace(val_loop=CountingEvaluationLoop)
    model = ToyClassifier()
    trainer.fit(model, toy_dataloader(), toy_dataloader(seed=1))
    assert CountingEvaluationLoop.runs == 2
    assert trainer.fit_loop.epoch_loop.val_loop.inference_mode is False  # read back from the replaced val loop
    assert {"val_loss", "val_acc"} <= set(trainer.callback_metrics)


# ----------------------------------------------------------------------------------------------------------------------
# a k-fold loop written the Lightning 1.x way: it replaces its fit loop after every fold
# ----------------------------------------------------------------------------------------------------------------------
class FoldedData(pl.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        y = torch.randint(0, 2, (60,), generator=generator)
        self.dataset = TensorDataset(torch.randn(60, 8, generator=generator) + 1.5 * y[:, None].float(), y)
        self.train_fold: Subset | None = None

    def setup_folds(self, num_folds: int) -> None:
        indices = torch.arange(len(self.dataset))
        self.splits = [indices[indices % num_folds != k].tolist() for k in range(num_folds)]

    def setup_fold_index(self, fold_index: int) -> None:
        self.train_fold = Subset(self.dataset, self.splits[fold_index])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_fold, batch_size=16)


class OneXKFoldLoop(loops.Loop):
    """The structure of Lightning 1.9's k-fold example: fit, then ``self.replace(fit_loop=FitLoop)``."""

    def __init__(self, num_folds: int) -> None:
        super().__init__()
        self.num_folds = num_folds
        self.current_fold = 0
        self.fold_weights: list[dict[str, torch.Tensor]] = []
        self.epochs_per_fold: list[int] = []
        self.fold_indices: list[list[int]] = []

    @property
    def done(self) -> bool:
        return self.current_fold >= self.num_folds

    def connect(self, fit_loop: Any) -> None:  # type: ignore[override]
        self.fit_loop = fit_loop

    def reset(self) -> None:
        pass

    def on_run_start(self, *args: Any, **kwargs: Any) -> None:
        self.trainer.datamodule.setup_folds(self.num_folds)
        self.initial_weights = copy.deepcopy(self.trainer.lightning_module.state_dict())

    def on_advance_start(self, *args: Any, **kwargs: Any) -> None:
        self.trainer.datamodule.setup_fold_index(self.current_fold)

    def advance(self, *args: Any, **kwargs: Any) -> None:
        self.trainer.reset_train_dataloader()
        self.fold_indices.append(list(self.trainer.train_dataloader.dataset.indices))
        self.fit_loop.run()
        self.epochs_per_fold.append(self.fit_loop.epoch_progress.current.completed)
        self.current_fold += 1

    def on_advance_end(self) -> None:
        self.fold_weights.append(copy.deepcopy(self.trainer.lightning_module.state_dict()))
        self.trainer.lightning_module.load_state_dict(self.initial_weights)
        self.trainer.strategy.setup_optimizers(self.trainer)
        self.replace(fit_loop=loops.FitLoop)


class CatchAllKFoldLoop(OneXKFoldLoop):
    """With the catch-all forwarding Lightning 1.9's example wrote itself (it must keep working)."""

    def __getattr__(self, key: str) -> Any:
        if key not in self.__dict__:
            return getattr(self.fit_loop, key)
        return self.__dict__[key]


@pytest.mark.parametrize("loop_cls", [OneXKFoldLoop, CatchAllKFoldLoop])
@pytest.mark.parametrize("order", ["attach_then_connect", "connect_then_attach"])
def test_a_one_x_kfold_loop_trains_every_fold(loop_cls, order, one_torch_thread):
    torch.manual_seed(0)
    model = ToyClassifier(lr=0.5)
    trainer = alkit.Trainer(max_epochs=2, **QUIET)
    internal_fit_loop = trainer.fit_loop
    loop = loop_cls(3)
    if order == "attach_then_connect":  # the order of Lightning 1.9's example
        trainer.fit_loop = loop
        trainer.fit_loop.connect(internal_fit_loop)
    else:
        loop.connect(internal_fit_loop)
        trainer.fit_loop = loop
    trainer.fit(model, datamodule=FoldedData())

    assert loop.epochs_per_fold == [2, 2, 2]  # every fold trained its epochs: no fit loop was already done
    datamodule = trainer.datamodule
    assert loop.fold_indices == datamodule.splits  # each fold trained on its own data
    initial, folds = loop.initial_weights, loop.fold_weights
    assert len(folds) == 3
    for weights in folds:
        assert not torch.equal(weights["net.0.weight"], initial["net.0.weight"])
    for i in range(3):
        for j in range(i + 1, 3):
            assert not torch.equal(folds[i]["net.0.weight"], folds[j]["net.0.weight"])
    assert loop.stands_in_for is loop.fit_loop and loop.fit_loop is not internal_fit_loop


def test_an_unbuildable_replacement_is_the_exception_1x_code_catches():
    class NeedsFoo(loops.TrainingEpochLoop):
        def __init__(self, foo):
            super().__init__()

    trainer = alkit.Trainer(min_steps=3, max_steps=5)
    with pytest.raises(pl.utilities.exceptions.MisconfigurationException) as caught:
        trainer.fit_loop.replace(epoch_loop=NeedsFoo)
    message = str(caught.value)
    assert isinstance(caught.value, TypeError)
    assert "`FitLoop.replace(NeedsFoo)`" in message and "`__init__`" in message and "`TrainingEpochLoop`" in message
    assert "foo" in message
