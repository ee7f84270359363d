"""A tiny classification problem shared by the examples (no download, trains in a second on a CPU)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from alkit.lightning import pl


def toy_dataloader(n: int = 64, batch_size: int = 16, seed: int = 0, shuffle: bool = False) -> DataLoader:
    """Two Gaussian blobs in 8 dimensions."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=generator)
    x = torch.randn(n, 8, generator=generator) + 1.5 * y[:, None].float()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)


class ToyClassifier(pl.LightningModule):
    """Linear classifier logging ``train_loss``, ``val_loss``/``val_acc`` and ``test_acc``."""

    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.lr = lr
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        self.log("val_loss", loss, prog_bar=True)
        self.log("val_acc", (logits.argmax(-1) == y).float().mean())
        return loss

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_acc", (self(x).argmax(-1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr)
