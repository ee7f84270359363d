"""The Lightning minor the suite runs on, for the few behaviours Lightning itself changed between 2.4 and 2.5."""

from __future__ import annotations

import pytest

from alkit.lightning import pl

LIGHTNING_MINOR: tuple[int, int] = tuple(int(part) for part in pl.__version__.split(".")[:2])  # type: ignore[assignment]

#: Lightning 2.4 restarts a fit resumed from a checkpoint written inside an epoch one batch early (its own
#: `pl.Trainer` does the same: see tests/loops/test_parity.py), so "resumed equals uninterrupted" for such
#: checkpoints holds from Lightning 2.5 on.
needs_exact_mid_epoch_resume = pytest.mark.xfail(
    LIGHTNING_MINOR < (2, 5),
    strict=True,
    reason="Lightning 2.4 replays the batch a mid-epoch checkpoint was written in (fixed in Lightning 2.5)",
)
