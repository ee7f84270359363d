"""scikit-learn's handwritten digits as a LightningDataModule, and a small MLP for them.

The digits (1797 8×8 grey images, 10 classes) ship inside scikit-learn, so the k-fold demo needs no download and
5 folds train in seconds on a CPU - the same data the Lightning 1.9 k-fold example used. On it that example's
never-reset optimizer and scheduler showed: the learning rate decayed across folds and the last folds ended at
chance while the ensemble's accuracy hid it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from alkit.lightning import pl

__all__ = ["DigitsDataModule", "DigitsMLP"]


class DigitsDataModule(pl.LightningDataModule):
    """Digits split once into a training set (to cross-validate) and a held-out test set (stratified, seeded).

    Args:
        test_fraction: share of the samples kept out of cross-validation for testing the fold models and the
            ensemble; ``0`` for no test set.
        batch_size: batch size of every DataLoader.
        max_samples: use a stratified subset of this many samples (small settings for tests and CI).
        seed: seeds the subset, the train/test split and the training DataLoader's shuffling.
    """

    num_classes = 10

    def __init__(
        self, test_fraction: float = 0.2, batch_size: int = 64, max_samples: int | None = None, seed: int = 0
    ) -> None:
        super().__init__()
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 <= test_fraction < 1:
            raise ValueError(f"test_fraction={test_fraction!r} is invalid: expected a number in [0, 1)")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is invalid: expected an int >= 1")
        if max_samples is not None and (
            isinstance(max_samples, bool) or not isinstance(max_samples, int) or not 50 <= max_samples <= 1797
        ):
            raise ValueError(f"max_samples={max_samples!r} is invalid: expected an int in [50, 1797] or None")
        self.test_fraction = float(test_fraction)
        self.batch_size = batch_size
        self.max_samples = max_samples
        self.seed = seed
        self.train_dataset: TensorDataset | None = None
        self.test_dataset: TensorDataset | None = None

    def setup(self, stage: str) -> None:
        if self.train_dataset is not None:  # one split per instance: fold indices must keep pointing at the same rows
            return
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        x, y = load_digits(return_X_y=True)
        if self.max_samples is not None and self.max_samples < len(y):
            x, _, y, _ = train_test_split(x, y, train_size=self.max_samples, stratify=y, random_state=self.seed)
        x = torch.tensor(x / 16.0, dtype=torch.float32)  # pixel values are 0..16
        y = torch.tensor(y, dtype=torch.long)
        if self.test_fraction > 0:
            train, test = train_test_split(
                np.arange(len(y)), test_size=self.test_fraction, stratify=y.numpy(), random_state=self.seed
            )
            self.train_dataset = TensorDataset(x[train], y[train])
            self.test_dataset = TensorDataset(x[test], y[test])
        else:
            self.train_dataset = TensorDataset(x, y)

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_dataset, batch_size=self.batch_size, shuffle=True, generator=generator)

    def test_dataloader(self) -> DataLoader | list:
        return DataLoader(self.test_dataset, batch_size=self.batch_size) if self.test_dataset is not None else []


class DigitsMLP(pl.LightningModule):
    """A one-hidden-layer MLP (64 → hidden → 10, dropout) logging loss and accuracy for train/val/test."""

    def __init__(self, hidden: int = 64, dropout: float = 0.1, learning_rate: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, batch_size=len(y))
        return loss

    def _evaluate(self, batch: Any, stage: str) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{stage}_loss", F.cross_entropy(logits, y), batch_size=len(y))
        self.log(f"{stage}_acc", (logits.argmax(-1) == y).float().mean(), batch_size=len(y))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)
