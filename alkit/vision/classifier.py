"""``ImageClassifier``: a torchvision backbone + a small head, as a LightningModule."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from alkit._checkpoint import check_checkpoint
from alkit.lightning import pl
from alkit.vision.backbones import build_backbone
from alkit.vision.images import load_rgb
from alkit.vision.transforms import eval_transform

__all__ = ["ImageClassifier", "OPTIMIZERS"]

#: Optimizers accepted by name; any ``torch.optim.Optimizer`` subclass is accepted too.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}
# SGD without momentum barely moves a linear probe in a few epochs; 0.9 is the transfer-learning tutorial's value.
_OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {"sgd": {"momentum": 0.9}}


def _check_optimizer(optimizer: Any) -> None:
    if isinstance(optimizer, str):
        if optimizer.lower() not in OPTIMIZERS:
            raise ValueError(
                f"optimizer={optimizer!r} is not supported; use one of {sorted(OPTIMIZERS)} "
                "or a torch.optim.Optimizer subclass"
            )
    elif not (isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)):
        raise ValueError(
            f"optimizer={optimizer!r} is not supported; use one of {sorted(OPTIMIZERS)} "
            "or a torch.optim.Optimizer subclass"
        )


def _build_head(head: nn.Module | Callable | None, num_features: int, num_classes: int, dropout: float) -> nn.Module:
    if head is None:
        # Dropout in the head gives MC-dropout uncertainty for active learning without touching the backbone.
        return nn.Sequential(nn.Dropout(p=dropout), nn.Linear(num_features, num_classes))
    if not isinstance(head, nn.Module):
        if not callable(head):
            raise ValueError(f"head must be None, an nn.Module or a callable (num_features, num_classes), got {head!r}")
        head = head(num_features, num_classes)
        if not isinstance(head, nn.Module):
            raise ValueError(f"the head factory returned {head!r}, not an nn.Module")
    was_training = head.training
    head.eval()
    try:
        with torch.no_grad():
            out = head(torch.zeros(2, num_features))
    except Exception as error:
        raise ValueError(f"head cannot take the backbone's features of shape (N, {num_features}): {error}") from error
    finally:
        head.train(was_training)
    if tuple(out.shape) != (2, num_classes):
        raise ValueError(
            f"head maps (2, {num_features}) features to shape {tuple(out.shape)}; "
            f"expected (2, num_classes={num_classes})"
        )
    return head


class ImageClassifier(pl.LightningModule):
    """Image classification by a torchvision ``backbone`` (a feature extractor) followed by a ``head``.

    ``backbone`` and ``head`` are separate submodules so finetuning strategies (:mod:`alkit.finetuning`) can freeze
    the backbone, and active learning can sample the dropout head many times on features computed once.

    Args:
        backbone: a name from :func:`alkit.vision.backbones.available_backbones` (``resnet18``, ``resnet50``,
            ``mobilenet_v2``, ...).
        head: ``None`` for ``Dropout(dropout) + Linear(num_features, num_classes)``; an ``nn.Module`` taking
            ``(N, num_features)``; or a factory ``(num_features, num_classes) -> nn.Module``. A custom head module is
            not saved in hyper-parameters: pass it again to ``load_from_checkpoint``.
        num_classes: number of output classes (>= 2).
        pretrained: ``True`` for torchvision's ImageNet weights (a :class:`PretrainedWeightsWarning` and random
            weights when offline without a cached copy), ``False`` for random weights, or a path to a state dict
            (torchvision full-model or backbone-only layout, e.g. the shared ``mobilenet_v2_imagenet_features.pth``).
        learning_rate: learning rate of the optimizer.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"`` (momentum 0.9) or a ``torch.optim.Optimizer`` subclass.
        strict_pretrained: with ``pretrained=True``, raise instead of falling back to random weights.
        classes: class names; filled in from the data module at ``fit``/``validate``/``test`` time and saved in the
            checkpoint, so a loaded model's :meth:`predict` returns names.
        image_size: side of the evaluation crop used by :meth:`predict`; taken from the data module when it has one.
        dropout: dropout probability of the default head.
        optimizer_kwargs: extra keyword arguments for the optimizer (e.g. ``{"weight_decay": 1e-4}``).
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        head: nn.Module | Callable[[int, int], nn.Module] | None = None,
        num_classes: int = 2,
        pretrained: bool | str | os.PathLike = True,
        learning_rate: float = 1e-3,
        optimizer: str | type[torch.optim.Optimizer] = "adam",
        strict_pretrained: bool = False,
        classes: Sequence[str] | None = None,
        image_size: int = 224,
        dropout: float = 0.5,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
        _check_optimizer(optimizer)
        if optimizer_kwargs is not None and not isinstance(optimizer_kwargs, dict):
            raise ValueError(f"optimizer_kwargs must be a dict or None, got {optimizer_kwargs!r}")
        if classes is not None and len(classes) != num_classes:
            raise ValueError(f"classes={list(classes)!r} has {len(classes)} names but num_classes={num_classes}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if isinstance(pretrained, Path):
            pretrained = str(pretrained)  # keep the hyper-parameters plain (YAML/weights-only friendly)
        self.save_hyperparameters(ignore=["head"])
        if classes is not None:
            self.hparams.classes = [str(name) for name in classes]

        self.backbone, num_features = build_backbone(backbone, pretrained, strict_pretrained)
        self.num_features = num_features
        self.head = _build_head(head, num_features, num_classes, dropout)
        self.loss_fn = nn.CrossEntropyLoss()
        self.val_acc = MulticlassAccuracy(num_classes=num_classes)
        self.test_acc = MulticlassAccuracy(num_classes=num_classes)

    # -- what the model knows ----------------------------------------------------------------------------------------

    @property
    def classes(self) -> list[str] | None:
        return self.hparams.get("classes")

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs):  # type: ignore[override]
        """Lightning's loader, but without fetching pretrained weights the checkpoint's state dict overwrites anyway."""
        kwargs.setdefault("pretrained", False)
        if isinstance(checkpoint_path, (str, os.PathLike)) and "://" not in os.fspath(checkpoint_path):
            check_checkpoint(checkpoint_path, "checkpoint_path")  # weights only, whatever Lightning's default
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def setup(self, stage: str) -> None:
        """Adopt the data module's class names and image size, so predictions and checkpoints carry them."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        classes = getattr(datamodule, "classes", None)
        if classes is not None:
            classes = [str(name) for name in classes]
            if len(classes) != self.hparams.num_classes:
                raise ValueError(
                    f"the data module has {len(classes)} classes {classes} but the model has "
                    f"num_classes={self.hparams.num_classes}"
                )
            if self.classes is not None and self.classes != classes:
                raise ValueError(f"the data module's classes {classes} differ from the model's {self.classes}")
            self.hparams.classes = classes
        image_size = getattr(datamodule, "image_size", None)
        if isinstance(image_size, int) and not isinstance(image_size, bool):
            self.hparams.image_size = image_size

    # -- computation -------------------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, num_classes)``."""
        return self.head(self.backbone(x))

    @staticmethod
    def _inputs(batch: Any) -> torch.Tensor:
        return batch[0] if isinstance(batch, (list, tuple)) else batch

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss_fn(self(x), y)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(y))
        return loss

    def _evaluate(self, batch: Any, stage: str, accuracy: MulticlassAccuracy) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y)
        accuracy(logits, y)
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=len(y))
        self.log(f"{stage}_acc", accuracy, prog_bar=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "test", self.test_acc)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Class probabilities (softmax of the logits), shape ``(N, num_classes)``."""
        return torch.softmax(self(self._inputs(batch)), dim=-1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The chosen optimizer over the parameters that require grad.

        Filtering on ``requires_grad`` keeps a frozen backbone out of the optimizer, also when a research loop
        rebuilds the optimizers mid-fit (every active-learning round does).
        """
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise RuntimeError("every parameter of the model is frozen (requires_grad=False); nothing to optimize")
        optimizer = self.hparams.optimizer
        kwargs: dict[str, Any] = {}
        if isinstance(optimizer, str):
            kwargs.update(_OPTIMIZER_DEFAULTS.get(optimizer.lower(), {}))
            optimizer = OPTIMIZERS[optimizer.lower()]
        kwargs.update(self.hparams.get("optimizer_kwargs") or {})
        return optimizer(params, lr=self.hparams.learning_rate, **kwargs)

    # -- convenience -------------------------------------------------------------------------------------------------

    def predict(
        self,
        path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
        return_probabilities: bool = False,
        batch_size: int = 16,
    ):
        """Classify image files with the deterministic evaluation transform.

        Returns the class name (or, if the model knows no class names, the class index) for one path, or a list of
        them for a sequence of paths; with ``return_probabilities`` a pair ``(labels, probabilities)`` where
        ``probabilities`` is a tensor of shape ``(num_classes,)`` or ``(N, num_classes)``.
        """
        single = isinstance(path_or_paths, (str, os.PathLike))
        paths = [path_or_paths] if single else list(path_or_paths)
        if not paths:
            raise ValueError("path_or_paths is empty; give an image path or a list of image paths")
        for path in paths:
            if not isinstance(path, (str, os.PathLike)):
                raise ValueError(f"path_or_paths must hold file paths, got {path!r}")
            if not Path(path).is_file():
                raise FileNotFoundError(f"path_or_paths: no such image file {os.fspath(path)!r}")
        transform = eval_transform(self.hparams.image_size)
        was_training = self.training
        self.eval()
        chunks = []
        try:
            with torch.inference_mode():
                for start in range(0, len(paths), batch_size):
                    x = torch.stack([transform(load_rgb(p)) for p in paths[start : start + batch_size]])
                    chunks.append(torch.softmax(self(x.to(self.device)), dim=-1).cpu())
        finally:
            self.train(was_training)
        probabilities = torch.cat(chunks)
        indices = probabilities.argmax(dim=-1).tolist()
        labels = [self.classes[i] for i in indices] if self.classes is not None else indices
        if single:
            labels, probabilities = labels[0], probabilities[0]
        return (labels, probabilities) if return_probabilities else labels
