"""A frozen backbone's features, computed once, and the head trained on them: the demo's fast, noise-free path.

With ``finetune(strategy="freeze")`` the backbone is a fixed function (BatchNorm in eval mode), so an image's
features never change: recomputing them every epoch of every round of every run is pure cost (about 40 ms an image
on one CPU core, three minutes for one 6-round run). The demo computes them once per image with the deterministic
evaluation transform, then every active-learning run trains only the head (``Dropout + Linear``) on them, through
the same ``ActiveLearningDataModule`` / ``ActiveLearningLoop``; MC-dropout scoring samples the same head. The
trained head drops into the :class:`~alkit.vision.ImageClassifier` unchanged, which then classifies image files.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from alkit.lightning import pl

__all__ = ["FeatureData", "HeadClassifier", "backbone_features"]


@torch.no_grad()
def backbone_features(backbone: nn.Module, dataset: Dataset, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, targets)`` of every sample of ``dataset`` (in order) through ``backbone`` in eval mode."""
    was_training = backbone.training
    backbone.eval()
    features, targets = [], []
    try:
        for images, labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            features.append(backbone(images).flatten(1))
            targets.append(torch.as_tensor(labels))
    finally:
        backbone.train(was_training)
    return torch.cat(features), torch.cat(targets).long()


class FeatureData(pl.LightningDataModule):
    """Training and test features as a datamodule ``ActiveLearningDataModule`` can label (and batch by batch_size)."""

    def __init__(
        self,
        train: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor] | None,
        classes: list[str],
        batch_size: int,
    ) -> None:
        super().__init__()
        self.train_dataset = TensorDataset(*train)
        self.test_dataset = TensorDataset(*test) if test is not None else None
        self.classes = list(classes)
        self.num_classes = len(classes)
        self.batch_size = batch_size

    def train_dataset_for_inference(self) -> Dataset:
        return self.train_dataset

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_dataset, batch_size=self.batch_size, shuffle=True)

    def test_dataloader(self) -> DataLoader | list:
        return DataLoader(self.test_dataset, batch_size=256) if self.test_dataset is not None else []


class HeadClassifier(pl.LightningModule):
    """``Dropout(p) + Linear`` on backbone features, trained with Adam (and L2 weight decay); logs ``*_acc``.

    Each batch takes ``steps_per_batch`` Adam steps (a fresh dropout mask each): a round of a few dozen labelled
    feature vectors is one batch, and a Lightning epoch costs far more than a step on it, so 20 epochs of 5 steps
    train the head as 100 full-batch epochs would, five times faster.

    ``head`` is the module the :class:`~alkit.vision.ImageClassifier` uses, so a trained head's state dict loads
    into the image model as is; ``val_acc``/``test_acc`` are the same torchmetrics accuracy as the image model's
    (class-averaged), so the numbers of both paths mean the same thing.
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        dropout: float,
        learning_rate: float,
        weight_decay: float = 0.0,
        steps_per_batch: int = 1,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False  # several steps per batch
        self.steps_per_batch = steps_per_batch
        self.head = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(num_features, num_classes))
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.val_acc = MulticlassAccuracy(num_classes=num_classes)
        self.test_acc = MulticlassAccuracy(num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        optimizer = self.optimizers()
        for _ in range(self.steps_per_batch):
            loss = nn.functional.cross_entropy(self(x), y)
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
        self.log("train_loss", loss, batch_size=len(y))
        return loss

    def _accuracy(self, batch: Any, stage: str, accuracy: MulticlassAccuracy) -> None:
        x, y = batch
        accuracy(self(x), y)
        self.log(f"{stage}_acc", accuracy, batch_size=len(y))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._accuracy(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._accuracy(batch, "test", self.test_acc)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
