"""``EnsembleVotingModel``: test the k fold models together by averaging their class probabilities.

Generic over the fold models: any ``LightningModule`` whose ``forward`` returns class logits. The fold models are
loaded from their checkpoints either by copying a template instance (works without ``save_hyperparameters``) or
through ``ModelClass.load_from_checkpoint``.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alkit._checkpoint import check_checkpoint, load_checkpoint
from alkit.lightning import check_namespace, pl

__all__ = ["EnsembleVotingModel"]


class EnsembleVotingModel(pl.LightningModule):
    """Soft-voting ensemble of fold models, with a ``test_step`` logging ``test_acc`` and ``test_loss``.

    ``forward`` returns the mean of the fold models' softmax outputs (probabilities, not logits). ``test_loss`` is
    the negative log-likelihood of those averaged probabilities.

    Args:
        model: a ``LightningModule`` instance used as a template (deep-copied, then each checkpoint's
            ``state_dict`` is loaded into a copy), or a ``LightningModule`` subclass (each fold model is built with
            ``load_from_checkpoint``, which needs ``save_hyperparameters()`` in its ``__init__`` if it has
            arguments).
        checkpoint_paths: one Lightning checkpoint file per fold.
        map_location: where the checkpoints' tensors are loaded (the Trainer moves the ensemble afterwards).
    """

    def __init__(
        self,
        model: pl.LightningModule | type[pl.LightningModule],
        checkpoint_paths: Sequence[str | os.PathLike],
        map_location: Any = "cpu",
    ) -> None:
        super().__init__()
        paths = [Path(p) for p in checkpoint_paths]
        if not paths:
            raise ValueError("checkpoint_paths=[] is invalid: the ensemble needs at least one fold checkpoint")
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"checkpoint_paths contains files that do not exist: {missing}")
        check_namespace(model, "model")
        for i, p in enumerate(paths):  # every file read safely (tensors, plain Python) before any model is built
            check_checkpoint(p, f"checkpoint_paths[{i}]")
        if isinstance(model, pl.LightningModule):
            models = [_copy_with_weights(model, p, map_location, f"checkpoint_paths[{i}]") for i, p in enumerate(paths)]
        elif inspect.isclass(model) and issubclass(model, pl.LightningModule):
            models = [model.load_from_checkpoint(p, map_location=map_location) for p in paths]
        else:
            raise TypeError(
                f"model={model!r} is invalid: expected a LightningModule instance (a template) or a LightningModule "
                "subclass (loaded with load_from_checkpoint)"
            )
        self.models = nn.ModuleList(models)
        self.checkpoint_paths = [str(p) for p in paths]

    def forward(self, x: Any) -> torch.Tensor:
        probabilities = [F.softmax(m(x), dim=-1) for m in self.models]
        return torch.stack(probabilities).mean(dim=0)

    def unpack_batch(self, batch: Any) -> tuple[Any, torch.Tensor]:
        """``(inputs, targets)`` of a batch: ``(x, y, ...)`` sequences or dicts with input/target keys.

        Override for other batch layouts.
        """
        if isinstance(batch, dict):
            x = next((batch[k] for k in ("input", "inputs", "x", "image") if k in batch), None)
            y = next((batch[k] for k in ("target", "targets", "label", "labels", "y") if k in batch), None)
            if x is None or y is None:
                raise ValueError(
                    f"cannot find inputs/targets in a batch with keys {sorted(batch)}: expected 'input'/'x' and "
                    "'target'/'label'/'y', or override EnsembleVotingModel.unpack_batch"
                )
            return x, y
        if isinstance(batch, (tuple, list)) and len(batch) >= 2:
            return batch[0], batch[1]
        raise ValueError(f"cannot unpack a {type(batch).__name__} batch into (inputs, targets); override unpack_batch")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = self.unpack_batch(batch)
        probabilities = self(x)
        loss = F.nll_loss(torch.log(probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny)), y)
        accuracy = (probabilities.argmax(dim=-1) == y).float().mean()
        self.log("test_loss", loss, batch_size=len(y), sync_dist=True)
        self.log("test_acc", accuracy, batch_size=len(y), sync_dist=True)


def _copy_with_weights(
    template: pl.LightningModule, path: Path, map_location: Any, argument: str = "checkpoint_path"
) -> pl.LightningModule:
    """A copy of ``template`` (never the template itself: the user's model stays untouched) with ``path``'s weights."""
    checkpoint = load_checkpoint(path, argument, map_location=map_location)
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise ValueError(f"{argument}={str(path)!r} is not a Lightning checkpoint: no 'state_dict' in it")
    model = copy.deepcopy(template)
    model.load_state_dict(state_dict)
    return model
