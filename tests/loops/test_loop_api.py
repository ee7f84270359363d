"""The public loop contract and the seven things the loop API must make possible."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

import alkit
from alkit import loops
from alkit.examples._toy import ToyClassifier, toy_dataloader
from alkit.lightning import pl
from tests.interrupt import KillAtEpoch, Killed
from tests.quiet import QUIET

ModelCheckpoint = pl.callbacks.ModelCheckpoint


# ----------------------------------------------------------------------------------------------------------------------
# the Loop contract
# ----------------------------------------------------------------------------------------------------------------------
class RecordingLoop(loops.Loop):
    def __init__(self, iterations: int = 3, stop_at: int | None = None) -> None:
        super().__init__()
        self.iterations, self.stop_at = iterations, stop_at
        self.calls: list[tuple] = []
        self.count = 0

    @property
    def done(self) -> bool:
        return self.count >= self.iterations

    def reset(self) -> None:
        self.calls.append(("reset",))
        self.count = 0

    def on_run_start(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("on_run_start", args, kwargs))

    def on_advance_start(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("on_advance_start", args, kwargs))

    def advance(self, *args: Any, **kwargs: Any) -> None:
        if self.stop_at is not None and self.count == self.stop_at:
            raise StopIteration
        self.calls.append(("advance", args, kwargs))
        self.count += 1

    def on_advance_end(self) -> None:
        self.calls.append(("on_advance_end",))

    def on_run_end(self) -> Any:
        self.calls.append(("on_run_end",))
        return f"ran {self.count}"


def test_run_calls_the_contract_in_order_and_forwards_arguments():
    loop = RecordingLoop(iterations=2)
    assert loop.run(1, key="v") == "ran 2"
    step = [("on_advance_start", (1,), {"key": "v"}), ("advance", (1,), {"key": "v"}), ("on_advance_end",)]
    assert loop.calls == [("reset",), ("on_run_start", (1,), {"key": "v"}), *step, *step, ("on_run_end",)]


def test_stop_iteration_ends_the_run_and_on_run_end_still_runs():
    loop = RecordingLoop(iterations=10, stop_at=1)
    assert loop.run() == "ran 1"
    assert loop.calls[-1] == ("on_run_end",)


def test_skip_returns_on_skip_without_running():
    class Skipping(RecordingLoop):
        @property
        def skip(self) -> bool:
            return True

        def on_skip(self) -> str:
            return "skipped"

    loop = Skipping()
    assert loop.run() == "skipped"
    assert loop.calls == []
    assert RecordingLoop().skip is False


def test_loop_is_constructible_without_trainer_and_says_so():
    loop = loops.FitLoop(max_epochs=2)
    assert not loop.is_attached
    with pytest.raises(RuntimeError, match="The loop is not attached to a Trainer"):
        _ = loop.trainer
    with pytest.raises(RuntimeError, match="TrainingEpochLoop"):
        _ = loop.epoch_loop.trainer


def test_attaching_a_loop_attaches_all_children_and_later_ones_when_the_trainer_runs():
    trainer = alkit.Trainer(**QUIET)
    fit_loop = loops.FitLoop(max_epochs=1)
    trainer.fit_loop = fit_loop
    assert fit_loop.epoch_loop.batch_loop.optimizer_loop.trainer is trainer
    assert fit_loop.epoch_loop.val_loop.epoch_loop.trainer is trainer
    later = loops.TrainingEpochLoop()
    trainer.fit_loop.epoch_loop = later  # a child connected after attaching: attached when the trainer runs (1.x)
    assert later.parent is fit_loop
    with pytest.raises(RuntimeError, match="The loop is not attached to a Trainer"):
        _ = later.trainer
    trainer.validate(ToyClassifier(), toy_dataloader(n=8), verbose=False)
    assert later.trainer is trainer and later.batch_loop.manual_loop.trainer is trainer


def test_attaching_something_that_is_not_a_loop_is_a_clear_error():
    trainer = alkit.Trainer(**QUIET)
    with pytest.raises(TypeError, match=r"`trainer.fit_loop` must be a loop .* got dict"):
        trainer.fit_loop = {}
    with pytest.raises(TypeError, match=r"`trainer.test_loop` must be a loop"):
        trainer.test_loop = "loop"
    with pytest.raises(TypeError, match=r"connect\(epoch_loop=...\)` expects a loop .* got int"):
        trainer.fit_loop.connect(epoch_loop=3)


def test_connect_and_replace_reject_unknown_child_names():
    fit_loop = loops.FitLoop()
    with pytest.raises(ValueError, match=r"no child loop named 'epoch_lop'.*\['epoch_loop'\]"):
        fit_loop.connect(epoch_lop=loops.TrainingEpochLoop())
    with pytest.raises(ValueError, match=r"no child loop named 'batch_loop'"):
        fit_loop.replace(batch_loop=loops.TrainingBatchLoop)
    with pytest.raises(TypeError, match="not a loop"):
        fit_loop.replace(epoch_loop=dict)


# ----------------------------------------------------------------------------------------------------------------------
# 1. subclassing a built-in loop
# ----------------------------------------------------------------------------------------------------------------------
def test_subclassed_fit_loop_adds_behaviour():
    from alkit.examples.custom_fit_loop import EpochSummaryFitLoop

    trainer = alkit.Trainer(max_epochs=3, **QUIET)
    trainer.fit_loop = EpochSummaryFitLoop(max_epochs=3)
    trainer.fit(ToyClassifier(), toy_dataloader())
    loop = trainer.fit_loop
    assert loop.advances == 3 and [h["epoch"] for h in loop.history] == [0, 1, 2]
    assert loop.history[-1]["train_loss"] < loop.history[0]["train_loss"]
    assert trainer.current_epoch == 3 and trainer.global_step == 12


# ----------------------------------------------------------------------------------------------------------------------
# 2. a loop from scratch as the fit loop
# ----------------------------------------------------------------------------------------------------------------------
def test_loop_from_scratch_as_fit_loop():
    from alkit.examples.from_scratch_loop import TrainUntilLossLoop

    model = ToyClassifier()
    before = copy.deepcopy(model.state_dict())
    trainer = alkit.Trainer(**QUIET)
    trainer.fit_loop = TrainUntilLossLoop(target_loss=0.35, max_steps=300)
    trainer.fit(model, toy_dataloader())
    assert 0 < trainer.fit_loop.steps < 300
    assert trainer.fit_loop.running_loss < 0.35
    assert not torch.equal(before["net.0.weight"], model.state_dict()["net.0.weight"])


# ----------------------------------------------------------------------------------------------------------------------
# 3. the validation-guided gradient step, and 4. replace() keeping limits and children
# ----------------------------------------------------------------------------------------------------------------------
def expected_first_update(model: ToyClassifier, train: Any, val: Any) -> dict[str, torch.Tensor]:
    model = copy.deepcopy(model)
    x, y = next(iter(train))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    with torch.no_grad():
        xs, ys = zip(*val, strict=True)
        val_loss = torch.nn.functional.cross_entropy(model(torch.cat(xs)), torch.cat(ys))
        return {n: p - model.lr * p.grad / val_loss for n, p in model.named_parameters()}


@pytest.mark.parametrize("attach", ["assign", "replace"])
def test_validation_guided_gradient_step(attach):
    from alkit.examples.validation_guided_descent import ValidationGuidedEpochLoop

    torch.manual_seed(0)
    model = ToyClassifier()
    train, val = toy_dataloader(), toy_dataloader(seed=1)
    expected = expected_first_update(model, train, val)
    trainer = alkit.Trainer(max_steps=1, num_sanity_val_steps=0, **QUIET)
    if attach == "assign":
        trainer.fit_loop.epoch_loop = ValidationGuidedEpochLoop(max_steps=1)
    else:
        trainer.fit_loop.replace(epoch_loop=ValidationGuidedEpochLoop)
    trainer.fit(model, train, val)
    assert trainer.global_step == 1
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter, expected[name])


def test_replace_keeps_limits_and_children_and_starts_its_own_progress_fresh():
    """As Lightning 1.x: built from the replaced loop's arguments, its children connected; a new loop's progress."""
    from alkit.examples.validation_guided_descent import ValidationGuidedEpochLoop

    trainer = alkit.Trainer(min_steps=2, max_steps=7, **QUIET)
    old = trainer.fit_loop.epoch_loop
    old.batch_progress.total.completed = 5
    trainer.fit_loop.replace(epoch_loop=ValidationGuidedEpochLoop)
    new = trainer.fit_loop.epoch_loop
    assert type(new) is ValidationGuidedEpochLoop and new is not old
    assert (new.min_steps, new.max_steps) == (2, 7)
    assert new.batch_loop is old.batch_loop and new.val_loop is old.val_loop
    assert new.batch_progress.total.completed == 0
    assert new.trainer is trainer and new.parent is trainer.fit_loop
    assert trainer.max_steps == 7


# ----------------------------------------------------------------------------------------------------------------------
# 5. several optimizers under automatic optimization
# ----------------------------------------------------------------------------------------------------------------------
def test_multiple_optimizers_are_stepped_in_turn():
    from alkit.examples.multiple_optimizers import TwoOptimizerClassifier

    model = TwoOptimizerClassifier()
    encoder, head = copy.deepcopy(model.encoder.state_dict()), copy.deepcopy(model.head.state_dict())
    trainer = alkit.Trainer(max_epochs=1, **QUIET)
    trainer.fit(model, toy_dataloader())  # 4 batches
    assert model.seen_optimizer_indices == [0, 1] * 4
    assert trainer.global_step == 8  # every optimizer step counts, as in Lightning 1.x
    assert not torch.equal(encoder["weight"], model.encoder.weight)
    assert not torch.equal(head["weight"], model.head.weight)
    assert all(len(opt.state) > 0 for opt in trainer.optimizers[1:])  # Adam really stepped


def test_optimizer_idx_with_a_single_optimizer_is_a_clear_error():
    class OneOptimizer(ToyClassifier):
        def training_step(self, batch, batch_idx, optimizer_idx):
            return super().training_step(batch, batch_idx)

    trainer = alkit.Trainer(max_epochs=1, **QUIET)
    with pytest.raises(ValueError, match="requires `optimizer_idx`, but `configure_optimizers` returned a single"):
        trainer.fit(OneOptimizer(), toy_dataloader())


# ----------------------------------------------------------------------------------------------------------------------
# 6. YieldLoop
# ----------------------------------------------------------------------------------------------------------------------
def test_yield_loop_runs_the_generator_once_per_batch_and_steps_both_optimizers():
    from alkit.examples.yield_gan import TinyGAN

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(48, 2)), batch_size=16)
    model = TinyGAN()
    generator, discriminator = copy.deepcopy(model.generator), copy.deepcopy(model.discriminator)
    trainer = alkit.Trainer(max_epochs=2, **QUIET)
    trainer.fit_loop.epoch_loop.batch_loop.connect(optimizer_loop=loops.YieldLoop())
    trainer.fit(model, data)
    assert model.generator_calls == 6  # once per batch, not once per optimizer
    assert trainer.global_step == 12
    assert not torch.equal(generator[0].weight, model.generator[0].weight)
    assert not torch.equal(discriminator[0].weight, model.discriminator[0].weight)
    assert {"generator_loss", "discriminator_loss"} <= set(trainer.callback_metrics)


@pytest.mark.parametrize("yields, message", [(1, "yielded 1 loss"), (3, "yielded more losses")])
def test_yield_loop_wrong_number_of_yields(yields, message):
    from alkit.examples.yield_gan import TinyGAN

    class WrongYields(TinyGAN):
        def training_step(self, batch, batch_idx):
            for _ in range(yields):
                yield self.discriminator(self.generate(len(batch[0]))).mean()

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 2)), batch_size=16)
    trainer = alkit.Trainer(max_epochs=1, **QUIET)
    trainer.fit_loop.epoch_loop.batch_loop.connect(optimizer_loop=loops.YieldLoop())
    with pytest.raises(RuntimeError, match=message):
        trainer.fit(WrongYields(), data)


def test_generator_training_step_without_yield_loop_is_a_clear_error():
    from alkit.examples.yield_gan import TinyGAN

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 2)), batch_size=16)
    with pytest.raises(TypeError, match="returned a generator.*YieldLoop"):
        alkit.Trainer(max_epochs=1, **QUIET).fit(TinyGAN(), data)


def test_yield_loop_needs_a_yielding_step():
    trainer = alkit.Trainer(max_epochs=1, **QUIET)
    trainer.fit_loop.epoch_loop.batch_loop.connect(optimizer_loop=loops.YieldLoop())
    with pytest.raises(TypeError, match="does not yield"):
        trainer.fit(ToyClassifier(), toy_dataloader())


# ----------------------------------------------------------------------------------------------------------------------
# 7. loop state survives save -> kill -> fit(ckpt_path=...)
# ----------------------------------------------------------------------------------------------------------------------
def test_custom_loop_state_survives_a_checkpoint(tmp_path):
    from alkit.examples.stateful_loop import EpochCountingFitLoop

    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = alkit.Trainer(
        max_epochs=4,
        default_root_dir=tmp_path,
        callbacks=[checkpoint, KillAtEpoch(2)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit_loop = EpochCountingFitLoop(max_epochs=4)
    with pytest.raises(Killed):
        trainer.fit(ToyClassifier(), toy_dataloader())
    assert trainer.fit_loop.epochs_completed == 2
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert saved["loops"]["fit_loop"]["state_dict"]["epochs_completed"] == 2

    resumed = alkit.Trainer(max_epochs=4, default_root_dir=tmp_path, **QUIET)
    resumed.fit_loop = EpochCountingFitLoop(max_epochs=4)
    resumed.fit(ToyClassifier(), toy_dataloader(), ckpt_path=tmp_path / "last.ckpt")
    assert resumed.fit_loop.was_restarted
    assert resumed.fit_loop.epochs_completed == 4
    assert resumed.current_epoch == 4 and resumed.global_step == 16


def test_loops_survive_pickling_and_deepcopy():
    """ddp_spawn pickles the trainer with its loops; parent links must come back."""
    import pickle

    fit_loop = loops.FitLoop(max_epochs=2)
    for clone in (pickle.loads(pickle.dumps(fit_loop)), copy.deepcopy(fit_loop)):
        assert clone.max_epochs == 2
        assert clone.epoch_loop.parent is clone
        assert clone.epoch_loop.val_loop.epoch_loop.parent is clone.epoch_loop.val_loop


def test_ddp_spawn_with_two_cpu_processes_matches_lightning(tmp_path):
    """The loops survive ddp_spawn (pickled into 2 processes) and train exactly as Lightning's do there."""
    weights = {}
    for trainer_cls in (pl.Trainer, alkit.Trainer):
        torch.manual_seed(0)
        model = ToyClassifier()
        trainer = trainer_cls(
            max_epochs=2, strategy="ddp_spawn", accelerator="cpu", devices=2, default_root_dir=tmp_path, **QUIET
        )
        trainer.fit(model, toy_dataloader())
        weights[trainer_cls] = model.state_dict()
    for name, value in weights[pl.Trainer].items():
        assert torch.equal(value, weights[alkit.Trainer][name]), name


@pytest.mark.parametrize(
    "name", ["custom_fit_loop", "from_scratch_loop", "validation_guided_descent", "multiple_optimizers", "yield_gan"]
)
def test_examples_run_with_the_default_logger(name, tmp_path):
    """Examples run with the default logger: Lightning 1.9's YieldLoop example crashed without TensorBoard."""
    import importlib

    result = importlib.import_module(f"alkit.examples.{name}").main(str(tmp_path))
    assert result
    assert (tmp_path / "lightning_logs" / "version_0").is_dir()  # the default logger was set up and used
    if name != "from_scratch_loop":  # a loop from scratch calls no hooks, so ModelCheckpoint never runs
        assert list(tmp_path.rglob("*.ckpt"))  # default checkpointing wrote its file
