"""Where labels come from: the data itself (simulation) or a user-supplied oracle (a person, a labelling tool).

An oracle is any callable ``oracle(dataset_indices, items) -> labels``: ``dataset_indices`` are indices into the
training dataset, ``items`` a lazy sequence of the corresponding samples (evaluation transforms; an item is only
loaded when the oracle reads it), ``labels`` one class index or class name per index. alkit checks the answer
(count, each label in the class set) *before* anything is marked labelled, so a wrong answer changes nothing.

Labels that a user oracle returns replace the dataset's own targets for those samples, everywhere alkit serves
them (training, validation): :class:`TargetOverrideDataset` applies them in ``__getitem__``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from alkit._io import write_text_atomic

__all__ = [
    "ANSWERS_NAME",
    "Oracle",
    "OracleAnswers",
    "OracleSession",
    "TargetOverrideDataset",
    "check_labels",
    "reveal_labels",
]

#: The file in the run folder that holds every answer a user oracle (a person) gave.
ANSWERS_NAME = "oracle_answers.json"
_ANSWERS_FORMAT = "alkit-oracle-answers"

#: ``oracle(dataset_indices, items) -> labels`` (one class index or class name per index).
Oracle = Callable[[np.ndarray, Sequence[Any]], Sequence[Any]]

_TARGET_KEYS = ("target", "label", "labels", "y")


class LazyItems(Sequence):
    """``dataset[indices[k]]`` loaded on access, so an oracle that only needs indices loads nothing."""

    def __init__(self, dataset: Dataset, indices: np.ndarray) -> None:
        self._dataset = dataset
        self._indices = [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, position: int) -> Any:  # type: ignore[override]
        if isinstance(position, slice):
            return [self._dataset[i] for i in self._indices[position]]
        return self._dataset[self._indices[position]]


def _item_target(item: Any) -> Any:
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[1]
    if isinstance(item, Mapping):
        for key in _TARGET_KEYS:
            if key in item:
                return item[key]
    raise TypeError(
        f"Cannot find the target in a dataset item of type {type(item).__name__}: expected an (input, target) "
        f"tuple/list or a dict with one of the keys {list(_TARGET_KEYS)}."
    )


def reveal_labels(dataset: Dataset, indices: np.ndarray, items: Sequence[Any] | None = None) -> list[Any]:
    """The labels already in the data for ``indices`` (the default, simulated oracle).

    Reads ``dataset.targets`` when the dataset has it (no sample is loaded), else the target of each item.
    """
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        try:
            if len(targets) == len(dataset):  # type: ignore[arg-type]
                return [targets[int(i)] for i in indices]
        except TypeError:
            pass
    items = items if items is not None else LazyItems(dataset, np.asarray(indices))
    return [_item_target(items[k]) for k in range(len(items))]


def _as_class_index(label: Any, num_classes: int, classes: Sequence[str] | None) -> int | None:
    if isinstance(label, torch.Tensor):
        if label.numel() != 1:
            return None
        label = label.item()
    if isinstance(label, np.generic):
        label = label.item()
    if isinstance(label, str):
        if classes is not None and label in classes:
            return list(classes).index(label)
        return None
    if isinstance(label, bool) or not isinstance(label, int):
        return None
    return label if 0 <= label < num_classes else None


def check_labels(
    labels: Any, indices: np.ndarray, num_classes: int, classes: Sequence[str] | None = None, source: str = "oracle"
) -> list[int]:
    """Class indices for ``labels``, or a ``ValueError`` naming the first bad label; nothing is labelled here.

    Accepts integer class indices in ``[0, num_classes)`` (Python, NumPy or 0-d tensors) and class names.
    """
    if isinstance(labels, (torch.Tensor, np.ndarray)):
        labels = list(labels.reshape(-1)) if labels.ndim > 0 else [labels]
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        try:
            labels = list(labels)
        except TypeError:
            raise ValueError(
                f"The {source} must return a sequence of labels, one per index; got {type(labels).__name__}."
            ) from None
    if len(labels) != len(indices):
        raise ValueError(
            f"The {source} returned {len(labels)} label(s) for {len(indices)} sample(s) "
            f"(dataset indices {list(map(int, indices))}); expected exactly one label per sample. Nothing was labelled."
        )
    accepted = f"class indices 0..{num_classes - 1}" + (f" or class names {list(classes)}" if classes else "")
    checked = []
    for index, label in zip(indices, labels):
        class_index = _as_class_index(label, num_classes, classes)
        if class_index is None:
            raise ValueError(
                f"The {source} returned the label {label!r} for dataset index {int(index)}, which is not a known "
                f"class; accepted: {accepted}. Nothing was labelled."
            )
        checked.append(class_index)
    return checked


class TargetOverrideDataset(Dataset):
    """``dataset`` with some targets replaced (labels given by a person or a user oracle).

    ``overrides`` maps dataset index -> class index and is shared, not copied: labels added later are served at once.
    A target stored as a tensor stays a tensor of the same dtype, so batches collate as before.
    """

    def __init__(self, dataset: Dataset, overrides: dict[int, int]) -> None:
        self.dataset = dataset
        self.overrides = overrides

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        label = self.overrides.get(int(index))
        if label is None:
            return item
        return _replace_target(item, label)

    @property
    def targets(self) -> list[Any] | None:
        """The dataset's ``targets`` with the overrides applied (None when the dataset has no ``targets``)."""
        targets = getattr(self.dataset, "targets", None)
        if targets is None:
            return None
        merged = list(targets)
        for index, label in self.overrides.items():
            merged[index] = label
        return merged


def _replace_target(item: Any, label: int) -> Any:
    old = _item_target(item)
    new: Any = torch.as_tensor(label, dtype=old.dtype) if isinstance(old, torch.Tensor) else label
    if isinstance(item, tuple):
        return (item[0], new, *item[2:])
    if isinstance(item, list):
        return [item[0], new, *item[2:]]
    updated = dict(item)
    for key in _TARGET_KEYS:
        if key in updated:
            updated[key] = new
            break
    return updated


class OracleAnswers:
    """Every answer a user oracle gave (dataset index -> class index, with the round), kept on disk.

    The file (JSON, ``{"format": "alkit-oracle-answers", "version": 1, "answers": [{"index", "label", "round"}]}``)
    is rewritten atomically and fsync'd after each answer batch, before the answer is used, so a crash at any moment
    loses no answer; a resume reads it and asks only for indices not answered yet.
    """

    def __init__(self, num_classes: int, size: int) -> None:
        self.num_classes = num_classes
        self.size = size
        self.path: Path | None = None
        self.answers: dict[int, tuple[int, int]] = {}

    def attach(self, path: str | os.PathLike) -> None:
        """Use ``path``: answers already in it are read (they win), answers given so far are written to it."""
        path = Path(path)
        if path.exists():
            for index, value in self._read(path).items():
                self.answers[index] = value
        self.path = path
        if self.answers:
            self._write()

    def known(self, indices: np.ndarray) -> dict[int, int]:
        """Answers already given for ``indices`` (answers for other indices are ignored)."""
        return {int(i): self.answers[int(i)][0] for i in indices if int(i) in self.answers}

    def record(self, indices: Sequence[int], labels: Sequence[int], round_index: int) -> None:
        """Keep the answers; on disk before this returns (when a file is attached)."""
        for index, label in zip(indices, labels):
            self.answers[int(index)] = (int(label), int(round_index))
        if self.path is not None:
            self._write()

    def _write(self) -> None:
        assert self.path is not None
        records = [{"index": i, "label": lab, "round": r} for i, (lab, r) in sorted(self.answers.items())]
        text = json.dumps({"format": _ANSWERS_FORMAT, "version": 1, "answers": records}, indent=1)
        write_text_atomic(self.path, text + "\n")

    def _read(self, path: Path) -> dict[int, tuple[int, int]]:
        def bad(why: str) -> ValueError:
            return ValueError(
                f"The oracle answers file {str(path)!r} is not an alkit answers file of this run ({why}); "
                "move it away or point `answers_file` elsewhere."
            )

        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise bad(f"unreadable: {error}") from None
        if not isinstance(data, dict) or data.get("format") != _ANSWERS_FORMAT or data.get("version") != 1:
            raise bad("missing format/version header")
        records = data.get("answers")
        if not isinstance(records, list):
            raise bad("`answers` is not a list")
        out: dict[int, tuple[int, int]] = {}
        for record in records:
            if not isinstance(record, dict) or not all(
                isinstance(record.get(key), int) and not isinstance(record.get(key), bool)
                for key in ("index", "label", "round")
            ):
                raise bad(f"bad record {record!r}")
            index, label = record["index"], record["label"]
            if not 0 <= index < self.size:
                raise bad(f"dataset index {index} out of range for a training set of {self.size}")
            if not 0 <= label < self.num_classes:
                raise bad(f"label {label} for dataset index {index} is not a class index 0..{self.num_classes - 1}")
            out[index] = (label, record["round"])
        return out


class OracleSession:
    """A user oracle as a run uses it: each sample asked at most once, every answer on disk before it is used, and
    the answers served as target overrides.

    Args:
        oracle: ``oracle(dataset_indices, items) -> labels``, or None (simulation: nothing is asked, nothing kept).
        items: the training set with evaluation transforms; an oracle reads the samples it is asked about from it.
        num_classes, classes: the accepted answers (class indices, or class names).
        answers_file: the file of :class:`OracleAnswers`; None until :meth:`attach` names one.

    Initial labels may be chosen before the answers file is known (the loop names it when ``fit`` starts); they are
    :meth:`defer`-red and asked for when the file is attached or the first labelled item is read, so a resumed run
    reads them from the file instead of asking again.
    """

    def __init__(
        self,
        oracle: Oracle | None,
        items: Dataset,
        num_classes: int,
        classes: Sequence[str] | None,
        answers_file: str | os.PathLike | None = None,
    ) -> None:
        self.oracle = oracle
        self.items = items
        self.num_classes = num_classes
        self.classes = classes
        #: dataset index -> class index of every label the oracle (or a person, through `keep`) gave; shared with the
        #: datamodule's `TargetOverrideDataset` views, so a new label is served at once
        self.overrides: dict[int, int] = {}
        self.answers = OracleAnswers(num_classes, len(items))  # type: ignore[arg-type]
        self.pending = np.zeros(0, dtype=np.int64)
        if answers_file is not None:
            self.answers.attach(answers_file)

    def ask(self, indices: np.ndarray, round_index: int) -> list[int]:
        """The oracle's labels for ``indices``: answers on file first, the oracle only for the others.

        A new answer is checked, then on disk (atomically, fsync'd) before it is returned, i.e. before anything is
        labelled; a wrong answer raises and changes nothing.
        """
        known = self.answers.known(indices)
        missing = np.asarray([i for i in indices if int(i) not in known], dtype=np.int64)
        if missing.size:
            answer = self.oracle(missing.copy(), LazyItems(self.items, missing))  # type: ignore[misc]
            checked = check_labels(answer, missing, self.num_classes, self.classes, source="oracle")
            self.answers.record(missing, checked, round_index)
            known.update({int(i): label for i, label in zip(missing, checked)})
        return [known[int(i)] for i in indices]

    def keep(self, indices: np.ndarray, labels: Sequence[int]) -> None:
        """Serve ``labels`` (checked class indices) as the targets of ``indices`` from now on."""
        self.overrides.update({int(i): int(label) for i, label in zip(indices, labels)})

    def defer(self, indices: np.ndarray) -> None:
        """Ask for the labels of ``indices`` later (see :meth:`answer_pending`)."""
        self.pending = np.asarray(indices, dtype=np.int64)

    def answer_pending(self, round_index: int) -> None:
        """Ask for the deferred labels not answered yet; a wrong answer raises and leaves them pending."""
        pending = np.asarray([i for i in self.pending if int(i) not in self.overrides], dtype=np.int64)
        if pending.size:
            self.keep(pending, self.ask(pending, round_index))
        self.pending = np.zeros(0, dtype=np.int64)

    def attach(self, path: str | os.PathLike, round_index: int) -> None:
        """Keep the answers in ``path`` from now on (answers in it are read and win), then ask the deferred ones."""
        self.answers.attach(path)
        self.answer_pending(round_index)
