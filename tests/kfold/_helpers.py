"""Tiny model and data for the k-fold loop tests (module-level so ddp_spawn can pickle them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from alkit.lightning import pl


def blobs(
    n: int = 60, num_features: int = 4, num_classes: int = 3, seed: int = 0, spread: float = 2.0
) -> TensorDataset:
    """Gaussian blobs (unit noise) around centers drawn with standard deviation ``spread``.

    At the default ``spread=2`` two of the centers are 3 noise units apart: learnable in a couple of epochs but not
    perfectly, so metrics vary from fold to fold (a 20-sample validation fold scored anywhere from 0.4 to 1.0 over
    80 seeds). ``spread=4`` puts every pair of centers 6+ units apart: a task any working training run solves, for
    tests that assert "this fold learned" with a margin that holds on any CPU.
    """
    centers = torch.randn(num_classes, num_features, generator=torch.Generator().manual_seed(1234)) * spread
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % num_classes
    x = centers[y] + torch.randn(n, num_features, generator=generator)
    return TensorDataset(x, y)


class BlobData(pl.LightningDataModule):
    def __init__(
        self, n: int = 60, n_test: int = 30, batch_size: int = 8, with_test: bool = True, spread: float = 2.0
    ) -> None:
        super().__init__()
        self.n, self.n_test, self.batch_size, self.with_test = n, n_test, batch_size, with_test
        self.spread = spread

    def setup(self, stage: str) -> None:
        self.train_set = blobs(self.n, seed=0, spread=self.spread)
        self.test_set = blobs(self.n_test, seed=1, spread=self.spread)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)


class BlobDataWithTest(BlobData):
    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.batch_size)


class Classifier(pl.LightningModule):
    """A small classifier with dropout and an ExponentialLR, recording what each training step started from."""

    def __init__(self, lr: float = 0.5, gamma: float = 0.5, record: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))
        self.record = record
        self.starts: list[dict] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        if self.record:
            optimizer = self.trainer.optimizers[0]
            self.starts.append(
                {
                    "epoch": self.trainer.current_epoch,
                    "batch_idx": batch_idx,
                    "fold": getattr(self.trainer.fit_loop, "current_fold", None),
                    "weights": {k: v.detach().clone() for k, v in self.state_dict().items()},
                    "lr": optimizer.param_groups[0]["lr"],
                    "optimizer_state_size": len(optimizer.state),
                    "optimizer_id": id(optimizer),
                }
            )

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(-1) == y).float().mean())

    def test_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("test_acc", (logits.argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.hparams.gamma)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


QUIET = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}
