"""Out-of-fold predictions: every training sample predicted by the fold model that held it out.

What scikit-learn's ``cross_val_predict`` gives, for a k-fold run of Lightning models: an honest prediction for every
training sample (stacking, error analysis, calibration, an OOF metric over the whole training set). Each fold model
predicts its own held-out part right after it trained (:func:`predict_held_out`, one pass without gradients); the
fold's rows are then placed at the held-out samples' positions (:func:`assemble_oof`). A repeated splitter
(``RepeatedKFold``) holds every sample out once per repeat, so there is one prediction per sample *per repeat*.

Classifiers (an ``(n, C)`` float output, ``C >= 2``, for integer class targets) get the softmax of the logits
their ``forward`` returns – probabilities, as the ensemble averages; anything else (regression) is kept as
returned. The arrays are written beside ``kfold_result.json`` as an ``.npz`` (plain arrays, read back with
``allow_pickle=False``: loading never executes code).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from alkit.kfold.datamodule import KFoldDataModule
from alkit.kfold.folds import repeat_of_each_fold
from alkit.lightning import pl

__all__ = [
    "CLASSIFICATION",
    "REGRESSION",
    "assemble_oof",
    "check_predictions",
    "load_oof",
    "oof_metrics",
    "oof_result_fields",
    "predict_current_fold",
    "predict_held_out",
    "save_oof",
    "unpack_batch",
]

CLASSIFICATION = "classification"
REGRESSION = "regression"

_INPUT_KEYS = ("input", "inputs", "x", "image")
_TARGET_KEYS = ("target", "targets", "label", "labels", "y")


def unpack_batch(batch: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` of a batch (``targets`` ``None`` when it has none): ``(x, y, ...)``, dicts, tensors."""
    if isinstance(batch, Mapping):
        x = next((batch[k] for k in _INPUT_KEYS if k in batch), None)
        y = next((batch[k] for k in _TARGET_KEYS if k in batch), None)
        if x is None:
            raise ValueError(
                f"cannot find the inputs of a batch with keys {sorted(batch)}: expected one of {list(_INPUT_KEYS)}; "
                "give the model a predict_step(batch, batch_idx) returning its predictions, or pass oof=False"
            )
        return x, y
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("cannot predict an empty batch")
        return batch[0], batch[1] if len(batch) >= 2 else None
    return batch, None


def predict_held_out(trainer: pl.Trainer, loader: Any) -> dict[str, Any]:
    """Predictions of ``trainer``'s current model on ``loader`` (a fold's held-out part, in its index order).

    The model's ``predict_step`` when it defines one, else ``forward`` on the batch inputs; in eval mode, without
    gradients, under the trainer's precision; the model's train/eval mode is restored afterwards, and so is torch's
    CPU random state (a DataLoader draws a seed from it for every iterator): predicting changes nothing that
    follows, so a run's metrics are the same with or without out-of-fold predictions.

    Returns:
        ``{"predictions": float tensor (n, ...), "targets": tensor (n, ...) or None, "task": "classification" |
        "regression"}`` (classifier outputs already turned into probabilities).
    """
    module = trainer.lightning_module
    use_predict_step = pl.utilities.model_helpers.is_overridden("predict_step", module, pl.LightningModule)
    outputs: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    was_training = module.training
    module.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), trainer.precision_plugin.forward_context():
            for batch_idx, batch in enumerate(loader):
                batch = trainer.strategy.batch_to_device(batch)
                inputs, target = unpack_batch(batch) if not use_predict_step else (None, _targets_of(batch))
                output = module.predict_step(batch, batch_idx) if use_predict_step else module(inputs)
                outputs.append(_rows(output, _batch_size(batch, inputs, target)))
                if target is not None:
                    targets.append(torch.as_tensor(target).detach().cpu())
    finally:
        module.train(was_training)
    predictions = torch.cat(outputs) if outputs else torch.empty(0)
    target_tensor = torch.cat(targets) if outputs and len(targets) == len(outputs) else None
    task = _task_of(predictions, target_tensor)
    if task == CLASSIFICATION:
        predictions = torch.softmax(predictions, dim=-1)
    return {"predictions": predictions, "targets": target_tensor, "task": task}


def predict_current_fold(trainer: pl.Trainer, datamodule: Any) -> dict[str, Any] | None:
    """:func:`predict_held_out` on the datamodule's current held-out fold; ``None`` for a datamodule whose held-out
    loader is not known to follow the fold's index order (a user's own ``BaseKFoldDataModule``)."""
    if not isinstance(datamodule, KFoldDataModule):
        return None
    return predict_held_out(trainer, datamodule.val_dataloader())


def check_predictions(trainer: pl.Trainer, datamodule: Any) -> None:
    """Predict one batch of the first held-out fold with the untrained model, so that a model whose output cannot be
    placed (not one tensor row per sample) is refused before the first fold trains, not after it.

    Leaves the model, its mode and torch's RNG as they were (see :func:`predict_held_out`).
    """
    if not isinstance(datamodule, KFoldDataModule) or datamodule.folds is None:
        return
    kwargs = dict(datamodule.loader_settings["kwargs"], drop_last=False, num_workers=0)
    kwargs.pop("prefetch_factor", None)
    kwargs.pop("persistent_workers", None)
    first = datamodule.folds[0].val_indices[: int(kwargs.get("batch_size") or 1)]
    predict_held_out(trainer, DataLoader(Subset(datamodule.eval_dataset, first.tolist()), shuffle=False, **kwargs))


def oof_result_fields(fold_predictions: Sequence[Mapping[str, Any] | None], folds: Sequence[Any]) -> dict[str, Any]:
    """The :class:`~alkit.kfold.KFoldResult` fields (``n_samples``, ``oof_*``) for the first ``len(fold_predictions)``
    of ``folds`` (a :class:`~alkit.kfold.Folds`); empty when there are no predictions to place."""
    n_samples = getattr(folds, "n_samples", None)
    done = len(fold_predictions)
    if n_samples is None or len(folds) < done:
        return {}
    val_indices = [fold.val_indices for fold in folds[:done]]
    assembled = assemble_oof(fold_predictions, val_indices, repeat_of_each_fold(val_indices), n_samples)
    if assembled is None:
        return {"n_samples": n_samples}
    predictions, targets, task = assembled
    return {"n_samples": n_samples, "oof_by_repeat": predictions, "oof_targets": targets, "oof_task": task}


def _targets_of(batch: Any) -> Any:
    try:
        return unpack_batch(batch)[1]
    except ValueError:
        return None


def _batch_size(batch: Any, inputs: Any, target: Any) -> int | None:
    for value in (target, inputs):
        if isinstance(value, torch.Tensor) and value.ndim:
            return int(value.shape[0])
    return None


def _rows(output: Any, batch_size: int | None) -> torch.Tensor:
    if not isinstance(output, torch.Tensor) or output.ndim == 0 or (batch_size and output.shape[0] != batch_size):
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise TypeError(
            f"the fold model returned {shape} for a batch of {batch_size} samples: out-of-fold predictions need a "
            "tensor with one row per sample (class logits, or regression outputs); give the model a "
            "predict_step(batch, batch_idx) that returns one, or pass oof=False"
        )
    return output.detach().float().cpu()


def _task_of(predictions: torch.Tensor, targets: torch.Tensor | None) -> str:
    integer_targets = targets is not None and targets.ndim == 1 and not torch.is_floating_point(targets)
    if integer_targets and predictions.ndim == 2 and predictions.shape[1] >= 2 and targets.dtype != torch.bool:
        return CLASSIFICATION
    return REGRESSION


def assemble_oof(
    fold_predictions: Sequence[Mapping[str, Any] | None],
    val_indices: Sequence[np.ndarray],
    repeats: Sequence[int],
    n_samples: int,
) -> tuple[np.ndarray, np.ndarray | None, str] | None:
    """Place every fold's held-out predictions at its samples' positions, one array per repeat.

    Args:
        fold_predictions: per fold, :func:`predict_held_out`'s dict (``None`` if a fold has none: no OOF then).
        val_indices: per fold, the held-out positions the predictions' rows belong to, in order.
        repeats: per fold, the repeat it belongs to (:attr:`alkit.kfold.Folds.repeats`).
        n_samples: size of the training set.

    Returns:
        ``(predictions (n_repeats, n_samples, ...), targets (n_samples, ...) or None, task)``, ``NaN`` where a
        sample was not held out in a repeat; ``None`` when some fold has no predictions.
    """
    if not fold_predictions or any(p is None for p in fold_predictions):
        return None
    if len(fold_predictions) != len(val_indices) or len(repeats) != len(val_indices):
        raise ValueError(
            f"{len(fold_predictions)} folds of predictions for {len(val_indices)} folds of indices and "
            f"{len(repeats)} repeat numbers: expected one of each per fold"
        )
    rows = [np.asarray(_numpy(p["predictions"]), dtype=np.float64) for p in fold_predictions]
    for fold, (values, indices) in enumerate(zip(rows, val_indices)):
        if len(values) != len(indices):
            raise ValueError(f"fold {fold} has {len(values)} predictions for {len(indices)} held-out samples")
    n_repeats = max(repeats) + 1
    predictions = np.full((n_repeats, n_samples, *rows[0].shape[1:]), np.nan)
    for values, indices, repeat in zip(rows, val_indices, repeats):
        predictions[repeat, np.asarray(indices, dtype=np.int64)] = values
    targets = None
    fold_targets = [p.get("targets") for p in fold_predictions]
    if all(t is not None for t in fold_targets):
        values = [np.asarray(_numpy(t), dtype=np.float64) for t in fold_targets]
        targets = np.full((n_samples, *values[0].shape[1:]), np.nan)
        for value, indices in zip(values, val_indices):
            targets[np.asarray(indices, dtype=np.int64)] = value
    tasks = {str(p.get("task", REGRESSION)) for p in fold_predictions}
    return predictions, targets, CLASSIFICATION if tasks == {CLASSIFICATION} else REGRESSION


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def oof_metrics(predictions: np.ndarray, targets: np.ndarray | None, task: str) -> dict[str, float]:
    """``accuracy`` (classification) or ``mse`` (regression) over the predicted samples, averaged over repeats."""
    if targets is None or predictions.size == 0:
        return {}
    per_repeat = []
    for repeat in predictions:
        flat = repeat.reshape(len(repeat), -1)
        known = ~np.isnan(flat).any(axis=1) & ~np.isnan(targets.reshape(len(targets), -1)).any(axis=1)
        if not known.any():
            continue
        if task == CLASSIFICATION:
            per_repeat.append(float(np.mean(flat[known].argmax(axis=1) == targets[known].astype(np.int64))))
        else:
            target = targets[known].reshape(int(known.sum()), -1)
            if target.shape != flat[known].shape:
                return {}
            per_repeat.append(float(np.mean((flat[known] - target) ** 2)))
    if not per_repeat:
        return {}
    return {"accuracy" if task == CLASSIFICATION else "mse": float(np.mean(per_repeat))}


def save_oof(path: str | os.PathLike, predictions: np.ndarray, targets: np.ndarray | None) -> Path:
    """Write the arrays to ``path`` (``.npz``) atomically: a temporary file in the same folder, renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    arrays = {"predictions": predictions}
    if targets is not None:
        arrays["targets"] = targets
    np.savez(buffer, **arrays)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_oof(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """The arrays :func:`save_oof` wrote, read without unpickling anything."""
    with np.load(Path(path), allow_pickle=False) as data:
        predictions = np.asarray(data["predictions"])
        targets = np.asarray(data["targets"]) if "targets" in data.files else None
    return predictions, targets
