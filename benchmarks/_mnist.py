"""MNIST for the label-efficiency benchmark: the canonical ``.gz`` files, checked, read in memory, split as Gal et al.

The four files are read straight from their gzip streams (nothing is decompressed to disk, so the read-only
``shared/`` folder is never written to) after their md5 sums are checked against the values torchvision checks
(listed in ``shared/README.md``): a truncated or different download would otherwise silently change the numbers.

The split follows Gal, Islam & Ghahramani (2017): a validation set of ``val_size`` training images (model selection
only), the standard 10,000-image test set (optionally a fixed class-stratified subset, to save CPU time), and the
rest of the training set, from which the initial labels (balanced per class) and the pool are drawn.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from alkit.lightning import pl

__all__ = [
    "MNIST_FILES",
    "MNISTActiveData",
    "balanced_mask",
    "default_mnist_dir",
    "load_mnist",
    "stratified_subset",
]

#: file name -> md5 of the ``.gz`` file (torchvision's values, also in ``shared/README.md``).
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


def default_mnist_dir() -> Path:
    """``../shared/data/MNIST/raw`` beside the repository (or ``shared/`` inside it, where a checkout carries one)."""
    repo = Path(__file__).resolve().parents[1]
    candidates = [root / "shared" / "data" / "MNIST" / "raw" for root in (repo.parent, repo)]
    return next((path for path in candidates if path.is_dir()), candidates[0])


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_mnist_dir(raw_dir: Path) -> None:
    """Raise ``FileNotFoundError`` / ``ValueError`` unless ``raw_dir`` holds the four canonical MNIST ``.gz`` files."""
    raw_dir = Path(raw_dir)
    missing = [name for name in MNIST_FILES if not (raw_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"`--data {raw_dir}`: missing MNIST file(s) {missing}; expected the four canonical .gz files "
            f"{list(MNIST_FILES)} (as in ../shared/data/MNIST/raw)."
        )
    for name, expected in MNIST_FILES.items():
        actual = _md5(raw_dir / name)
        if actual != expected:
            raise ValueError(
                f"`--data {raw_dir}`: {name} has md5 {actual}, expected {expected} (the canonical file): the file is "
                "corrupt or not MNIST."
            )


def _read_idx(path: Path, kind: str) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    magic = int.from_bytes(data[:4], "big")
    if kind == "images":
        if magic != 2051:
            raise ValueError(f"{path} is not an idx3 image file (magic {magic}).")
        count, rows, cols = (int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(3))
        return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)
    if magic != 2049:
        raise ValueError(f"{path} is not an idx1 label file (magic {magic}).")
    count = int.from_bytes(data[4:8], "big")
    return np.frombuffer(data, dtype=np.uint8, offset=8).reshape(count)


def load_mnist(raw_dir: Path, verify: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(train_images, train_labels, test_images, test_labels)`` as uint8 arrays, md5-checked first."""
    raw_dir = Path(raw_dir)
    if verify:
        check_mnist_dir(raw_dir)
    return (
        _read_idx(raw_dir / "train-images-idx3-ubyte.gz", "images"),
        _read_idx(raw_dir / "train-labels-idx1-ubyte.gz", "labels"),
        _read_idx(raw_dir / "t10k-images-idx3-ubyte.gz", "images"),
        _read_idx(raw_dir / "t10k-labels-idx1-ubyte.gz", "labels"),
    )


def balanced_mask(targets: np.ndarray, per_class: int, rng: np.random.Generator, exclude=None) -> np.ndarray:
    """A 0/1 mask choosing ``per_class`` samples of every class at random (Gal et al.'s balanced initial set)."""
    targets = np.asarray(targets)
    allowed = np.ones(targets.shape[0], dtype=bool)
    if exclude is not None:
        allowed[np.asarray(exclude, dtype=np.int64)] = False
    mask = np.zeros(targets.shape[0], dtype=int)
    for label in np.unique(targets):
        candidates = np.flatnonzero((targets == label) & allowed)
        if candidates.size < per_class:
            raise ValueError(f"Class {label} has {candidates.size} samples, fewer than the {per_class} asked for.")
        mask[rng.choice(candidates, size=per_class, replace=False)] = 1
    return mask


def stratified_subset(targets: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``size`` samples with the class proportions of ``targets`` (largest remainders)."""
    targets = np.asarray(targets)
    if size >= targets.shape[0]:
        return np.arange(targets.shape[0])
    labels, counts = np.unique(targets, return_counts=True)
    exact = counts * size / targets.shape[0]
    take = np.floor(exact).astype(int)
    take[np.argsort(exact - take)[::-1][: size - take.sum()]] += 1
    chosen = [rng.choice(np.flatnonzero(targets == label), size=k, replace=False) for label, k in zip(labels, take)]
    return np.sort(np.concatenate(chosen))


class _Batches(Dataset):
    """Whole batches of an in-memory tensor pair, for evaluation loaders that need no per-sample Python calls."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[window], self.y[window]


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float [N, 1, 28, 28] in [0, 1] (the authors' ``X / 255``, no mean subtraction)."""
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


class MNISTActiveData(pl.LightningDataModule):
    """MNIST split for active learning: training set (initial labels + pool), validation set, test set.

    Follows the protocol alkit's ``ActiveLearningDataModule`` reads: ``train_dataset`` with ``targets``,
    ``val_dataset`` (so the validation set is this fixed one, never trained on), ``test_dataset``, ``num_classes``,
    ``batch_size``. MNIST needs no augmentation, so the training set is also the inference view of the pool.

    Args:
        raw_dir: folder of the four ``.gz`` files.
        val_size: validation images drawn (class-stratified, with ``seed``) from the 60,000 training images.
        test_size: test images: 10,000 (all) or a fixed class-stratified subset (drawn with seed 0, so every run
            and every seed is evaluated on the same images).
        batch_size: training batch size.
        eval_batch_size: batch size of the validation and test passes.
        seed: draws the validation set (and the ``train_size`` subset).
        train_size: keep only a class-stratified random subset of this many of the remaining training images
            (drawn with ``seed``); ``None`` keeps them all. For studies that cluster the whole unlabelled set (a
            TypiClust cold start), whose cost grows with its size.
    """

    def __init__(
        self,
        raw_dir: Path,
        val_size: int = 100,
        test_size: int = 10_000,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        seed: int = 0,
        train_size: int | None = None,
    ) -> None:
        super().__init__()
        train_x, train_y, test_x, test_y = load_mnist(raw_dir)
        rng = np.random.default_rng(seed)
        val_indices = stratified_subset(train_y, val_size, rng)
        keep = np.ones(train_y.shape[0], dtype=bool)
        keep[val_indices] = False
        if train_size is not None:
            remaining = np.flatnonzero(keep)
            if not 10 <= train_size <= remaining.size:
                raise ValueError(f"`train_size={train_size}` is invalid; accepted: 10..{remaining.size} or None.")
            keep[:] = False
            keep[remaining[stratified_subset(train_y[remaining], train_size, rng)]] = True
        test_indices = stratified_subset(test_y, test_size, np.random.default_rng(0))

        self.train_images, self.train_targets = (
            _to_tensor(train_x[keep]),
            torch.from_numpy(train_y[keep].astype(np.int64)),
        )
        self.train_dataset = TensorDataset(self.train_images, self.train_targets)
        self.train_dataset.targets = self.train_targets.tolist()  # read without loading images
        self.val_x, self.val_y = (
            _to_tensor(train_x[val_indices]),
            torch.from_numpy(train_y[val_indices].astype(np.int64)),
        )
        self.val_dataset = TensorDataset(self.val_x, self.val_y)
        self.test_x = _to_tensor(test_x[test_indices])
        self.test_y = torch.from_numpy(test_y[test_indices].astype(np.int64))
        self.test_dataset = TensorDataset(self.test_x, self.test_y)
        self.num_classes = 10
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = 0

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Batches(self.val_x, self.val_y, self.eval_batch_size), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(_Batches(self.test_x, self.test_y, self.eval_batch_size), batch_size=None)
