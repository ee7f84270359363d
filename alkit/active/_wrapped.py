"""What :class:`~alkit.active.ActiveLearningDataModule` reads from the datamodule it wraps.

The protocol ``alkit.vision.ImageClassificationData`` follows:

* ``train_dataset`` (or ``setup("fit")`` creating it, or ``train_dataloader().dataset``);
* ``num_classes`` (or ``classes``, or integer ``targets`` on the training set);
* optional ``train_dataset_for_inference()``: the training set with evaluation transforms, same order;
* optional ``val_dataset`` / ``test_dataset`` (then ``val_dataloader()`` / ``test_dataloader()`` serve them);
* optional ``batch_size``, ``num_workers``, ``make_dataloader(dataset, shuffle)``.

A Lightning Flash datamodule or a plain one with these attributes works as it is; what is missing is named in the
error, before anything is labelled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

__all__ = ["find_eval_dataset", "find_num_classes", "find_train_dataset"]


def find_train_dataset(datamodule: Any) -> Dataset:
    """The training set whose samples are to be labelled; a clear error when there is none or it is empty."""
    dataset = getattr(datamodule, "train_dataset", None)
    if dataset is None and callable(getattr(datamodule, "setup", None)):
        datamodule.setup("fit")
        dataset = getattr(datamodule, "train_dataset", None)
    if dataset is None and callable(getattr(datamodule, "train_dataloader", None)):
        try:
            dataset = getattr(datamodule.train_dataloader(), "dataset", None)
        except Exception:  # a datamodule without training data may raise anything here
            dataset = None
    if dataset is None:
        raise ValueError(
            f"`labelled` ({type(datamodule).__name__}) has no training data: active learning labels samples of the "
            "training set. Give it a `train_dataset` (e.g. `ImageClassificationData.from_folders(train_folder=...)`)."
        )
    try:
        size = len(dataset)
    except TypeError:
        raise ValueError("`labelled`'s training dataset must have a length (a map-style dataset).") from None
    if size == 0:
        raise ValueError(f"`labelled` ({type(datamodule).__name__}) has an empty training dataset.")
    return dataset


def find_eval_dataset(datamodule: Any, train_dataset: Dataset) -> Dataset:
    """The training set with evaluation transforms (same samples, same order), else the training set itself."""
    for name in ("train_dataset_for_inference", "inference_dataset"):
        method = getattr(datamodule, name, None)
        if callable(method):
            dataset = method() if name == "train_dataset_for_inference" else method("train")
            if len(dataset) != len(train_dataset):
                raise ValueError(
                    f"`labelled.{name}` has {len(dataset)} samples but the training set has {len(train_dataset)}; it "
                    "must serve the same samples in the same order (with evaluation transforms)."
                )
            return dataset
    return train_dataset


def find_num_classes(datamodule: Any, dataset: Dataset) -> int:
    """The number of classes, from ``num_classes``, ``classes`` or the training set's integer ``targets``."""
    num_classes = getattr(datamodule, "num_classes", None)
    if num_classes is None and getattr(datamodule, "classes", None) is not None:
        num_classes = len(datamodule.classes)
    if num_classes is None and getattr(dataset, "targets", None) is not None:
        targets = np.asarray([int(t) for t in dataset.targets])
        num_classes = int(targets.max()) + 1 if targets.size else None
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(
            f"Cannot tell the number of classes of `labelled` ({type(datamodule).__name__}): give it a "
            "`num_classes` attribute (or `classes`)."
        )
    return int(num_classes)
