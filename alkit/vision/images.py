"""Reading image files: which files count as images, a cheap header check, and loading any mode as RGB.

torchvision's ``ImageFolder`` only accepts a fixed list of extensions (no ``.gif``) and its loader converts palette
images with transparency through a lossy path that warns. Real folders such as the hymenoptera data set contain a
palette GIF, ``.jpeg`` files and names with spaces, so alkit decides "is this an image?" from what the installed
Pillow can actually open.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageLoadError", "check_image_header", "image_extensions", "is_image_file", "list_images", "load_rgb"]


class ImageLoadError(RuntimeError):
    """An image file could not be read; the message always names the file."""


@lru_cache(maxsize=1)
def image_extensions() -> tuple[str, ...]:
    """Lower-case extensions (with the dot) of every format the installed Pillow can *open* (not only save)."""
    Image.init()
    return tuple(sorted(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN))


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a non-hidden file with an openable extension (case-insensitive).

    Hidden files are skipped because macOS leaves ``._name.jpg`` resource forks next to real images in zips and
    shared folders; they carry an image extension but no image.
    """
    name = os.path.basename(os.fspath(path))
    return not name.startswith(".") and name.lower().endswith(image_extensions())


def check_image_header(path: str | os.PathLike) -> None:
    """Raise :class:`ImageLoadError` naming ``path`` unless Pillow recognises the file as an image.

    Only the header is parsed (``Image.open`` is lazy): about 0.2 ms per file, so checking every file when a data
    module is built costs well under a second for thousands of images, and empty, truncated-to-nothing or non-image
    files fail at construction instead of inside a DataLoader worker halfway through an epoch. A file whose header is
    fine but whose pixel data is truncated still fails later, in :func:`load_rgb`, which names the file as well.
    """
    try:
        with Image.open(path):
            pass  # Image.open parses the header and identifies the format; pixels stay undecoded
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ImageLoadError(f"{os.fspath(path)!r} is not a readable image: {error}") from error


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` into a 3-channel RGB image, whatever its mode (palette ``P``, ``RGBA``, ``L``, ``CMYK`` ...).

    Palette images go through RGBA first so a transparency entry in the palette is honoured instead of triggering
    Pillow's "palette images with transparency" warning; EXIF orientation is applied so photos are upright.
    Errors are re-raised as :class:`ImageLoadError` with the path, so a broken file found by a DataLoader worker
    is identifiable from the message the main process shows.
    """
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode == "P":
                image = image.convert("RGBA")
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ImageLoadError(f"cannot load image {os.fspath(path)!r}: {error}") from error


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[str]:
    """Sorted paths of the image files directly in ``folder`` (or below it when ``recursive``)."""
    folder = Path(folder)
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(str(p) for p in candidates if p.is_file() and is_image_file(p))
