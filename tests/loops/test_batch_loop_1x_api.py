"""The batch level keeps Lightning 1.x's public contract: ``TrainingBatchLoop.run(kwargs)``,
``OptimizerLoop.run(optimizers, kwargs)`` with ``(optimizer_idx, optimizer)`` pairs, their 1.9 output shapes, and
the helpers of ``loops.utilities`` under their 1.x names."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch.utils.data import DataLoader, TensorDataset

import alkit
from alkit import loops
from alkit.lightning import pl
from alkit.loops import utilities
from tests.quiet import QUIET


def data(n_batches: int = 2) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n_batches * 4, 3, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


class Parts(pl.LightningModule):
    def __init__(self, n_optimizers: int = 2) -> None:
        super().__init__()
        self.parts = torch.nn.ModuleList(torch.nn.Linear(3, 1) for _ in range(n_optimizers))

    def training_step(self, batch, batch_idx, optimizer_idx=0):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.parts[optimizer_idx](x), y)
        return {"loss": loss, "optimizer_idx": optimizer_idx}

    def configure_optimizers(self):
        return [torch.optim.SGD(part.parameters(), lr=0.1) for part in self.parts]


class RecordingOptimizerLoop(loops.OptimizerLoop):
    """A 1.x-style subclass: the hooks take ``(optimizers, kwargs)``."""

    def __init__(self) -> None:
        super().__init__()
        self.starts: list = []
        self.advances: list = []
        self.outputs: list = []

    def on_run_start(self, optimizers, kwargs):
        super().on_run_start(optimizers, kwargs)
        self.starts.append([(index, optimizer) for index, optimizer in optimizers])

    def advance(self, optimizers, kwargs):
        self.advances.append((self.optimizer_idx, self.optim_progress.optimizer_position, kwargs["batch_idx"]))
        super().advance(optimizers, kwargs)

    def on_run_end(self):
        outputs = super().on_run_end()
        self.outputs.append(outputs)
        return outputs


def test_optimizer_loop_takes_index_optimizer_pairs_and_returns_outputs_per_index():
    trainer = alkit.Trainer(max_epochs=1, **QUIET)
    optimizer_loop = RecordingOptimizerLoop()
    trainer.fit_loop.epoch_loop.batch_loop.connect(optimizer_loop=optimizer_loop)
    trainer.fit(Parts(), data())
    assert optimizer_loop.starts == [list(enumerate(trainer.optimizers))] * 2
    assert optimizer_loop.advances == [(0, 0, 0), (1, 1, 0), (0, 0, 1), (1, 1, 1)]
    for outputs in optimizer_loop.outputs:
        assert sorted(outputs) == [0, 1]
        assert all(outputs[i]["optimizer_idx"] == i and outputs[i]["loss"].ndim == 0 for i in (0, 1))
    assert optimizer_loop.optim_progress.optimizer_position == 2  # after the batch, as in 1.x


class OneArgumentBatchLoop(loops.TrainingBatchLoop):
    """A 1.x-style subclass: ``on_run_start(kwargs)``/``advance(kwargs)``; records what ``run`` returns."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[int] = []
        self.returned: list = []

    def on_run_start(self, kwargs):
        self.started.append(kwargs["batch_idx"])

    def advance(self, kwargs):
        super().advance(kwargs)

    def on_run_end(self):
        outputs = super().on_run_end()
        self.returned.append(outputs)
        return outputs


def test_training_batch_loop_run_returns_1_9_shapes():
    trainer = alkit.Trainer(max_epochs=1, **QUIET)
    batch_loop = OneArgumentBatchLoop()
    trainer.fit_loop.epoch_loop.batch_loop = batch_loop
    trainer.fit(Parts(n_optimizers=1), data())
    assert batch_loop.started == [0, 1]
    # one entry for the batch, mapping optimizer_idx to that optimizer's outputs
    for returned in batch_loop.returned:
        assert len(returned) == 1 and list(returned[0]) == [0]
        assert set(returned[0][0]) == {"loss", "optimizer_idx"}


def test_batch_loop_run_called_by_hand_as_in_1x():
    """1.x's ``batch_loop.run(kwargs)`` (Lightning 1.9's own tests call it after ``fit``)."""

    class SkipsEvenBatches(Parts):
        def training_step(self, batch, batch_idx, optimizer_idx=0):
            return None if batch_idx % 2 == 0 else super().training_step(batch, batch_idx)

    model = SkipsEvenBatches(n_optimizers=1)
    trainer = alkit.Trainer(max_epochs=1, **QUIET)
    trainer.fit(model, data())
    batch_loop = trainer.fit_loop.epoch_loop.batch_loop
    batch = next(iter(data()))
    assert batch_loop.run(OrderedDict(batch=batch, batch_idx=0)) == []  # nothing returned, nothing kept
    out = batch_loop.run(OrderedDict(batch=batch, batch_idx=1))
    assert len(out) == 1 and isinstance(out[0][0]["loss"], torch.Tensor)
    # the 1.x form of the closure factory
    closure = batch_loop.optimizer_loop._make_closure(OrderedDict(batch=batch, batch_idx=1), trainer.optimizers[0])
    loss = closure()  # training_step + backward, as the optimizer would call it
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0


def test_manual_optimization_output_in_a_list():
    class Manual(Parts):
        def __init__(self) -> None:
            super().__init__(n_optimizers=1)
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            optimizer = self.optimizers()
            loss = super().training_step(batch, batch_idx)["loss"]
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            return {"seen": batch_idx}

    trainer = alkit.Trainer(max_epochs=1, **QUIET)
    batch_loop = OneArgumentBatchLoop()
    trainer.fit_loop.epoch_loop.batch_loop = batch_loop
    trainer.fit(Manual(), data())
    assert batch_loop.returned == [[{"seen": 0}], [{"seen": 1}]]


def test_training_step_kwargs_builder_under_both_names():
    one, two = Parts(n_optimizers=1), Parts(n_optimizers=2)
    kwargs = OrderedDict(batch="b", batch_idx=3)
    assert utilities._build_training_step_kwargs is utilities.build_training_step_kwargs
    # one optimizer: no optimizer_idx (the default applies), several: the index is added, the input left alone
    assert utilities.build_training_step_kwargs(kwargs, one, one.configure_optimizers(), 0, None) == kwargs
    built = utilities.build_training_step_kwargs(kwargs, two, two.configure_optimizers(), 1, None)
    assert list(built.items()) == [("batch", "b"), ("batch_idx", 3), ("optimizer_idx", 1)]
    assert "optimizer_idx" not in kwargs


def test_utilities_keep_their_1x_names():
    for public, legacy in [
        ("get_active_optimizers", "_get_active_optimizers"),
        ("block_parallel_sync_behavior", "_block_parallel_sync_behavior"),
        ("is_max_limit_reached", "_is_max_limit_reached"),
        ("reset_progress", "_reset_progress"),
        ("prepare_outputs_training_batch_end", "_prepare_outputs_training_batch_end"),
    ]:
        assert getattr(utilities, legacy) is getattr(utilities, public)
    assert utilities.is_max_limit_reached(5, 5) and not utilities.is_max_limit_reached(5, -1)
    loop = loops.OptimizerLoop()
    loop.optim_progress.optimizer.step.increment_ready()
    loop.optim_progress.optimizer_position = 1
    utilities.reset_progress(loop)
    assert loop.optim_progress.optimizer.step.total.ready == 0 and loop.optim_progress.optimizer_position == 0
