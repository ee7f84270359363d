"""Several optimizers under automatic optimization, as in Lightning 1.x: ``optimizer_idx``, 1.x hook signatures,
the ``"frequency"`` key, and what ``on_train_batch_end`` receives."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import alkit
from alkit import loops
from alkit.lightning import pl
from alkit.loops.utilities import prepare_outputs_training_batch_end, recording_optimizer_frequencies
from tests.quiet import QUIET


def data(n_batches: int = 4) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n_batches * 4, 3, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


class Parts(pl.LightningModule):
    """One linear layer per optimizer; records every ``training_step`` call as ``(batch_idx, optimizer_idx)``."""

    def __init__(self, n_optimizers: int = 2) -> None:
        super().__init__()
        self.parts = torch.nn.ModuleList(torch.nn.Linear(3, 1) for _ in range(n_optimizers))
        self.calls: list[tuple[int, int]] = []

    def training_step(self, batch, batch_idx, optimizer_idx=0):
        self.calls.append((batch_idx, optimizer_idx))
        x, y = batch
        return torch.nn.functional.mse_loss(self.parts[optimizer_idx](x), y)

    def configure_optimizers(self):
        return [torch.optim.SGD(part.parameters(), lr=0.1) for part in self.parts]


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


# ----------------------------------------------------------------------------------------------------------------------
# optimizer_idx in training_step
# ----------------------------------------------------------------------------------------------------------------------
def test_defaulted_optimizer_idx_with_one_optimizer_trains_like_lightning_without_it():
    """1.x passed ``optimizer_idx`` only with several optimizers: with one, the default is used and the run is
    Lightning's own (bit-identical weights to ``pytorch_lightning.Trainer`` on the same step without the argument)."""

    class WithoutIndex(Parts):
        def training_step(self, batch, batch_idx):
            return super().training_step(batch, batch_idx)

    runs = {}
    for trainer_cls, model_cls in ((pl.Trainer, WithoutIndex), (alkit.Trainer, Parts)):
        torch.manual_seed(0)
        model = model_cls(n_optimizers=1)
        trainer_cls(max_epochs=2, **QUIET).fit(model, data())
        runs[model_cls] = model
    assert runs[Parts].calls == [(b, 0) for b in range(4)] * 2
    for name, value in weights(runs[WithoutIndex]).items():
        assert torch.equal(value, runs[Parts].state_dict()[name]), name


def test_required_optimizer_idx_with_one_optimizer_is_a_clear_error():
    class Required(Parts):
        def training_step(self, batch, batch_idx, optimizer_idx):
            return super().training_step(batch, batch_idx, optimizer_idx)

    with pytest.raises(ValueError, match="requires `optimizer_idx`.*single optimizer"):
        alkit.Trainer(max_epochs=1, **QUIET).fit(Required(n_optimizers=1), data())


def test_several_optimizers_step_in_turn_on_every_batch():
    model = Parts(n_optimizers=3)
    before = weights(model)
    trainer = alkit.Trainer(max_epochs=1, **QUIET)
    trainer.fit(model, data())
    assert model.calls == [(b, i) for b in range(4) for i in range(3)]
    assert trainer.global_step == 12  # every optimizer step counts, as in 1.x
    assert all(not torch.equal(before[name], value) for name, value in model.state_dict().items())


def test_several_optimizers_without_optimizer_idx_is_a_clear_error():
    class NoIndex(Parts):
        def training_step(self, batch, batch_idx):
            return super().training_step(batch, batch_idx)

    with pytest.raises(ValueError, match="defines 2 optimizers but `training_step` is missing the `optimizer_idx`"):
        alkit.Trainer(max_epochs=1, **QUIET).fit(NoIndex(), data())


def test_a_loss_not_computed_from_the_optimizers_parameters_is_a_clear_error():
    """With toggling, a loss of the other optimizer's parameters has no graph: say so instead of autograd's
    bare "element 0 of tensors does not require grad"."""

    class WrongLoss(Parts):
        def training_step(self, batch, batch_idx, optimizer_idx):
            return super().training_step(batch, batch_idx, 0)  # optimizer 0's loss for both optimizers

    with pytest.raises(RuntimeError, match=r"optimizer_idx=1 does not require grad.*toggling") as raised:
        alkit.Trainer(max_epochs=1, **QUIET).fit(WrongLoss(), data())
    assert "element 0" not in str(raised.value)


# ----------------------------------------------------------------------------------------------------------------------
# 1.x signatures of the optimizer hooks
# ----------------------------------------------------------------------------------------------------------------------
def test_1x_optimizer_step_override_receives_the_optimizer_index():
    """The 1.x docs' alternating schedule: the second optimizer steps every other batch."""

    class Alternating(Parts):
        def __init__(self) -> None:
            super().__init__()
            self.steps: list[tuple] = []
            self.part_1_after_batch: list[torch.Tensor] = []

        def optimizer_step(
            self, epoch, batch_idx, optimizer, optimizer_idx, optimizer_closure, on_tpu=False, using_lbfgs=False
        ):
            wrapped = optimizer.optimizer is self.trainer.optimizers[optimizer_idx]
            self.steps.append((epoch, batch_idx, optimizer_idx, on_tpu, using_lbfgs, wrapped))
            if optimizer_idx == 1 and batch_idx % 2:
                optimizer_closure()  # training_step + backward, no step
            else:
                optimizer.step(closure=optimizer_closure)

        def on_train_batch_end(self, outputs, batch, batch_idx):
            self.part_1_after_batch.append(self.parts[1].weight.detach().clone())

    model = Alternating()
    initial = model.parts[1].weight.detach().clone()
    alkit.Trainer(max_epochs=1, **QUIET).fit(model, data())
    assert model.steps == [(0, b, i, False, False, True) for b in range(4) for i in range(2)]
    after = [initial, *model.part_1_after_batch]
    changed = [not torch.equal(after[b], after[b + 1]) for b in range(4)]
    assert changed == [True, False, True, False]


def test_optimizer_step_overrides_with_kwargs_or_lightning_2_signature():
    class WithKwargs(Parts):
        seen: list

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_idx, optimizer_closure, **kwargs):
            self.seen.append((optimizer_idx, sorted(kwargs)))
            optimizer.step(closure=optimizer_closure)

    class Lightning2(Parts):
        seen: list

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
            self.seen.append(next(i for i, o in enumerate(self.trainer.optimizers) if o is optimizer.optimizer))
            optimizer.step(closure=optimizer_closure)

    with_kwargs, lightning_2 = WithKwargs(), Lightning2()
    with_kwargs.seen, lightning_2.seen = [], []
    alkit.Trainer(max_epochs=1, limit_train_batches=2, **QUIET).fit(with_kwargs, data())
    alkit.Trainer(max_epochs=1, limit_train_batches=2, **QUIET).fit(lightning_2, data())
    assert with_kwargs.seen == [(i, ["on_tpu", "using_lbfgs"]) for _ in range(2) for i in range(2)]
    assert lightning_2.seen == [0, 1, 0, 1]  # each optimizer's own LightningOptimizer


def test_1x_zero_grad_and_toggle_overrides_receive_the_optimizer_index():
    class Legacy(Parts):
        def __init__(self) -> None:
            super().__init__()
            self.zero_grads: list[int] = []
            self.toggles: list[tuple[str, int]] = []

        def optimizer_zero_grad(self, epoch, batch_idx, optimizer, optimizer_idx):
            self.zero_grads.append(optimizer_idx)
            optimizer.zero_grad()

        def toggle_optimizer(self, optimizer, optimizer_idx):
            self.toggles.append(("toggle", optimizer_idx))
            super().toggle_optimizer(optimizer)

        def untoggle_optimizer(self, optimizer_idx):
            self.toggles.append(("untoggle", optimizer_idx))
            super().untoggle_optimizer(self.trainer.optimizers[optimizer_idx])

    model = Legacy()
    alkit.Trainer(max_epochs=1, limit_train_batches=2, **QUIET).fit(model, data())
    assert model.zero_grads == [0, 1, 0, 1]
    assert model.toggles == [(kind, i) for _ in range(2) for i in range(2) for kind in ("toggle", "untoggle")]


# ----------------------------------------------------------------------------------------------------------------------
# "frequency" (WGAN's n_critic)
# ----------------------------------------------------------------------------------------------------------------------
class Critic(Parts):
    """``configure_optimizers`` with 1.x's ``"frequency"`` keys: the critic 3 batches, then the generator 1."""

    def configure_optimizers(self):
        critic, generator = super().configure_optimizers()
        return [{"optimizer": critic, "frequency": 3}, {"optimizer": generator, "frequency": 1}]


def fit_critic(trainer: alkit.Trainer) -> Critic:
    model = Critic()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*unsupported keys.*")  # the key is not ignored any more
        trainer.fit(model, data(n_batches=5))
    return model


def test_frequencies_make_the_optimizers_take_turns():
    trainer = alkit.Trainer(max_epochs=2, **QUIET)
    with recording_optimizer_frequencies():
        model = fit_critic(trainer)
    # within each epoch (1.x counts the batch index within the epoch): 3 critic batches, 1 generator batch, ...
    assert model.calls == [(0, 0), (1, 0), (2, 0), (3, 1), (4, 0)] * 2
    assert trainer.global_step == 10  # one optimizer step per batch


def test_alkit_trainer_honours_frequencies():
    model = fit_critic(alkit.Trainer(max_epochs=1, **QUIET))
    assert model.calls == [(0, 0), (1, 0), (2, 0), (3, 1), (4, 0)]


def test_a_frequency_for_some_optimizers_only_is_an_error():
    class Partial(Parts):
        def configure_optimizers(self):
            first, second = super().configure_optimizers()
            return [{"optimizer": first, "frequency": 2}, {"optimizer": second}]

    with recording_optimizer_frequencies(), pytest.raises(ValueError, match="A frequency must be given to each"):
        alkit.Trainer(max_epochs=1, **QUIET).fit(Partial(), data())


def test_the_frequency_cycle_itself():
    optimizers = ["a", "b", "c"]
    active = [loops.utilities.get_active_optimizers(optimizers, [2, 0, 1], b) for b in range(7)]
    assert active == [[(0, "a")], [(0, "a")], [(2, "c")]] * 2 + [[(0, "a")]]
    assert loops.utilities.get_active_optimizers(optimizers, [], 5) == [(0, "a"), (1, "b"), (2, "c")]
    assert loops.utilities._get_active_optimizers is loops.utilities.get_active_optimizers  # the 1.x name


# ----------------------------------------------------------------------------------------------------------------------
# what on_train_batch_end receives
# ----------------------------------------------------------------------------------------------------------------------
def test_batch_end_outputs_have_1x_shapes():
    automatic, manual = Parts(), Parts()
    manual.automatic_optimization = False
    a, b = {"loss": 1}, {"loss": 2, "extra": 3}
    # several optimizers: a list in optimizer order, skipped (or inactive) optimizers left out
    assert prepare_outputs_training_batch_end([{0: a, 1: b}], automatic, 2) == [a, b]
    assert prepare_outputs_training_batch_end([{1: b}], automatic, 2) == [b]
    assert prepare_outputs_training_batch_end([], automatic, 2) == []
    # one optimizer, or manual optimization: the dict itself, {} when the step was skipped (Lightning 2's)
    assert prepare_outputs_training_batch_end([{0: a}], automatic, 1) == a
    assert prepare_outputs_training_batch_end([], automatic, 1) == {}
    assert prepare_outputs_training_batch_end([b], manual, 2) == b
    assert prepare_outputs_training_batch_end([], manual, 1) == {}


class RecordBatchEnd(pl.Callback):
    def __init__(self) -> None:
        self.outputs: list = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.outputs.append(outputs)


def test_on_train_batch_end_receives_one_dict_per_optimizer():
    record = RecordBatchEnd()
    alkit.Trainer(max_epochs=1, limit_train_batches=2, callbacks=[record], **QUIET).fit(Parts(), data())
    assert [[sorted(o) for o in outputs] for outputs in record.outputs] == [[["loss"], ["loss"]]] * 2
