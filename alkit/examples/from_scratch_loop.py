"""Example 2 – a loop written from scratch, used as ``trainer.fit_loop``.

Only ``done`` and ``advance`` are needed. The loop below is plain PyTorch inside a Lightning run: it draws batches
from the training data Lightning set up (``trainer.train_dataloader``) and takes optimizer steps until a target loss
is reached. A loop that takes the FitLoop's place answers the Trainer's questions about fit-loop internals through the
FitLoop it replaced, so ``trainer.fit_loop.setup_data()`` still prepares the data::

    trainer = alkit.Trainer()
    trainer.fit_loop = TrainUntilLossLoop(target_loss=0.3, max_steps=500)
    trainer.fit(model, train_dataloader)
"""

from __future__ import annotations

import itertools
import tempfile
from typing import Any

import torch

from alkit.loops import Loop


class TrainUntilLossLoop(Loop):
    """Train with the module's optimizer until the running loss drops below ``target_loss``."""

    def __init__(self, target_loss: float, max_steps: int = 1000) -> None:
        super().__init__()
        self.target_loss = target_loss
        self.max_steps = max_steps
        self.steps = 0
        self.running_loss = float("inf")
        self._batches: Any = None

    @property
    def done(self) -> bool:
        return self.running_loss < self.target_loss or self.steps >= self.max_steps

    def advance(self) -> None:
        trainer, module = self.trainer, self.trainer.lightning_module
        if self._batches is None:
            trainer.fit_loop.setup_data()
            self._batches = itertools.cycle(trainer.train_dataloader)
        batch = next(self._batches)
        optimizer = trainer.optimizers[0]
        optimizer.zero_grad()
        x, y = batch
        loss = torch.nn.functional.cross_entropy(module(x), y)
        loss.backward()
        optimizer.step()
        self.steps += 1
        with torch.no_grad():
            self.running_loss = 0.9 * min(self.running_loss, 10.0) + 0.1 * float(loss)


def main(root: str | None = None) -> dict[str, Any]:
    """Run the example with the default logger and checkpointing, writing under ``root`` (a temp folder)."""
    root = root or tempfile.mkdtemp(prefix="alkit-example-")
    import alkit
    from alkit.examples._toy import ToyClassifier, toy_dataloader

    trainer = alkit.Trainer(default_root_dir=root, enable_progress_bar=False)
    trainer.fit_loop = TrainUntilLossLoop(target_loss=0.3, max_steps=500)
    trainer.fit(ToyClassifier(), toy_dataloader())
    return {"steps": trainer.fit_loop.steps, "running_loss": trainer.fit_loop.running_loss}


if __name__ == "__main__":
    print(main())
