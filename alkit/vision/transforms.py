"""The two image pipelines: random augmentation for training, a deterministic one for everything else.

Flash's active-learning demo validated and scored its unlabelled pool with the *training* transforms (random crops
and flips), so uncertainty scores changed from one call to the next for the same image. alkit keeps
the two pipelines separate and uses the evaluation one for validation, test, prediction and pool scoring.
"""

from __future__ import annotations

from collections.abc import Callable

from torchvision import transforms as T

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "eval_transform", "train_transform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ImageNet convention: resize the short side to 256 and crop 224; keep the same ratio for other sizes.
_RESIZE_RATIO = 256 / 224


def train_transform(image_size: int = 224) -> Callable:
    """Random resized crop + horizontal flip + ImageNet normalisation (the transfer-learning tutorial recipe)."""
    return T.Compose(
        [
            T.RandomResizedCrop(image_size, antialias=True),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def eval_transform(image_size: int = 224) -> Callable:
    """Deterministic resize of the short side + center crop + ImageNet normalisation: same image, same tensor."""
    return T.Compose(
        [
            T.Resize(round(image_size * _RESIZE_RATIO), antialias=True),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
