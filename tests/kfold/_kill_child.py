"""Run the k-fold resume scenario in a child process that SIGKILLs itself right after global step ``step``.

``python -m tests.kfold._kill_child ROOT STEP THREADS INITIAL_WEIGHTS``: the model starts from the parent's
initial weights; nothing is cleaned up, nothing flushed – what is on disk is what a power cut or the OOM killer would
leave.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch

from alkit.lightning import pl
from tests.kfold._helpers import Classifier
from tests.kfold.test_resume_exact import _run


class SigkillAfterStep(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    root, step, threads, weights = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(threads)
    model = Classifier()
    model.load_state_dict(torch.load(weights, weights_only=True))
    _run(root, model, callbacks=[SigkillAfterStep(step)], every_n_train_steps=3)
    raise SystemExit("the run ended without being killed")


if __name__ == "__main__":
    main()
