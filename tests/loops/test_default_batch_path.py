"""With the default loops the batch runs straight through Lightning's optimization; anything 1.x-specific, or a
connected loop of the user's, runs the restored batch and optimizer loops, and switching mid-fit is honoured."""

from __future__ import annotations

import gc
import sys

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import alkit
from alkit.lightning import pl
from alkit.loops import OptimizerLoop, TrainingBatchLoop
from tests.quiet import quiet_trainer


class Small(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(n: int = 24) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g)), 4)


def trainer(**kwargs) -> alkit.Trainer:
    return quiet_trainer(max_epochs=2, **kwargs)


class CountingOptimizerLoop(OptimizerLoop):
    runs = 0

    def on_run_start(self, optimizers, kwargs):
        type(self).runs += 1
        super().on_run_start(optimizers, kwargs)


def test_default_loops_skip_the_loop_protocol_but_keep_progress(monkeypatch):
    calls = []
    original = TrainingBatchLoop.run
    monkeypatch.setattr(TrainingBatchLoop, "run", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    t = trainer()
    t.fit(Small(), loader())
    assert calls == []  # 6 batches x 2 epochs went through Lightning's own optimization
    assert t.global_step == 12
    progress = t.fit_loop.epoch_loop.batch_loop.optimizer_loop.optim_progress
    assert progress.optimizer_steps == 12  # the 1.x path's tracker is the one that counted
    assert t.fit_loop.epoch_loop.batch_loop.batch_idx == 5


def test_a_connected_optimizer_loop_runs_every_batch():
    CountingOptimizerLoop.runs = 0
    t = trainer()
    t.fit_loop.epoch_loop.batch_loop.connect(optimizer_loop=CountingOptimizerLoop())
    t.fit(Small(), loader())
    assert CountingOptimizerLoop.runs == 12 and t.global_step == 12


def test_connecting_a_loop_mid_fit_takes_effect_at_the_next_batch():
    CountingOptimizerLoop.runs = 0

    class SwitchAfterThreeBatches(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            batch_loop = trainer.fit_loop.epoch_loop.batch_loop
            if trainer.global_step == 3 and not isinstance(batch_loop.optimizer_loop, CountingOptimizerLoop):
                batch_loop.connect(optimizer_loop=CountingOptimizerLoop())

    t = trainer(callbacks=[SwitchAfterThreeBatches()])
    t.fit(Small(), loader())
    # as in 1.x, the connected loop's own progress counts the steps from then on
    assert CountingOptimizerLoop.runs == 9 and t.global_step == 9


def test_a_1x_optimizer_step_override_runs_through_the_optimizer_loop():
    seen = []

    class Legacy(Small):
        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_idx, optimizer_closure, **kwargs):
            seen.append(optimizer_idx)
            optimizer.step(closure=optimizer_closure)

    t = trainer()
    t.fit(Legacy(), loader())
    assert seen == [0] * 12 and t.global_step == 12


def test_the_same_weights_either_way():
    torch.manual_seed(0)
    native, looped = Small(), Small()
    looped.load_state_dict(native.state_dict())
    trainer().fit(native, loader())
    t = trainer()
    t.fit_loop.epoch_loop.batch_loop.connect(optimizer_loop=CountingOptimizerLoop())
    t.fit(looped, loader())
    for name, value in native.state_dict().items():
        assert torch.equal(value, looped.state_dict()[name]), name


def test_a_loop_assigned_under_lightning_2s_name_is_connected_to_the_batch_loop():
    """``epoch_loop.automatic_optimization = loop`` (Lightning 2's name) connects it as ``batch_loop.optimizer_loop``;
    ``global_step`` and the name itself then follow that loop's progress."""
    CountingOptimizerLoop.runs = 0
    t = trainer()
    epoch_loop = t.fit_loop.epoch_loop
    counting = CountingOptimizerLoop()
    epoch_loop.automatic_optimization = counting
    assert epoch_loop.batch_loop.optimizer_loop is counting
    t.fit(Small(), loader())
    assert counting.trainer is t
    assert CountingOptimizerLoop.runs == 12 and t.global_step == 12
    assert epoch_loop.automatic_optimization.optim_progress is counting.optim_progress


def _instance_dictionary_requested(obj: object) -> bool:
    # CPython 3.11/3.12 store an instance's attributes inline until its `__dict__` is requested; from then on it
    # holds a dictionary (a referent of the object), and every attribute read of the object is a slower one
    return any(type(referent) is dict and "trainer" in referent for referent in gc.get_referents(obj))


@pytest.mark.skipif(
    sys.version_info[:2] not in ((3, 11), (3, 12)), reason="inline instance attributes: CPython 3.11/3.12"
)
def test_a_fit_with_the_default_loops_keeps_their_attributes_inline():
    """The default loops are as cheap to read as Lightning's: nothing of alkit requests their ``__dict__``."""
    t = trainer()
    t.fit(Small(), loader())
    epoch_loop = t.fit_loop.epoch_loop
    loops = {
        "fit_loop": t.fit_loop,
        "epoch_loop": epoch_loop,
        "batch_loop": epoch_loop.batch_loop,
        "optimizer_loop": epoch_loop.batch_loop.optimizer_loop,
        "manual_loop": epoch_loop.batch_loop.manual_loop,
    }
    assert {name: _instance_dictionary_requested(loop) for name, loop in loops.items()} == dict.fromkeys(loops, False)
    # the probe sees a requested dictionary
    vars(epoch_loop)
    assert _instance_dictionary_requested(epoch_loop)
