"""Reading checkpoint files safely: tensors and plain Python only, never code.

A checkpoint is a pickle, and unpickling an untrusted pickle runs whatever code it names. Every file alkit reads
(fold checkpoints, resume checkpoints, weights files) goes through :func:`load_checkpoint`, i.e. ``torch.load`` with
``weights_only=True``; a file alkit hands to Lightning (``trainer.fit(ckpt_path=...)``) is first checked with
:func:`check_checkpoint`, so that the same guarantee holds with every supported Lightning (2.4 and 2.5 load a
``ckpt_path`` with ``weights_only=False`` and do not take ``weights_only`` in ``Trainer.fit``). Errors name the
argument and the file.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

__all__: list[str] = []  # private: import names explicitly


def _safe_types() -> list[Any]:
    """Types that alkit's (and Lightning's) checkpoints may hold beyond tensors and builtins; referencing them runs
    no code. Found by saving k-fold and active-learning checkpoints and loading them with ``weights_only=True``."""
    import torch.optim as optim

    types: list[Any] = [
        cls for cls in vars(optim).values() if isinstance(cls, type) and issubclass(cls, optim.Optimizer)
    ]  # ``ImageClassifier(optimizer=torch.optim.AdamW)`` saves the class in its hyper-parameters
    types.extend({Path, type(Path("."))})  # a path kept as a Path (PosixPath / WindowsPath)
    return types


# Registered for every weights-only load, Lightning's own included (``load_from_checkpoint``, ``fit(ckpt_path=)``
# under torch >= 2.6): a checkpoint of ``ImageClassifier(optimizer=torch.optim.AdamW)`` then loads there too.
torch.serialization.add_safe_globals(_safe_types())


class UnsafeCheckpointError(ValueError):
    """A checkpoint holds objects other than tensors and plain Python: alkit refuses to unpickle it."""


def load_checkpoint(path: str | os.PathLike, argument: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with alkit's safe types; errors name ``argument`` and ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{argument}={os.fspath(path)!r}: no such checkpoint file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()
        detail = next((line.strip() for line in reason if "GLOBAL" in line or "Unsupported" in line), "")
        raise UnsafeCheckpointError(
            f"{argument}={os.fspath(path)!r} is refused: it holds objects other than tensors and plain Python types, "
            "and unpickling them could run code (alkit loads checkpoints with torch.load(weights_only=True) only). "
            f"Use a checkpoint written by alkit/Lightning from a source you trust. {detail}".rstrip()
        ) from None
    except Exception as error:  # zip/stream errors of a truncated or foreign file have many types
        raise ValueError(
            f"{argument}={os.fspath(path)!r} is not a readable checkpoint (truncated, corrupt or not a torch.save "
            f"file): {type(error).__name__}: {error}"
        ) from error


def check_checkpoint(path: str | os.PathLike, argument: str) -> dict:
    """Load ``path`` safely (see :func:`load_checkpoint`) and return it; it must be a dict (a Lightning checkpoint)."""
    checkpoint = load_checkpoint(path, argument)
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"{argument}={os.fspath(path)!r} is not a Lightning checkpoint: it holds a {type(checkpoint).__name__}, "
            "not a dict"
        )
    return checkpoint
