"""Tiny synthetic data and models for the active-learning tests (CPU, milliseconds)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from alkit.lightning import pl


class NoisyDataset(Dataset):
    """``(x + noise, y)``: a training set whose "transform" is random, like image augmentation."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, noise: float = 1.0) -> None:
        self.x, self.y, self.noise = x, y, noise
        self.targets = y.tolist()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        return self.x[index] + self.noise * torch.randn_like(self.x[index]), self.y[index]


class TinyData(pl.LightningDataModule):
    """A LightningDataModule following alkit's protocol: random train transform, deterministic inference view."""

    def __init__(
        self,
        n: int = 40,
        num_classes: int = 3,
        features: int = 4,
        batch_size: int = 4,
        with_val: bool = False,
        with_test: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, features, generator=generator)
        self.y = torch.arange(n) % num_classes
        self.train_dataset = NoisyDataset(self.x, self.y)
        self.val_dataset = TensorDataset(self.x[:5].clone(), self.y[:5].clone()) if with_val else None
        self.test_dataset = TensorDataset(self.x[:6].clone(), self.y[:6].clone()) if with_test else None
        self.num_classes = num_classes
        self.batch_size = batch_size

    def train_dataset_for_inference(self) -> Dataset:
        return TensorDataset(self.x, self.y)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_dataset, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_dataset, batch_size=self.batch_size) if self.val_dataset is not None else []

    def test_dataloader(self):
        return DataLoader(self.test_dataset, batch_size=self.batch_size) if self.test_dataset is not None else []


class BackboneHead(nn.Module):
    """A deterministic backbone and a dropout head: the frozen-backbone fine-tuning shape."""

    def __init__(self, features: int = 4, hidden: int = 16, num_classes: int = 3, p: float = 0.5) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(features, hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(p), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class SpikeModel(nn.Module):
    """Dropout on the input, then a linear layer reading only feature 0.

    A sample whose feature 0 is large flips between a confident and a uniform prediction depending on whether
    dropout keeps that feature: it is by construction the most uncertain sample for BALD. Samples with feature 0
    equal to 0 get the same prediction in every pass (BALD 0).
    """

    def __init__(self, features: int = 4) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.5)
        self.linear = nn.Linear(features, 2)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.weight[0, 0] = 1.0
            self.linear.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(x))


def spike_pool(n: int, spike_at: int, features: int = 4, seed: int = 0) -> torch.Tensor:
    """``n`` inputs with feature 0 near zero except at ``spike_at`` (feature 0 = 4)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator)
    x[:, 0] = 0.01 * torch.randn(n, generator=generator)
    x[spike_at, 0] = 4.0
    return x
