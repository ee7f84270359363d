"""Turn ``cv=`` (a number of folds, a scikit-learn splitter or ``(train, held_out)`` pairs) into checked, deterministic
:class:`~alkit.kfold.Folds`.

:func:`resolve_cv` is the one place ``cv``, ``k`` and ``splitter`` are reconciled. The splitting itself is
scikit-learn's: any object with ``split(X, y, groups)`` and ``get_n_splits`` works (``KFold``, ``StratifiedKFold``,
``GroupKFold``, ``ShuffleSplit``, ``RepeatedStratifiedKFold``, ...), and the fold count is its ``get_n_splits``. This
module only adds what a training loop needs on top of it:

* every bad input (``k < 2``, more folds than samples or than members of the smallest class, ``groups`` of the
  wrong length, an object without ``split``, no training data) is rejected with an error that names the argument,
  the value and what is accepted, *before* any model is trained;
* every fold the splitter yields is checked before any model is trained: training and held-out parts non-empty,
  within ``range(n_samples)`` and disjoint (the error names the fold, the problem and a few offending indices);
* folds are a pure function of the data and the seed: a splitter left with ``random_state=None`` is pinned to the
  seed, so every ``ddp_spawn`` rank and every resumed run computes the very same folds;
* indices come back as read-only ``int64`` numpy arrays, like ``sklearn.model_selection.cross_validate``'s.
"""

from __future__ import annotations

import copy
import inspect
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    RepeatedKFold,
    RepeatedStratifiedKFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    check_cv,
)
from torch.utils.data import Dataset, Subset, TensorDataset

from alkit.kfold.folds import Fold, Folds

__all__ = [
    "DEFAULT_K",
    "Fold",
    "Folds",
    "check_splitter",
    "make_folds",
    "make_splitter",
    "read_targets",
    "resolve_cv",
    "splitter_needs_groups",
    "splitter_needs_targets",
]

#: Number of folds when neither ``cv`` nor ``k`` is given (scikit-learn's default too).
DEFAULT_K = 5


def resolve_cv(cv: Any = None, k: int | None = None, *, splitter: Any = None) -> int | Any | None:
    """The one place ``cv=``, ``k=`` and the older ``splitter=`` become a fold count or a splitter object.

    Like scikit-learn's ``check_cv``: an int is a number of folds, an object with ``split`` is a splitter, any other
    iterable is a fixed list of ``(train, held_out)`` index pairs (wrapped by ``check_cv`` itself into a splitter
    with ``get_n_splits``). Unlike ``check_cv``, an int does not become an unshuffled ``KFold`` here:
    :func:`make_folds` turns it into a shuffled, seeded one, so a training set sorted by class still gives mixed
    folds. Returns ``None`` when nothing was given (the caller's fold count or :data:`DEFAULT_K` then applies).

    ``k`` is checked against an int ``cv`` here and against a splitter's ``get_n_splits`` by :func:`make_folds`
    (some splitters only know their count once they see the data).
    """
    if k is not None:
        _check_k(k)
    if splitter is not None and cv is not None:
        raise ValueError(
            f"cv={_short(cv)} and splitter={_short(splitter)} were both given: pass one of them (splitter= is the "
            "older name of cv=)"
        )
    if splitter is not None:
        check_splitter(splitter)
        cv = splitter
    if cv is None:
        return None if k is None else int(k)
    if isinstance(cv, bool) or isinstance(cv, (str, bytes, float)):
        raise TypeError(
            f"cv={cv!r} is invalid: expected an int >= 2 (the number of folds), a scikit-learn splitter such as "
            "KFold(5) or StratifiedKFold(5), or an iterable of (train, held_out) index pairs"
        )
    if isinstance(cv, numbers.Integral):
        _check_k(cv, "cv")
        if k is not None and int(k) != int(cv):
            raise ValueError(f"k={k} and cv={cv} disagree: pass one of them (both mean the number of folds)")
        return int(cv)
    if hasattr(cv, "split"):
        check_splitter(cv, "cv")
        return cv
    if not isinstance(cv, Iterable):
        raise TypeError(
            f"cv={cv!r} is invalid: expected an int >= 2, a splitter with split(X, y, groups) and get_n_splits(), "
            "or an iterable of (train, held_out) index pairs"
        )
    pairs = list(cv)
    for index, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(
                f"cv[{index}]={_short(pair)} is invalid: every item of an iterable cv must be one (train, held_out) "
                "pair of index arrays"
            )
    if not pairs:
        raise ValueError("cv=[] is invalid: an iterable cv needs at least one (train, held_out) pair")
    return check_cv(pairs)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def check_splitter(splitter: Any, argument: str = "splitter") -> None:
    """Reject anything that is not splitter-like: it needs ``split(X, y, groups)`` and ``get_n_splits()``."""
    split = None if isinstance(splitter, (str, bytes)) else getattr(splitter, "split", None)
    accepts = callable(split)
    if accepts:
        try:
            inspect.signature(split).bind(None, None, None)
        except TypeError:
            accepts = False
        except ValueError:  # no signature available (some builtins): trust it
            pass
    if not accepts:
        raise TypeError(
            f"{argument}={splitter!r} is invalid: it has no split(X, y, groups) method; pass a scikit-learn "
            "splitter such as KFold(5), StratifiedKFold(5), GroupKFold(5) or ShuffleSplit(5)"
        )
    if not callable(getattr(splitter, "get_n_splits", None)):
        raise TypeError(
            f"{argument}={splitter!r} is invalid: it has no get_n_splits(X, y, groups) method, which says how many "
            "folds it makes (every scikit-learn splitter has one)"
        )


def splitter_needs_targets(splitter: Any) -> bool:
    """Whether ``splitter.split`` requires ``y`` (scikit-learn's stratified splitters do)."""
    return any("Stratified" in cls.__name__ for cls in type(splitter).__mro__)


def splitter_needs_groups(splitter: Any) -> bool:
    """Whether ``splitter.split`` requires ``groups`` (scikit-learn marks those with ``GroupsConsumerMixin``)."""
    return any(cls.__name__ == "GroupsConsumerMixin" for cls in type(splitter).__mro__)


def make_splitter(k: int, *, stratify: bool = False, grouped: bool = False, seed: int = 0) -> Any:
    """The scikit-learn splitter ``kfold_fit(k=...)`` uses when no splitter is given.

    Shuffled (seeded) so that a training set sorted by class or by source does not give folds of a single class.
    """
    _check_k(k)
    if stratify and grouped:
        return StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    if grouped:
        return GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    if stratify:
        return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return KFold(n_splits=k, shuffle=True, random_state=seed)


def make_folds(
    n_samples: int,
    k: int | None = None,
    *,
    splitter: Any = None,
    targets: Sequence[Any] | np.ndarray | torch.Tensor | None = None,
    stratify: bool = False,
    groups: Sequence[Any] | np.ndarray | torch.Tensor | None = None,
    seed: int = 0,
    cv: Any = None,
) -> Folds:
    """Split ``n_samples`` training samples into folds, checking the input first.

    Args:
        n_samples: size of the training set the folds index into.
        k: number of folds when no splitter is given (then a seeded ``KFold``/``StratifiedKFold``/
            ``GroupKFold``/``StratifiedGroupKFold`` is used). With a splitter, ``k`` may be left ``None``; when
            given it must equal the splitter's ``get_n_splits``.
        splitter: the older name of ``cv=`` for a splitter object.
        cv: as scikit-learn's ``cv`` (see :func:`resolve_cv`): an int, a splitter with ``split(X, y, groups)`` and
            ``get_n_splits``, or an iterable of ``(train, held_out)`` pairs. A splitter is copied, never mutated; a
            ``random_state`` of ``None`` is replaced by ``seed`` so the folds are reproducible (and identical on
            every process).
        targets: one label per sample; required when ``stratify`` or when the splitter is a stratified one.
        stratify: keep class ratios in every fold (uses ``targets``).
        groups: one group id per sample; samples of one group never straddle a train/held-out boundary.
        seed: seed of the default splitter / of a splitter left unseeded.

    Returns:
        The :class:`~alkit.kfold.Folds`: one :class:`Fold` per split, read-only ``int64`` arrays of positions in
        ``range(n_samples)``.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 0:
        raise ValueError(f"n_samples={n_samples!r} is invalid: expected a non-negative int (the training-set size)")
    if n_samples == 0:
        raise ValueError(
            "the training set is empty (0 samples): k-fold cross-validation needs a datamodule whose "
            "train_dataloader()/train_dataset has at least k samples"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed={seed!r} is invalid: expected an int")
    resolved = resolve_cv(cv, k, splitter=splitter)
    if resolved is None:
        raise ValueError("k=None is invalid without a splitter: pass k (an int >= 2) or cv=<sklearn splitter>")
    splitter, k = (None, resolved) if isinstance(resolved, int) else (resolved, k)

    group_array = None if groups is None else _as_1d_array(groups, "groups")
    if group_array is not None and len(group_array) != n_samples:
        raise ValueError(
            f"groups has length {len(group_array)} but the training set has {n_samples} samples: "
            "pass exactly one group id per training sample"
        )
    needs_targets = stratify or (splitter is not None and splitter_needs_targets(splitter))
    target_array = None
    if needs_targets:
        if targets is None:
            reason = "stratify=True" if stratify else f"splitter={splitter!r} (a stratified splitter)"
            raise ValueError(f"{reason} needs the targets of the training set, but none were found")
        target_array = _as_1d_array(targets, "targets")
        if len(target_array) != n_samples:
            raise ValueError(
                f"targets has length {len(target_array)} but the training set has {n_samples} samples: "
                "pass exactly one label per training sample"
            )
    if splitter is not None and splitter_needs_groups(splitter) and group_array is None:
        raise ValueError(
            f"splitter={splitter!r} splits by group but groups=None: pass groups (one id per training sample)"
        )

    if splitter is None:
        _check_k_fits(k, n_samples, target_array if stratify else None, group_array)
        splitter = make_splitter(k, stratify=stratify, grouped=group_array is not None, seed=seed)
    else:
        splitter = _seeded_copy(splitter, seed)
        requested = _requested_splits(splitter)
        if requested is not None:
            stratified_targets = target_array if splitter_needs_targets(splitter) else None
            what = f"splitter={splitter!r} (k={requested} folds)"
            _check_k_fits(requested, n_samples, stratified_targets, None, what)

    placeholder_x = np.zeros((n_samples, 1), dtype=np.int8)  # splitters only look at len(X)
    try:
        expected = int(splitter.get_n_splits(placeholder_x, target_array, group_array))
    except ValueError as err:
        raise ValueError(f"splitter={_short(splitter)} cannot split {n_samples} training samples: {err}") from err
    if k is not None and expected != k:
        raise ValueError(
            f"k={k} does not match splitter={_short(splitter)}, which produces {expected} folds: "
            "leave k unset (None) or make it equal to the splitter's number of splits"
        )
    try:
        raw = list(splitter.split(placeholder_x, target_array, group_array))
    except ValueError as err:
        raise ValueError(f"splitter={_short(splitter)} cannot split {n_samples} training samples: {err}") from err
    folds = [_checked_fold(index, tr, va, n_samples, splitter) for index, (tr, va) in enumerate(raw)]

    if len(folds) < 1:
        raise ValueError(f"splitter={_short(splitter)} produced no folds for {n_samples} training samples")
    if len(folds) != expected:
        raise ValueError(
            f"splitter={_short(splitter)} produced {len(folds)} folds but its get_n_splits() says {expected}: "
            "a splitter must make as many folds as it announces"
        )
    return Folds(tuple(folds), n_samples)


_SHOWN_INDICES = 5


def _few(indices: np.ndarray) -> str:
    """At most a few indices, for an error message."""
    shown = [int(i) for i in indices[:_SHOWN_INDICES]]
    return f"[{', '.join(map(str, shown))}{', ...' if len(indices) > _SHOWN_INDICES else ''}]"


def _checked_fold(index: int, train: Any, held_out: Any, n_samples: int, splitter: Any) -> Fold:
    """One fold as ``int64`` arrays, refused unless both parts are non-empty, within range and disjoint.

    Checked for every fold before anything trains: an overlapping fold would report metrics of samples the model
    trained on, and an index out of range would fail only when that fold's data is first read.
    """
    where = f"splitter={_short(splitter, 200)} produced a bad fold {index}"
    parts = {}
    for name, values in (("training", train), ("held-out", held_out)):
        array = np.asarray(values)
        if array.ndim != 1:
            raise ValueError(f"{where}: {name} indices have shape {array.shape}, expected a 1-D array of positions")
        if array.size and not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
            raise ValueError(
                f"{where}: {name} indices must be integers (positions in the training set), got dtype {array.dtype}"
            )
        if array.dtype == np.bool_:  # a mask over the training set, as some splitters return
            if len(array) != n_samples:
                raise ValueError(
                    f"{where}: the {name} mask has {len(array)} entries but the training set has {n_samples} samples"
                )
            array = np.flatnonzero(array)
        array = array.astype(np.int64)
        if array.size == 0:
            raise ValueError(f"{where}: it has no {name} samples; every fold needs training and held-out samples")
        outside = array[(array < 0) | (array >= n_samples)]
        if outside.size:
            raise ValueError(
                f"{where}: {name} indices out of range [0, {n_samples}): {_few(np.unique(outside))} "
                f"({outside.size} of {array.size}); indices are positions in the training set of {n_samples} samples"
            )
        parts[name] = array
    both = np.intersect1d(parts["training"], parts["held-out"])
    if both.size:
        raise ValueError(
            f"{where}: {both.size} held-out samples are also training samples (indices {_few(both)}); "
            "training and held-out parts must be disjoint, else held-out metrics score samples the model trained on"
        )
    return Fold(parts["training"], parts["held-out"])


def read_targets(dataset: Dataset) -> np.ndarray:
    """One label per sample of ``dataset``, read as cheaply as the dataset allows.

    Looks for a ``targets`` (torchvision) or ``labels`` attribute first, maps ``Subset`` indices onto its parent's
    labels, takes the second tensor of a ``TensorDataset``; only as a last resort it iterates the samples and takes
    the label of each (item ``[1]`` of a tuple, or the ``"label"``/``"target"``/``"y"`` key of a dict).
    """
    for name in ("targets", "labels"):
        values = getattr(dataset, name, None)
        if values is not None and not callable(values):
            array = _as_1d_array(values, f"{type(dataset).__name__}.{name}")
            if len(array) == len(dataset):
                return array
    if isinstance(dataset, Subset):
        return read_targets(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return _as_1d_array(dataset.tensors[1], "TensorDataset.tensors[1]")
    return np.asarray([_label_of(dataset[i], i) for i in range(len(dataset))])


def _label_of(item: Any, index: int) -> Any:
    if isinstance(item, dict):
        for key in ("label", "target", "y", "labels", "targets"):
            if key in item:
                return _scalar(item[key])
        raise ValueError(
            f"cannot read the label of training sample {index}: its dict has keys {sorted(item)} and none of "
            "'label', 'target', 'y'; give the dataset a `targets` attribute to use stratify=True"
        )
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return _scalar(item[1])
    raise ValueError(
        f"cannot read the label of training sample {index} (a {type(item).__name__}); expected (input, label) "
        "pairs or give the dataset a `targets` attribute to use stratify=True"
    )


def _scalar(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else tuple(value.flatten().tolist())
    if isinstance(value, np.ndarray):
        return value.item() if value.size == 1 else tuple(value.flatten().tolist())
    return value


def _as_1d_array(values: Iterable[Any], name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} has shape {array.shape}: expected a 1-D sequence with one entry per sample")
    return array


def _check_k(k: Any, argument: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"{argument}={k!r} is invalid: expected an int >= 2 (the number of folds)")
    if k < 2:
        raise ValueError(f"{argument}={k} is invalid: k-fold cross-validation needs k >= 2 folds")


def _check_k_fits(
    k: int, n_samples: int, targets: np.ndarray | None, groups: np.ndarray | None, what: str | None = None
) -> None:
    what = what or f"k={k}"
    if k > n_samples:
        raise ValueError(
            f"{what} is larger than the number of training samples ({n_samples}): accepted is 2 <= k <= {n_samples}"
        )
    if targets is not None:
        classes, counts = np.unique(targets, return_counts=True)
        smallest = int(counts.min())
        if k > smallest:
            raise ValueError(
                f"{what} is larger than the smallest class (class {classes[counts.argmin()].item()!r} has {smallest} "
                f"samples): with stratification accepted is 2 <= k <= {smallest}"
            )
    if groups is not None:
        n_groups = len(np.unique(groups))
        if k > n_groups:
            raise ValueError(
                f"{what} is larger than the number of distinct groups ({n_groups}): accepted is 2 <= k <= {n_groups}"
            )


def _requested_splits(splitter: Any) -> int | None:
    """Folds per repeat of a splitter whose held-out folds partition the data (then each must fit), else ``None``.

    Only for the early, readable "k is too large" errors; the fold count itself always comes from ``get_n_splits``.
    """
    if isinstance(splitter, (KFold, StratifiedKFold, GroupKFold, StratifiedGroupKFold)):
        return int(splitter.n_splits)
    if isinstance(splitter, (RepeatedKFold, RepeatedStratifiedKFold)):
        return int(splitter.get_n_splits()) // int(splitter.n_repeats)
    return None


def _seeded_copy(splitter: Any, seed: int) -> Any:
    """A copy of ``splitter`` whose randomness is pinned: same folds on every call, every rank, every resume."""
    splitter = copy.deepcopy(splitter)
    if hasattr(splitter, "random_state") and splitter.random_state is None:
        splitter.random_state = seed
    return splitter
