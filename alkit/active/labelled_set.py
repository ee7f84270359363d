"""``LabelledSet``: which samples of a training set are labelled, when, and which of them validate.

One index space only: every index here is a *dataset index*, a position in the training set the labels belong to.
Pool positions, subset positions and BaaL's pool-relative indices never enter, so labelling index ``i`` labels
exactly sample ``i``, whatever order or subset the pool was scored in.

The state is one integer per sample, the labelling step (0: unlabelled, ``k``: labelled by the ``k``-th call of
:meth:`LabelledSet.label`, the initial labels included), which is BaaL's ``labelled_map`` convention: the rounds can
be read back from it, and a BaaL ``ActiveLearningDataset`` can serve the same array without a copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["LabelledSet"]


class LabelledSet:
    """The labelled samples of a training set of ``size`` samples, in dataset indices.

    Args:
        size: number of samples in the training set.
        labelled: optional mask of samples labelled from the start (non-zero = labelled, at step 1).
    """

    def __init__(self, size: int, labelled: Sequence[Any] | np.ndarray | None = None) -> None:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"`size` must be an integer >= 1, got {size!r}.")
        self.size = int(size)
        #: labelling step of each sample (0: unlabelled); updated in place, so a view of it stays current
        self.steps = np.zeros(self.size, dtype=int)
        self._val_indices = np.zeros(0, dtype=np.int64)
        if labelled is not None:
            mask = np.asarray(labelled).reshape(-1)
            if mask.shape[0] != self.size:
                raise ValueError(
                    f"`labelled` is a mask of length {mask.shape[0]} for a training set of {self.size} samples."
                )
            self.steps[mask != 0] = 1

    # -- reading -------------------------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """Number of labelling steps so far (the highest step number)."""
        return int(self.steps.max())

    def labelled_indices(self) -> np.ndarray:
        """Every labelled sample (validation included), in label order: by step, then by index within a step."""
        labelled = np.flatnonzero(self.steps)
        return labelled[np.argsort(self.steps[labelled], kind="stable")].astype(np.int64)

    def unlabelled_indices(self) -> np.ndarray:
        """Every unlabelled sample, in index order."""
        return np.flatnonzero(self.steps == 0).astype(np.int64)

    def val_indices(self) -> np.ndarray:
        """The labelled samples held out for validation, in index order."""
        return self._val_indices.copy()

    def train_indices(self) -> np.ndarray:
        """The labelled samples not held out for validation, in index order."""
        return np.setdiff1d(np.flatnonzero(self.steps), self._val_indices).astype(np.int64)

    # -- changing --------------------------------------------------------------------------------------------------
    def check_new(self, indices: Any, name: str = "indices") -> np.ndarray:
        """``indices`` as an int64 array if they can be labelled (distinct, in range, unlabelled), else a ValueError
        naming ``name`` and the offending values. Nothing changes."""
        array = np.asarray(indices).reshape(-1)
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"`{name}` must be integer dataset indices, got {indices!r}.")
        array = array.astype(np.int64)
        out_of_range = array[(array < 0) | (array >= self.size)]
        if out_of_range.size:
            raise ValueError(
                f"`{name}` {out_of_range.tolist()} are out of range for a training set of {self.size}; accepted: "
                f"0..{self.size - 1}."
            )
        if np.unique(array).size != array.size:
            raise ValueError(f"`{name}` contains duplicates: {array.tolist()}.")
        already = array[self.steps[array] != 0]
        if already.size:
            raise ValueError(
                f"`{name}`: dataset indices {already.tolist()} are already labelled; only unlabelled samples can be "
                "labelled."
            )
        return array

    def label(self, indices: Any) -> np.ndarray:
        """Label ``indices`` (dataset indices) as the next step; every check runs first. Returns them (int64)."""
        array = self.check_new(indices)
        if array.size:
            self.steps[array] = self.step + 1
        return array

    def hold_out(self, indices: Any) -> None:
        """Keep the labelled samples ``indices`` for validation (they are never trained on)."""
        array = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1))
        if array.size and (array.min() < 0 or array.max() >= self.size or not self.steps[array].all()):
            raise ValueError(f"Validation indices {array.tolist()} must be labelled samples of this training set.")
        self._val_indices = array

    # -- checkpoints -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain Python only (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "dataset_size": self.size,
            "labelled_map": [int(v) for v in self.steps],
            "val_indices": [int(i) for i in self._val_indices],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a state of another training set is refused and nothing changes."""
        steps = np.asarray(state["labelled_map"], dtype=int)
        if state["dataset_size"] != self.size or steps.shape != (self.size,):
            raise ValueError(
                f"The checkpoint's active-learning state is for a training set of {state['dataset_size']} samples, "
                f"but this datamodule's training set has {self.size}: it belongs to another dataset. The labelled "
                "set is unchanged."
            )
        if (steps < 0).any():
            raise ValueError("The checkpoint's labelled map has negative steps; the labelled set is unchanged.")
        val = np.asarray(state["val_indices"], dtype=np.int64)
        if val.size and (val.min() < 0 or val.max() >= self.size or not steps[val].all()):
            raise ValueError("The checkpoint's validation indices are not labelled samples of this dataset.")
        self.steps[:] = steps  # in place: views of the array (BaaL's dataset) stay current
        self._val_indices = np.unique(val)

    def __repr__(self) -> str:
        return (
            f"LabelledSet(size={self.size}, labelled={int((self.steps != 0).sum())}, "
            f"validation={self._val_indices.size}, steps={self.step})"
        )
