"""``Folds``: the folds of one cross-validation, computed once and never changed afterwards.

The datamodule serves data from them, the loop checks a resumed run against their fingerprint, the result keeps their
indices and :func:`alkit.kfold.compare` pairs two results fold by fold through them. Sharing one read-only object is
what makes those four agree: an index array edited in place after the split would silently change which samples a
fold held out, so the arrays are made read-only and the object is frozen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple, overload

import numpy as np

__all__ = ["Fold", "Folds", "folds_fingerprint", "repeat_of_each_fold"]


class Fold(NamedTuple):
    """One fold: positions (into the training set) to train on and positions held out for validation."""

    train_indices: np.ndarray
    val_indices: np.ndarray


def _read_only(values: Iterable[int] | np.ndarray) -> np.ndarray:
    array = np.array(values, dtype=np.int64, copy=True)  # a copy: the caller's array stays writable and unaliased
    array.setflags(write=False)
    return array


def folds_fingerprint(folds: Iterable[Fold]) -> str:
    """A short hash of every fold's indices, in order: equal fingerprints mean the very same folds."""
    digest = hashlib.sha256()
    for fold in folds:
        digest.update(np.asarray(fold.train_indices, dtype=np.int64).tobytes())
        digest.update(b"|")
        digest.update(np.asarray(fold.val_indices, dtype=np.int64).tobytes())
        digest.update(b"#")
    return digest.hexdigest()[:16]


def repeat_of_each_fold(val_indices: Sequence[np.ndarray]) -> tuple[int, ...]:
    """Group consecutive folds into repeats: a fold starts a new repeat when it holds out a sample already held out.

    A (repeated) k-fold splitter yields its folds repeat after repeat, each repeat holding every sample out once, so
    this finds ``RepeatedKFold``'s repeats from the indices alone – for any splitter, with no knowledge of its class.
    """
    repeats: list[int] = []
    seen: set[int] = set()
    repeat = 0
    for indices in val_indices:
        held_out = {int(i) for i in np.asarray(indices).tolist()}
        if seen & held_out:
            repeat += 1
            seen = set()
        seen |= held_out
        repeats.append(repeat)
    return tuple(repeats)


@dataclass(frozen=True, eq=False)
class Folds(Sequence[Fold]):
    """The checked folds of a training set of ``n_samples`` samples: ``len()``, indexing, iteration, a fingerprint.

    Build it with :func:`alkit.kfold.make_folds` (which checks every fold); the index arrays are read-only copies.
    """

    folds: tuple[Fold, ...]
    n_samples: int
    _hash: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        frozen = tuple(Fold(_read_only(f.train_indices), _read_only(f.val_indices)) for f in self.folds)
        object.__setattr__(self, "folds", frozen)
        object.__setattr__(self, "n_samples", int(self.n_samples))
        object.__setattr__(self, "_hash", folds_fingerprint(frozen))

    def __len__(self) -> int:
        return len(self.folds)

    @overload
    def __getitem__(self, index: int) -> Fold: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Fold, ...]: ...

    def __getitem__(self, index: int | slice) -> Fold | tuple[Fold, ...]:
        return self.folds[index]

    def __iter__(self) -> Iterator[Fold]:
        return iter(self.folds)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Folds):
            return NotImplemented
        return self.n_samples == other.n_samples and self.fingerprint == other.fingerprint

    def __hash__(self) -> int:
        return hash((self.n_samples, self._hash))

    def __repr__(self) -> str:
        return f"Folds({len(self)} folds of {self.n_samples} samples, {self.n_repeats} repeat(s), {self.fingerprint})"

    @property
    def fingerprint(self) -> str:
        """Hash of all indices (see :func:`folds_fingerprint`): a resumed run and a comparison check it."""
        return self._hash

    @property
    def fold_sizes(self) -> list[tuple[int, int]]:
        """``(n_train, n_held_out)`` per fold."""
        return [(len(f.train_indices), len(f.val_indices)) for f in self.folds]

    @cached_property
    def repeats(self) -> tuple[int, ...]:
        """The repeat each fold belongs to (all ``0`` for a plain k-fold; see :func:`repeat_of_each_fold`)."""
        return repeat_of_each_fold([f.val_indices for f in self.folds])

    @property
    def n_repeats(self) -> int:
        return (max(self.repeats) + 1) if self.folds else 0
