"""``ImageClassificationData``: a LightningDataModule over class-per-folder images."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from alkit.lightning import pl
from alkit.vision.datasets import ImageFolderDataset, UnlabelledImageDataset, find_class_folders, is_flat_folder
from alkit.vision.transforms import eval_transform, train_transform

__all__ = ["ImageClassificationData"]

_TRANSFORM_KEYS = ("train", "eval")


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _resolve_transforms(transforms: Any, image_size: int) -> tuple[Callable, Callable]:
    """``None`` -> defaults; a callable -> used for every split; a mapping -> per-pipeline overrides."""
    if transforms is None:
        return train_transform(image_size), eval_transform(image_size)
    if callable(transforms):
        return transforms, transforms
    if isinstance(transforms, Mapping):
        unknown = sorted(set(transforms) - set(_TRANSFORM_KEYS))
        if unknown:
            raise ValueError(f"transforms has unknown key(s) {unknown}; accepted keys are {list(_TRANSFORM_KEYS)}")
        for key, value in transforms.items():
            if not callable(value):
                raise ValueError(f"transforms[{key!r}] must be callable, got {value!r}")
        return (
            transforms.get("train") or train_transform(image_size),
            transforms.get("eval") or eval_transform(image_size),
        )
    raise ValueError(
        f"transforms must be None, a callable or a mapping with keys {list(_TRANSFORM_KEYS)}, got {transforms!r}"
    )


def _check_folder(name: str, folder: Any) -> Path | None:
    if folder is None:
        return None
    if not isinstance(folder, (str, os.PathLike)):
        raise ValueError(f"{name} must be a path to a folder or None, got {folder!r}")
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{name}={os.fspath(folder)!r} is not an existing folder")
    return path


class ImageClassificationData(pl.LightningDataModule):
    """Train/val/test/predict image datasets with the right transform on each, and their DataLoaders.

    Training images go through random augmentation; validation, test, prediction and :meth:`train_dataset_for_inference`
    (the labelled/unlabelled pool as active learning scores it) go through the deterministic evaluation pipeline, so
    scoring the same image twice gives the same answer. Build it with :meth:`from_folders`.
    """

    def __init__(
        self,
        train_dataset: ImageFolderDataset | None = None,
        val_dataset: ImageFolderDataset | None = None,
        test_dataset: ImageFolderDataset | None = None,
        predict_dataset: ImageFolderDataset | UnlabelledImageDataset | None = None,
        classes: list[str] | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        image_size: int = 224,
        train_transform: Callable | None = None,
        eval_transform: Callable | None = None,
        seed: int | None = 0,
    ) -> None:
        super().__init__()
        _check_positive_int("batch_size", batch_size)
        _check_positive_int("num_workers", num_workers, minimum=0)
        _check_positive_int("image_size", image_size)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        default_train, default_eval = _resolve_transforms(None, image_size)
        self.train_transform = train_transform or default_train
        self.eval_transform = eval_transform or default_eval
        self._train_dataset = train_dataset.with_transform(self.train_transform) if train_dataset is not None else None
        self._val_dataset = val_dataset.with_transform(self.eval_transform) if val_dataset is not None else None
        self._test_dataset = test_dataset.with_transform(self.eval_transform) if test_dataset is not None else None
        self._predict_dataset = (
            predict_dataset.with_transform(self.eval_transform) if predict_dataset is not None else None
        )
        labelled = [d for d in (self._train_dataset, self._val_dataset, self._test_dataset) if d is not None]
        if classes is None and labelled:
            classes = labelled[0].classes
        self._classes = list(classes) if classes is not None else None
        for dataset in labelled:
            if dataset.classes != self._classes:
                raise ValueError(f"dataset classes {dataset.classes} differ from the data module's {self._classes}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.image_size = image_size
        self.seed = seed

    @classmethod
    def from_folders(
        cls,
        train_folder: str | os.PathLike | None = None,
        val_folder: str | os.PathLike | None = None,
        test_folder: str | os.PathLike | None = None,
        predict_folder: str | os.PathLike | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        image_size: int = 224,
        transforms: Callable | Mapping[str, Callable] | None = None,
        seed: int | None = 0,
        check_images: bool = True,
    ) -> ImageClassificationData:
        """Discover ``<folder>/<class>/<image>`` trees (ImageFolder layout; any image Pillow opens, GIF included).

        Class names come from ``train_folder`` (or the first labelled folder given); the other labelled folders must
        use a subset of them and keep the same label numbers. ``predict_folder`` may be flat (images, no classes).

        Args:
            transforms: ``None`` for the defaults (train: random resized crop + flip; eval: resize + center crop;
                both ImageNet-normalised), a mapping ``{"train": ..., "eval": ...}`` overriding either, or one
                callable used for every split (then determinism of evaluation is the caller's responsibility).
            seed: seeds the shuffling of the training DataLoader, so two runs see batches in the same order.
            check_images: parse every file's header now and check that a JPEG/PNG file has its end marker (about
                0.2 ms per file; see :func:`alkit.vision.images.check_image_header`) so a non-image or a truncated
                JPEG/PNG fails here with its path, not inside a DataLoader worker mid-epoch. Full decoding would cost
                ~2 ms per file (~1 s for 400 images, minutes for large sets) for little gain: a file damaged in
                another way still raises an error naming its path when loaded.
        """
        _check_positive_int("batch_size", batch_size)
        _check_positive_int("num_workers", num_workers, minimum=0)
        _check_positive_int("image_size", image_size)
        folders = {
            "train_folder": _check_folder("train_folder", train_folder),
            "val_folder": _check_folder("val_folder", val_folder),
            "test_folder": _check_folder("test_folder", test_folder),
            "predict_folder": _check_folder("predict_folder", predict_folder),
        }
        if all(folder is None for folder in folders.values()):
            raise ValueError(
                "from_folders needs at least one of train_folder, val_folder, test_folder, predict_folder; got none"
            )
        train_tf, eval_tf = _resolve_transforms(transforms, image_size)

        classes: list[str] | None = None
        labelled: dict[str, ImageFolderDataset | None] = {}
        for name in ("train_folder", "val_folder", "test_folder"):
            folder = folders[name]
            if folder is None:
                labelled[name] = None
                continue
            if classes is None:  # the first labelled folder defines the classes: a classifier needs two or more
                found = find_class_folders(folder)
                if len(found) == 1:
                    raise ValueError(
                        f"{name}={os.fspath(folder)!r} has a single class folder {found}: classification needs at "
                        "least 2 classes; accepted: a folder with 2 or more <class>/ sub-folders of images"
                    )
            dataset = ImageFolderDataset.from_folder(folder, classes, check_images=check_images, argument=name)
            classes = dataset.classes
            labelled[name] = dataset

        predict_dataset: ImageFolderDataset | UnlabelledImageDataset | None = None
        if folders["predict_folder"] is not None:
            folder = folders["predict_folder"]
            if is_flat_folder(folder):
                predict_dataset = UnlabelledImageDataset.from_folder(
                    folder, check_images=check_images, argument="predict_folder"
                )
            else:
                predict_dataset = ImageFolderDataset.from_folder(
                    folder, classes, check_images=check_images, argument="predict_folder"
                )
                classes = classes or predict_dataset.classes

        return cls(
            train_dataset=labelled["train_folder"],
            val_dataset=labelled["val_folder"],
            test_dataset=labelled["test_folder"],
            predict_dataset=predict_dataset,
            classes=classes,
            batch_size=batch_size,
            num_workers=num_workers,
            image_size=image_size,
            train_transform=train_tf,
            eval_transform=eval_tf,
            seed=seed,
        )

    # -- what the data holds -------------------------------------------------------------------------------------

    @property
    def classes(self) -> list[str] | None:
        """Class names; label ``k`` is ``classes[k]``. ``None`` when only a flat predict folder was given."""
        return list(self._classes) if self._classes is not None else None

    @property
    def num_classes(self) -> int | None:
        return len(self._classes) if self._classes is not None else None

    @property
    def train_dataset(self) -> ImageFolderDataset | None:
        """Training images with the *random* training transform."""
        return self._train_dataset

    @property
    def val_dataset(self) -> ImageFolderDataset | None:
        return self._val_dataset

    @property
    def test_dataset(self) -> ImageFolderDataset | None:
        return self._test_dataset

    @property
    def predict_dataset(self) -> ImageFolderDataset | UnlabelledImageDataset | None:
        return self._predict_dataset

    def train_dataset_for_inference(self) -> ImageFolderDataset:
        """The training images in the same order with the same ``targets``, but the *deterministic* eval transform.

        Active learning scores the unlabelled part of the training set with this: random crops and flips at scoring
        time (what Flash did) would make uncertainty depend on the augmentation draw rather than on the image.
        """
        if self._train_dataset is None:
            raise RuntimeError("train_dataset_for_inference() needs a training set; pass train_folder to from_folders")
        return self._train_dataset.with_transform(self.eval_transform)

    # -- DataLoaders ------------------------------------------------------------------------------------------------

    def make_dataloader(self, dataset: Dataset, shuffle: bool = False) -> DataLoader:
        """A DataLoader with this module's batch size and workers (the loops use it for subsets and the pool)."""
        generator = None
        if shuffle and self.seed is not None:
            generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=generator,
        )

    def _loader_or_empty(self, dataset: Dataset | None, shuffle: bool = False) -> DataLoader | list:
        # Lightning calls every *_dataloader hook a data module defines; an empty list means "no batches".
        return self.make_dataloader(dataset, shuffle=shuffle) if dataset is not None else []

    def train_dataloader(self) -> DataLoader:
        if self._train_dataset is None:
            raise RuntimeError("no training set: pass train_folder to ImageClassificationData.from_folders")
        return self.make_dataloader(self._train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader_or_empty(self._val_dataset)

    def test_dataloader(self) -> DataLoader | list:
        if self._test_dataset is None:
            raise RuntimeError("no test set: pass test_folder to ImageClassificationData.from_folders")
        return self.make_dataloader(self._test_dataset)

    def predict_dataloader(self) -> DataLoader:
        if self._predict_dataset is None:
            raise RuntimeError("no predict set: pass predict_folder to ImageClassificationData.from_folders")
        return self.make_dataloader(self._predict_dataset)

    def __repr__(self) -> str:
        sizes = {
            name: len(dataset)
            for name, dataset in (
                ("train", self._train_dataset),
                ("val", self._val_dataset),
                ("test", self._test_dataset),
                ("predict", self._predict_dataset),
            )
            if dataset is not None
        }
        return f"{type(self).__name__}(classes={self._classes}, sizes={sizes}, batch_size={self.batch_size})"

    __str__ = __repr__  # LightningDataModule defines its own __str__
