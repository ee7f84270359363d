"""Fixtures for the vision tests: tiny synthetic image folders and the shared real data (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path | None:
    """``shared/`` inside the checkout if there is one, else next to it (``../shared``)."""
    for candidate in (REPO_ROOT / "shared", REPO_ROOT.parent / "shared"):
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(autouse=True)
def _single_thread(one_torch_thread):
    """Every test here runs on one torch thread (see ``tests/conftest.py``)."""


def write_image(path: Path, mode: str = "RGB", size: tuple[int, int] = (40, 30), seed: int = 0) -> Path:
    """A random image in ``mode`` saved with the format its extension implies."""
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8), "RGB")
    if mode == "P":
        image = rgb.quantize(colors=16)
    elif mode == "RGBA":
        image = rgb.convert("RGBA")
        image.putalpha(Image.fromarray(rng.integers(0, 256, size=(size[1], size[0]), dtype=np.uint8), "L"))
    else:
        image = rgb.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def make_tree(root: Path, layout: dict[str, list[tuple[str, str]]], size: tuple[int, int] = (40, 30)) -> Path:
    """``root/<class>/<name>`` for each ``(name, mode)`` of each class; every image has distinct content."""
    seed = 0
    for class_name, files in layout.items():
        for name, mode in files:
            write_image(root / class_name / name, mode, size, seed)
            seed += 1
    return root


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """Two classes, 6 images each, covering modes and extensions a real folder has (GIF palette, spaces, .JPEG)."""
    return make_tree(
        tmp_path / "train",
        {
            "ants": [
                ("a0.png", "RGBA"),
                ("a1 with space.gif", "P"),
                ("a2.JPEG", "L"),
                ("a3.bmp", "RGB"),
                ("a4.jpg", "RGB"),
                ("a5.tiff", "RGB"),
            ],
            "bees": [
                ("b0.jpg", "RGB"),
                ("b1.jpeg", "L"),
                ("b2.webp", "RGB"),
                ("b3.png", "P"),
                ("b4.gif", "L"),
                ("b5.jpg", "RGB"),
            ],
        },
    )


@pytest.fixture
def hymenoptera_dir() -> Path:
    shared = shared_dir()
    path = shared / "data" / "hymenoptera_data" if shared else None
    if path is None or not (path / "train").is_dir():
        pytest.skip("shared hymenoptera data (shared/data/hymenoptera_data) not available")
    return path


@pytest.fixture
def mobilenet_weights() -> Path:
    shared = shared_dir()
    path = shared / "data" / "weights" / "mobilenet_v2_imagenet_features.pth" if shared else None
    if path is None or not path.is_file():
        pytest.skip("shared MobileNetV2 weights (shared/data/weights) not available")
    return path
