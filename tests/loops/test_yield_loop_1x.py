"""Generator ``training_step``s: a 1.x-style YieldLoop written against the 1.x OptimizerLoop API, alkit's
YieldLoop with a shared output, frequencies and a resumed batch."""

from __future__ import annotations

import inspect
from functools import partial

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import alkit
from alkit import loops
from alkit.lightning import pl
from alkit.loops.optimization.optimizer_loop import ClosureResult
from alkit.loops.utilities import recording_optimizer_frequencies
from tests.quiet import QUIET

N_BATCHES = 3


def data(n_batches: int = N_BATCHES) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n_batches * 8, 2, generator=generator) + 2.0), batch_size=8)


class GAN(pl.LightningModule):
    """A GAN on 2-D points; the noise comes from the batch, so two runs on the same data are identical."""

    def __init__(self, discriminator_first: bool = False, share_fake: bool = True) -> None:
        super().__init__()
        self.share_fake = share_fake
        self.generator = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        self.discriminator = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        self.discriminator_first = discriminator_first
        self.generator_calls = 0
        self.losses_computed: list[str] = []

    def generate(self, real: torch.Tensor) -> torch.Tensor:
        self.generator_calls += 1
        return self.generator(real.flip(0) - 2.0)  # "noise" drawn from the batch: deterministic

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        self.losses_computed.append("generator")
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        return bce(self.discriminator(fake), torch.ones(len(fake), 1))

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        self.losses_computed.append("discriminator")
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        return bce(self.discriminator(real), torch.ones(len(real), 1)) + bce(
            self.discriminator(fake.detach()), torch.zeros(len(fake), 1)
        )

    def training_step(self, batch, batch_idx, optimizer_idx=0):
        (real,) = batch
        fake = self.generate(real)  # computed once, before the first yield, shared by both losses
        if self.discriminator_first:
            yield self.discriminator_loss(real, fake)
            yield self.generator_loss(fake)
        else:
            yield self.generator_loss(fake)
            yield self.discriminator_loss(real, fake if self.share_fake else self.generate(real))

    def configure_optimizers(self):
        generator = torch.optim.Adam(self.generator.parameters(), lr=1e-2)
        discriminator = torch.optim.Adam(self.discriminator.parameters(), lr=1e-2)
        return [discriminator, generator] if self.discriminator_first else [generator, discriminator]


class YieldLoop1x(loops.OptimizerLoop):
    """Lightning 1.9.5's ``examples/pl_loops/yielding_training_step.py`` loop, minus its ``training_step_end`` calls
    (a hook Lightning 2 removed): written only against the 1.x ``OptimizerLoop`` API."""

    def __init__(self):
        super().__init__()
        self._generator = None

    def connect(self, **kwargs):
        raise NotImplementedError(f"{self.__class__.__name__} does not connect any child loops.")

    def on_run_start(self, optimizers, kwargs):
        super().on_run_start(optimizers, kwargs)
        if not inspect.isgeneratorfunction(self.trainer.lightning_module.training_step):
            raise RuntimeError("The `LightningModule` does not yield anything in the `training_step`.")
        assert self.trainer.lightning_module.automatic_optimization
        self._generator = self._get_generator(kwargs)

    def _make_step_fn(self, *_):
        return partial(self._training_step, self._generator)

    def _get_generator(self, kwargs, opt_idx=0):
        kwargs = self._build_kwargs(kwargs, opt_idx, hiddens=None)
        return self.trainer.strategy.training_step(*kwargs.values())

    def _training_step(self, generator):
        self.trainer.lightning_module._current_fx_name = "training_step"
        training_step_output = next(generator)
        self.trainer.strategy.post_training_step()
        return ClosureResult.from_training_step_output(training_step_output, self.trainer.accumulate_grad_batches)


def fit(model: GAN, optimizer_loop: loops.OptimizerLoop, max_epochs: int = 2, **kwargs) -> alkit.Trainer:
    trainer = alkit.Trainer(max_epochs=max_epochs, **{**QUIET, **kwargs})
    trainer.fit_loop.epoch_loop.batch_loop.connect(optimizer_loop=optimizer_loop)
    trainer.fit(model, data())
    return trainer


@pytest.mark.parametrize("loop_cls", [YieldLoop1x, loops.YieldLoop], ids=["1x_style", "alkit"])
def test_yield_loop_trains_a_gan_computing_the_fake_once_per_batch(loop_cls):
    torch.manual_seed(0)
    model = GAN()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    trainer = fit(model, loop_cls())
    assert model.generator_calls == 2 * N_BATCHES  # once per batch, not once per optimizer
    assert model.losses_computed == ["generator", "discriminator"] * 2 * N_BATCHES
    assert trainer.global_step == 2 * 2 * N_BATCHES
    assert all(not torch.equal(before[name], value) for name, value in model.state_dict().items())


def test_both_yield_loops_train_identically():
    results = []
    for loop_cls in (YieldLoop1x, loops.YieldLoop):
        torch.manual_seed(0)
        model = GAN()
        fit(model, loop_cls())
        results.append(model.state_dict())
    for name, value in results[0].items():
        assert torch.equal(value, results[1][name]), name


def test_a_shared_output_with_the_discriminator_stepping_first_is_a_clear_error():
    """The fake images are computed while the discriminator's optimizer is toggled: no gradient reaches the
    generator. YieldLoop says so (and how to fix it) instead of autograd's "element 0 ... does not require grad"."""
    model = GAN(discriminator_first=True)
    with pytest.raises(RuntimeError, match=r"optimizer_idx=1 does not require grad.*toggles the optimizers") as raised:
        fit(model, loops.YieldLoop())
    message = str(raised.value)
    assert "before the first `yield`" in message and "element 0" not in message


def test_frequencies_draw_and_discard_the_losses_of_inactive_optimizers():
    class TakingTurns(GAN):
        def configure_optimizers(self):
            generator, discriminator = super().configure_optimizers()
            return [{"optimizer": generator, "frequency": 1}, {"optimizer": discriminator, "frequency": 2}]

    torch.manual_seed(0)
    model = TakingTurns()
    with recording_optimizer_frequencies():
        trainer = fit(model, loops.YieldLoop(), max_epochs=1)
    # batch 0: the generator only (the generator closes before the discriminator's loss); batches 1, 2: the
    # discriminator, whose loss is the second yield (the generator's loss is drawn and discarded)
    assert model.losses_computed == ["generator", "generator", "discriminator", "generator", "discriminator"]
    assert trainer.global_step == N_BATCHES


class Interrupted(Exception):
    pass


class StopBeforeSecondOptimizer(pl.Callback):
    def __init__(self, path) -> None:
        self.path = path

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.current_epoch == 1 and trainer.fit_loop.epoch_loop.batch_idx == 0:
            if optimizer is trainer.optimizers[1]:
                trainer.save_checkpoint(self.path)
                raise Interrupted


@pytest.mark.parametrize("share_fake", [False, True], ids=["fake_per_loss", "shared_fake"])
def test_yield_loop_resumes_between_the_two_optimizers(tmp_path, share_fake):
    torch.manual_seed(0)
    reference = GAN(share_fake=share_fake)
    fit(reference, loops.YieldLoop())

    torch.manual_seed(0)
    with pytest.raises(Interrupted):
        fit(GAN(share_fake=share_fake), loops.YieldLoop(), callbacks=[StopBeforeSecondOptimizer(tmp_path / "mid.ckpt")])
    torch.manual_seed(0)
    resumed = GAN(share_fake=share_fake)
    trainer = alkit.Trainer(max_epochs=2, **QUIET)
    trainer.fit_loop.epoch_loop.batch_loop.connect(optimizer_loop=loops.YieldLoop())
    trainer.fit(resumed, data(), ckpt_path=tmp_path / "mid.ckpt")
    # the resumed batch draws the generator's loss again (discarded) and steps only the discriminator
    assert resumed.losses_computed[:3] == ["generator", "discriminator", "generator"]
    assert trainer.global_step == 2 * 2 * N_BATCHES
    if share_fake:
        # Uninterrupted, a fake computed before the first yield came from the generator *before* its step; the
        # checkpoint holds the generator after it, so the resumed batch's discriminator loss is not the same:
        # YieldLoop's docstring says so. Bit-identity holds when each loss computes what it needs in its segment.
        return
    for name, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
