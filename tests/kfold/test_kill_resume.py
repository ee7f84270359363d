"""A k-fold run SIGKILLed at a random step resumes, from every checkpoint file it left, to exactly the uninterrupted
run: the same folds, per-fold metrics, out-of-fold predictions, ensemble and fold weights.

The step is drawn at random on each run (``ALKIT_KILL_STEP`` fixes it); a failure names it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.kfold.test_resume_exact import STEPS_PER_FOLD, _assert_same, _run, uninterrupted  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


def _kill_step() -> int:
    fixed = os.environ.get("ALKIT_KILL_STEP")
    # anywhere after the first checkpoint (step 3; the kill comes before that step's save) but the last step
    return int(fixed) if fixed else random.randint(4, 3 * STEPS_PER_FOLD - 1)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_resume_after_a_sigkill_at_a_random_step_from_every_checkpoint_left(tmp_path, uninterrupted):  # noqa: F811
    model, expected = uninterrupted
    step = _kill_step()
    root = tmp_path / "killed"
    initial = tmp_path / "initial_weights.pt"
    torch.save(model.state_dict(), initial)  # the killed run starts where the uninterrupted one did
    threads = str(torch.get_num_threads())
    child = subprocess.run(
        [sys.executable, "-m", "tests.kfold._kill_child", str(root), str(step), threads, str(initial)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.returncode == -signal.SIGKILL, f"kill step {step}: {child.stderr[-2000:]}"
    left = sorted(root.rglob("*.ckpt"))
    assert left, f"kill step {step}: no checkpoint on disk"
    for checkpoint in left:
        work = tmp_path / f"resume_{checkpoint.parent.name}_{checkpoint.stem}"
        # every resume starts from the folder exactly as the kill left it
        subprocess.run(["cp", "-a", str(root), str(work)], check=True)
        resumed = _run(work, model, every_n_train_steps=3, ckpt_path=work / checkpoint.relative_to(root))
        try:
            _assert_same(expected, resumed)
        except AssertionError as error:
            raise AssertionError(f"kill step {step}, resumed from {checkpoint.relative_to(root)}: {error}") from None
