"""A Trainer for tests that writes and prints nothing: no logger, checkpoints, progress bar or model summary."""

from __future__ import annotations

from typing import Any

import alkit

#: Trainer flags for a run that writes and prints nothing.
QUIET: dict[str, Any] = dict(
    logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
)


def quiet_trainer(**kwargs: Any) -> alkit.Trainer:
    return alkit.Trainer(**QUIET, **kwargs)
