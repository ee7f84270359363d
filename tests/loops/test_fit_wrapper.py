"""``FitWrapperLoop``: fresh fit segments (optimizers, schedulers, callbacks), monotonic counters, resumability."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import alkit
from alkit.examples._toy import ToyClassifier, toy_dataloader
from alkit.lightning import pl
from alkit.loops import FitWrapperLoop
from tests.interrupt import KillAtEpoch, Killed

EarlyStopping = pl.callbacks.EarlyStopping
ModelCheckpoint = pl.callbacks.ModelCheckpoint

QUIET = dict(logger=False, enable_progress_bar=False, enable_model_summary=False)


class ScheduledClassifier(ToyClassifier):
    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.9)
        return [optimizer], [torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5)]


class CountingData(pl.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        self.train_requests = 0

    def train_dataloader(self):
        self.train_requests += 1
        return toy_dataloader()

    def val_dataloader(self):
        return toy_dataloader(seed=1)

    def test_dataloader(self):
        return toy_dataloader(seed=2)


class SegmentStarts(pl.Callback):
    """Records, at the first batch of every fit segment, the LR and whether the optimizer state is empty."""

    def __init__(self) -> None:
        self.starts: list[tuple[float, bool]] = []
        self.weights_at_start: list[torch.Tensor] = []

    def on_train_start(self, trainer, pl_module):
        optimizer = trainer.optimizers[0]
        self.starts.append((optimizer.param_groups[0]["lr"], len(optimizer.state) == 0))
        self.weights_at_start.append(pl_module.net[0].weight.detach().clone())


class Segments(FitWrapperLoop):
    def __init__(self, segments: int, epochs: int, reset_weights: bool = False) -> None:
        super().__init__()
        self.segments, self.epochs, self.reset_weights = segments, epochs, reset_weights
        self.segment = 0
        self.test_metrics: list[dict[str, float]] = []
        self.initial: dict | None = None

    @property
    def done(self) -> bool:
        return self.segment >= self.segments

    def on_run_start(self) -> None:
        super().on_run_start()
        if self.initial is None:
            self.initial = self.snapshot_weights()

    def advance(self) -> None:
        if self.reset_weights and not self.resuming_segment:
            self.restore_weights(self.initial)
        self.run_fit(self.epochs)
        self.test_metrics.append(self.run_test())
        self.segment += 1

    def on_save_checkpoint(self) -> dict:
        state = super().on_save_checkpoint()
        state.update(segment=self.segment, test_metrics=self.test_metrics, initial=self.initial)
        return state

    def on_load_checkpoint(self, state_dict: dict) -> None:
        super().on_load_checkpoint(state_dict)
        self.segment = state_dict["segment"]
        self.test_metrics = state_dict["test_metrics"]
        self.initial = state_dict["initial"]


def fit_segments(tmp_path, segments=3, epochs=2, callbacks=(), reset_weights=True, ckpt_path=None, **kwargs):
    torch.manual_seed(0)
    model, data = ScheduledClassifier(), CountingData()
    trainer = alkit.Trainer(max_epochs=segments, default_root_dir=tmp_path, callbacks=list(callbacks), **kwargs)
    loop = Segments(segments, epochs, reset_weights=reset_weights)
    loop.connect(trainer.fit_loop)
    trainer.fit_loop = loop
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return trainer, loop, model, data


def test_every_segment_is_a_fresh_fit(tmp_path):
    starts = SegmentStarts()
    trainer, loop, model, data = fit_segments(tmp_path, callbacks=[starts], enable_checkpointing=False, **QUIET)
    # the same LR and an empty optimizer state at the start of every segment (Lightning's k-fold example lost both)
    assert starts.starts == [(0.5, True)] * 3
    # weights really restored before each segment
    for weights in starts.weights_at_start[1:]:
        assert torch.equal(weights, starts.weights_at_start[0])
    # counters keep growing across segments, and each segment trained exactly `epochs` epochs
    assert trainer.current_epoch == 6 and trainer.global_step == 6 * 4
    assert data.train_requests == 3  # data re-requested for every segment (labelled set / fold may change)
    assert len(loop.test_metrics) == 3 and all("test_acc" in m for m in loop.test_metrics)
    assert trainer.fit_loop is loop and trainer.max_epochs == 3  # the wrapper keeps the user's max_epochs


def test_early_stopping_state_does_not_leak_between_segments(tmp_path):
    # min_delta is so large that every check counts as "no improvement": it stops after `patience` epochs
    stopper = EarlyStopping(monitor="val_loss", patience=1, min_delta=100.0)
    trainer, *_ = fit_segments(tmp_path, segments=3, epochs=4, callbacks=[stopper], enable_checkpointing=False, **QUIET)
    # each segment is stopped after 2 epochs; with leaked state segments 2 and 3 would stop after 1
    assert trainer.current_epoch == 6


def test_a_second_segment_is_not_silently_skipped(tmp_path):
    trainer, *_ = fit_segments(tmp_path, segments=2, epochs=1, enable_checkpointing=False, **QUIET)
    assert trainer.current_epoch == 2


@pytest.mark.parametrize("kill_epoch", [3, 4], ids=["mid_segment", "segment_boundary"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, kill_epoch):
    _, reference_loop, reference, _ = fit_segments(tmp_path / "ref", enable_checkpointing=False, **QUIET)

    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    with pytest.raises(Killed):
        fit_segments(tmp_path / "run", callbacks=[checkpoint, KillAtEpoch(kill_epoch)], **QUIET)
    trainer, loop, resumed, _ = fit_segments(
        tmp_path / "run", ckpt_path=tmp_path / "ck" / "last.ckpt", enable_checkpointing=False, **QUIET
    )
    assert trainer.current_epoch == 6
    assert loop.test_metrics == reference_loop.test_metrics
    assert not list((tmp_path / "ck").glob("last-v*.ckpt"))  # one resume point, overwritten, not versioned
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0)


def test_connect_needs_a_fit_loop():
    with pytest.raises(TypeError, match="expects the trainer's FitLoop"):
        Segments(1, 1).connect(object())
    trainer = alkit.Trainer(**QUIET)
    loop = Segments(1, 1)
    trainer.fit_loop = loop
    with pytest.raises(RuntimeError, match=r"call `loop.connect\(trainer.fit_loop\)`"):
        trainer.fit(ToyClassifier(), toy_dataloader())
