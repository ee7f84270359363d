"""Image classification for alkit's loops: a folder data module and a torchvision backbone + head classifier.

``ImageClassificationData.from_folders`` reads ``<folder>/<class>/<image>`` trees (any image Pillow opens) with
random training transforms and deterministic evaluation transforms; ``ImageClassifier`` exposes ``backbone`` and
``head`` so :mod:`alkit.finetuning` can freeze the former and active learning can sample the latter.
"""

from alkit.vision.backbones import PretrainedWeightsWarning, available_backbones, register_backbone
from alkit.vision.classifier import ImageClassifier
from alkit.vision.data import ImageClassificationData
from alkit.vision.datasets import ImageFolderDataset, UnlabelledImageDataset
from alkit.vision.images import ImageLoadError
from alkit.vision.transforms import eval_transform, train_transform

__all__ = [
    "ImageClassificationData",
    "ImageClassifier",
    "ImageFolderDataset",
    "ImageLoadError",
    "PretrainedWeightsWarning",
    "UnlabelledImageDataset",
    "available_backbones",
    "eval_transform",
    "register_backbone",
    "train_transform",
]
