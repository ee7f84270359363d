"""Embeddings of samples for diversity strategies: one protocol on the model.

The protocol, in order:

1. ``model.embed(x)`` if the model defines it: the model says what its representation is;
2. otherwise the input of the model's **last** ``torch.nn.Linear`` (the last one registered in ``model.modules()``),
   read with a forward hook: the representation the classifier's last layer sees (what CoreSet and BADGE use).

A model with neither cannot give embeddings, and asking it is a :class:`EmbeddingProtocolError` that names the
protocol. Embeddings are always taken with dropout off (evaluation mode): they describe a sample, not a draw.

:func:`alkit.active.scoring.score_pool` takes them in the same pass over the pool as the MC-dropout scores (on the
frozen-backbone path the backbone still runs once per batch); :func:`compute_embeddings` serves other samples (the
labelled set) and the cold start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["EMBEDDING_PROTOCOL", "EmbeddingProtocolError", "EmbeddingTap", "compute_embeddings"]

#: The protocol in one line, as the error states it.
EMBEDDING_PROTOCOL = (
    "a model gives embeddings through an `embed(x)` method returning [batch, d], or else through the input of its "
    "last `torch.nn.Linear` layer"
)


class EmbeddingProtocolError(ValueError):
    """The model cannot give embeddings (no ``embed(x)`` method and no ``torch.nn.Linear`` layer)."""


def _flatten(value: Any, batch_size: int, source: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim < 1 or value.shape[0] != batch_size:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise EmbeddingProtocolError(
            f"{source} gave {shape} for a batch of {batch_size}; {EMBEDDING_PROTOCOL}, one row per sample."
        )
    return value.detach().reshape(batch_size, -1).float()


class EmbeddingTap:
    """Where a model's embeddings come from, and how to read them while the model runs.

    Raises:
        EmbeddingProtocolError: the model has neither ``embed(x)`` nor a ``torch.nn.Linear``.
    """

    def __init__(self, model: nn.Module) -> None:
        embed = getattr(model, "embed", None)
        self.embed: Callable[[Any], torch.Tensor] | None = embed if callable(embed) else None
        self.linear: nn.Linear | None = None
        if self.embed is None:
            linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise EmbeddingProtocolError(
                    f"{type(model).__name__} cannot give embeddings, which diversity strategies (CoreSet, BADGE, "
                    f"TypiClust, hybrids) need: {EMBEDDING_PROTOCOL}; it has neither. Define "
                    "`embed(self, x)` on the model, or use an uncertainty heuristic ('bald', 'entropy', ...)."
                )
            self.linear = linears[-1]
        self.model = model

    @contextmanager
    def capture(self) -> Iterator[list[torch.Tensor]]:
        """Collect the last linear layer's inputs of every forward run inside the block (empty with ``embed``)."""
        captured: list[torch.Tensor] = []
        if self.linear is None:
            yield captured
            return
        handle = self.linear.register_forward_hook(lambda module, args, output: captured.append(args[0]))
        try:
            yield captured
        finally:
            handle.remove()

    def from_capture(self, captured: list[torch.Tensor], batch_size: int) -> torch.Tensor:
        """The ``[batch, d]`` embeddings from one captured forward (the last layer must have run exactly once)."""
        if len(captured) != 1:
            raise EmbeddingProtocolError(
                f"The last torch.nn.Linear of {type(self.model).__name__} ran {len(captured)} times in one forward "
                f"pass, so its input is not one embedding per sample; {EMBEDDING_PROTOCOL}: define `embed(x)`."
            )
        return _flatten(captured[0], batch_size, f"The input of the last Linear of {type(self.model).__name__}")

    def forward(self, inputs: Any, batch_size: int) -> torch.Tensor:
        """Embeddings of one batch by a deterministic forward pass (the caller switched dropout off)."""
        if self.embed is not None:
            return _flatten(self.embed(inputs), batch_size, f"{type(self.model).__name__}.embed(x)")
        with self.capture() as captured:
            self.model(inputs)
        return self.from_capture(captured, batch_size)


def compute_embeddings(model: nn.Module, dataloader: Any, device: torch.device | str | None = None) -> np.ndarray:
    """``[N, d]`` float32 embeddings of every sample ``dataloader`` yields, in its order, dropout off.

    Raises:
        EmbeddingProtocolError: the model does not follow the protocol of this module.
    """
    from alkit.active.scoring import _batch_input, _batch_size_of, _model_device, _to_device, mc_dropout

    tap = EmbeddingTap(model)
    device = torch.device(device) if device is not None else _model_device(model)
    rows: list[np.ndarray] = []
    with torch.no_grad(), mc_dropout(model, enabled=False):
        for batch in dataloader:
            inputs = _to_device(_batch_input(batch), device)
            rows.append(tap.forward(inputs, _batch_size_of(inputs)).cpu().numpy())
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(rows).astype(np.float32, copy=False)
