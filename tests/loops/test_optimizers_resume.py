"""Resuming inside a multi-optimizer batch continues with the optimizer that had not stepped (1.x
``optim_progress.optimizer_position``), and ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import alkit
from alkit.lightning import pl
from tests._versions import needs_exact_mid_epoch_resume
from tests.quiet import QUIET

N_BATCHES = 4


class Interrupted(Exception):
    pass


def data(identical_batches: bool = False) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4 if identical_batches else N_BATCHES * 4, 3, generator=generator)
    if identical_batches:
        x = x.repeat(N_BATCHES, 1)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


class ThreeParts(pl.LightningModule):
    """Three layers, one optimizer each (SGD with momentum, Adam, SGD: their state must survive the checkpoint).

    Every loss depends on all three layers, so the order of the steps shows in the weights.
    """

    def __init__(self) -> None:
        super().__init__()
        self.parts = torch.nn.ModuleList(torch.nn.Linear(3, 1) for _ in range(3))
        self.calls: list[tuple[int, int, int]] = []  # (epoch, batch_idx, optimizer_idx) of every training_step

    def training_step(self, batch, batch_idx, optimizer_idx):
        self.calls.append((self.current_epoch, batch_idx, optimizer_idx))
        x, y = batch
        prediction = sum(part(x) for part in self.parts)
        return torch.nn.functional.mse_loss(prediction, y) * (optimizer_idx + 1)

    def configure_optimizers(self):
        return [
            torch.optim.SGD(self.parts[0].parameters(), lr=0.05, momentum=0.9),
            torch.optim.Adam(self.parts[1].parameters(), lr=0.01),
            torch.optim.SGD(self.parts[2].parameters(), lr=0.02),
        ]


class SaveAndStopBefore(pl.Callback):
    """Save a checkpoint and stop just before optimizer ``optimizer_idx`` steps on batch ``batch_idx`` of ``epoch``
    (its closure has run: the earlier optimizers of the batch have stepped, this one has not)."""

    def __init__(self, path, epoch: int, batch_idx: int, optimizer_idx: int) -> None:
        self.path, self.at = path, (epoch, batch_idx, optimizer_idx)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        optimizer_idx = next(i for i, o in enumerate(trainer.optimizers) if o is optimizer)
        if (trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_idx, optimizer_idx) == self.at:
            trainer.save_checkpoint(self.path)
            raise Interrupted


def fit(max_epochs: int, callbacks=(), ckpt_path=None, identical_batches=False) -> tuple[ThreeParts, alkit.Trainer]:
    torch.manual_seed(0)
    model = ThreeParts()
    trainer = alkit.Trainer(max_epochs=max_epochs, callbacks=list(callbacks), **QUIET)
    trainer.fit(model, data(identical_batches), ckpt_path=ckpt_path)
    return model, trainer


# Resumed mid-epoch, Lightning restarts a plain DataLoader at its first batch (it warns; the same with one
# optimizer). So the interruption falls in the first batch of an epoch, where the resumed run sees the same data as
# the uninterrupted one, or, mid-epoch, in a loader whose batches are all the same.
WHERE = {
    "epoch_start": dict(epoch=1, batch_idx=0, identical_batches=False),
    "mid_epoch": dict(epoch=0, batch_idx=2, identical_batches=True),
}


@pytest.mark.parametrize("where", list(WHERE))
@pytest.mark.parametrize("optimizer_idx", [1, 2], ids=["before_optimizer_1", "before_optimizer_2"])
def test_resume_between_two_optimizers_of_a_batch_equals_an_uninterrupted_run(tmp_path, optimizer_idx, where):
    epoch, batch_idx, identical = WHERE[where].values()
    reference, reference_trainer = fit(max_epochs=3, identical_batches=identical)

    path = tmp_path / "between.ckpt"
    stop = SaveAndStopBefore(path, epoch=epoch, batch_idx=batch_idx, optimizer_idx=optimizer_idx)
    with pytest.raises(Interrupted):
        fit(max_epochs=3, callbacks=[stop], identical_batches=identical)
    saved = torch.load(path, weights_only=False)
    # the optimizer loop's own state says which optimizer is next; Lightning's progress entries are unchanged
    assert saved["loops"]["fit_loop"]["epoch_loop.automatic_optimization.state_dict"] == {
        "optimizer_position": optimizer_idx
    }
    done = 3 * (epoch * N_BATCHES + batch_idx)  # training_step calls before the interrupted batch
    assert saved["global_step"] == done + optimizer_idx  # the optimizers before it stepped on that batch

    resumed, resumed_trainer = fit(max_epochs=3, ckpt_path=path, identical_batches=identical)
    # the interrupted batch resumes with the optimizer that had not stepped, then the run goes on as usual
    assert resumed.calls[: 3 - optimizer_idx] == [(epoch, batch_idx, i) for i in range(optimizer_idx, 3)]
    assert resumed.calls[3 - optimizer_idx :] == reference.calls[done + 3 :]
    assert resumed_trainer.global_step == reference_trainer.global_step == 3 * 3 * N_BATCHES
    for name, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    for ours, theirs in zip(resumed_trainer.optimizers, reference_trainer.optimizers, strict=True):
        for key, value in theirs.state_dict()["state"].items():
            for field, tensor in value.items():
                assert torch.equal(torch.as_tensor(tensor), torch.as_tensor(ours.state_dict()["state"][key][field]))


@needs_exact_mid_epoch_resume
def test_checkpoint_at_a_batch_end_starts_the_next_batch_with_the_first_optimizer(tmp_path):
    """A checkpoint written between batches (ModelCheckpoint) records no position: nothing is mid-batch."""
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3 * 2, save_top_k=-1)
    torch.manual_seed(0)
    trainer = alkit.Trainer(max_epochs=1, callbacks=[checkpoint], **{**QUIET, "enable_checkpointing": True})
    trainer.fit(ThreeParts(), data())
    path = next(tmp_path.glob("*step=6.ckpt"))
    saved = torch.load(path, weights_only=False)
    assert saved["loops"]["fit_loop"]["epoch_loop.automatic_optimization.state_dict"] == {}

    resumed, _ = fit(max_epochs=1, ckpt_path=path)
    assert resumed.calls == [(0, batch_idx, i) for batch_idx in (2, 3) for i in range(3)]
