"""Image datasets over folders: class-per-folder (labelled) and flat (unlabelled).

Both keep the list of files apart from the transform, so the same files can be served with the training or the
evaluation pipeline (:meth:`ImageFolderDataset.with_transform`) without scanning the disk again, and labelled
datasets expose ``targets`` so stratified k-fold splits and active-learning label reveal never decode an image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets.folder import make_dataset

from alkit.vision.images import ImageLoadError, check_image_header, is_image_file, list_images, load_rgb

__all__ = ["ImageFolderDataset", "UnlabelledImageDataset", "find_class_folders"]

_IGNORED_FOLDERS = {"__MACOSX"}


def find_class_folders(folder: str | os.PathLike) -> list[str]:
    """Sorted names of the class sub-folders of ``folder``; hidden folders (``.ipynb_checkpoints``) are not classes."""
    return sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.is_dir() and not entry.name.startswith(".") and entry.name not in _IGNORED_FOLDERS
    )


_TAIL_BYTES = 4096
_END_MARKERS = ((b"\xff\xd8\xff", b"\xff\xd9", "JPEG"), (b"\x89PNG\r\n\x1a\n", b"IEND", "PNG"))


def _check_not_truncated(path: str) -> None:
    """A JPEG or PNG file must end with its end marker (JPEG EOI, PNG IEND) in its last few KB.

    A cut-off download or copy keeps a valid header (so :func:`check_image_header` accepts it) but loses the end
    marker. Reading the first and last few bytes costs a fraction of decoding; a file without the marker there is
    decoded in full, so one carrying extra data after its image (a motion photo) still passes. Other formats are
    left to the loader, which names the file too.
    """
    with open(path, "rb") as handle:
        head = handle.read(8)
        magic = next((entry for entry in _END_MARKERS if head.startswith(entry[0])), None)
        if magic is None:
            return
        handle.seek(max(0, os.fstat(handle.fileno()).st_size - _TAIL_BYTES))
        if magic[1] in handle.read():
            return
    try:
        load_rgb(path)
    except ImageLoadError as error:
        reason = error.__cause__ or error
        raise ImageLoadError(f"{path!r} is a truncated or damaged {magic[2]} file: {reason}") from error


def _check_headers(paths: Sequence[str], where: str) -> None:
    bad = []
    for path in paths:
        try:
            check_image_header(path)
            _check_not_truncated(path)
        except ImageLoadError as error:
            bad.append(str(error))
    if bad:
        shown = "\n  ".join(bad[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise ImageLoadError(f"{len(bad)} unreadable image file(s) in {where}:\n  {shown}{more}")


class ImageFolderDataset(Dataset):
    """Labelled images; item ``i`` is ``(transform(rgb_image), target)``.

    Attributes:
        samples: ``(path, target)`` pairs in a stable (sorted) order.
        targets: the integer labels, aligned with ``samples`` (no image is read to get them).
        classes: class names; ``classes[target]`` names a label.
    """

    def __init__(
        self, samples: Sequence[tuple[str, int]], classes: Sequence[str], transform: Callable | None = None
    ) -> None:
        self.samples = [(str(path), int(target)) for path, target in samples]
        self.classes = list(classes)
        self.targets = [target for _, target in self.samples]
        self.transform = transform
        for path, target in self.samples:
            if not 0 <= target < len(self.classes):
                raise ValueError(f"target {target} of {path!r} is outside 0..{len(self.classes) - 1}")

    @classmethod
    def from_folder(
        cls,
        folder: str | os.PathLike,
        classes: Sequence[str] | None = None,
        transform: Callable | None = None,
        check_images: bool = True,
        argument: str = "folder",
    ) -> ImageFolderDataset:
        """Collect ``folder/<class>/**/<image>``; with ``classes`` given, labels follow that order.

        Passing the training folder's ``classes`` to the validation/test folders keeps label ``k`` meaning the same
        class everywhere even when one of those folders lacks a class (plain ``ImageFolder`` would renumber).
        """
        found = find_class_folders(folder)
        if not found:
            raise FileNotFoundError(
                f"{argument}={os.fspath(folder)!r} has no class sub-folders (expected <class>/<image>)"
            )
        if classes is None:
            classes = found
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise ValueError(
                f"{argument}={os.fspath(folder)!r} has class folder(s) {unknown} that are not among the classes "
                f"{list(classes)} of the first labelled folder"
            )
        class_to_idx = {name: index for index, name in enumerate(classes)}
        samples = make_dataset(os.fspath(folder), class_to_idx, is_valid_file=is_image_file, allow_empty=True)
        if not samples:
            raise FileNotFoundError(f"{argument}={os.fspath(folder)!r} contains no image files in {found}")
        if check_images:
            _check_headers([path for path, _ in samples], f"{argument}={os.fspath(folder)!r}")
        return cls(samples, classes, transform)

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.samples]

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.classes)}

    def with_transform(self, transform: Callable | None) -> ImageFolderDataset:
        """The same files and labels, served through ``transform`` (the original dataset is unchanged)."""
        return type(self)(self.samples, self.classes, transform)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        image = load_rgb(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, target

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, classes={self.classes})"


class UnlabelledImageDataset(Dataset):
    """Images without labels (a flat prediction folder); item ``i`` is ``transform(rgb_image)``."""

    def __init__(self, paths: Sequence[str | os.PathLike], transform: Callable | None = None) -> None:
        self.samples = [str(path) for path in paths]
        self.transform = transform

    @classmethod
    def from_folder(
        cls,
        folder: str | os.PathLike,
        transform: Callable | None = None,
        check_images: bool = True,
        argument: str = "folder",
    ) -> UnlabelledImageDataset:
        """Collect the image files directly inside ``folder``."""
        paths = list_images(folder)
        if not paths:
            raise FileNotFoundError(f"{argument}={os.fspath(folder)!r} contains no image files")
        if check_images:
            _check_headers(paths, f"{argument}={os.fspath(folder)!r}")
        return cls(paths, transform)

    @property
    def paths(self) -> list[str]:
        return list(self.samples)

    def with_transform(self, transform: Callable | None) -> UnlabelledImageDataset:
        return type(self)(self.samples, transform)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        image = load_rgb(self.samples[index])
        return self.transform(image) if self.transform is not None else image

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images)"


def is_flat_folder(folder: str | os.PathLike) -> bool:
    """A folder is flat (unlabelled) when it holds image files itself or has no class sub-folders."""
    return bool(list_images(folder)) or not find_class_folders(Path(folder))
