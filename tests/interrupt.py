"""Simulate a run killed mid-training (the process dies after a checkpoint was written)."""

from __future__ import annotations

from alkit.lightning import pl


class Killed(Exception):
    """Stands for the process dying."""


class KillAtEpoch(pl.Callback):
    """Raise :class:`Killed` when epoch ``epoch`` starts (checkpoints of the epochs before it are on disk)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise Killed
