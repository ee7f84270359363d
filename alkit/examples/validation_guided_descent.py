"""Example 3 – the validation-guided gradient step: an epoch loop with its own optimization.

After ``backward()`` on a training batch, the whole validation set is evaluated and every gradient is scaled by
``1 / val_loss`` before the optimizer steps – large steps while validation loss is low, careful ones when it is
high::

    trainer = alkit.Trainer(max_epochs=2)
    trainer.fit_loop.epoch_loop = ValidationGuidedEpochLoop()        # or:
    trainer.fit_loop.replace(epoch_loop=ValidationGuidedEpochLoop)   # keeps min/max_steps and the children
    trainer.fit(model, train_dataloader, val_dataloader)

The loop keeps the epoch loop's bookkeeping (progress counters, hooks, validation at the epoch's end) and replaces
only the optimization of a batch.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch

from alkit.loops import TrainingEpochLoop


class ValidationGuidedEpochLoop(TrainingEpochLoop):
    """Scales each training gradient by the inverse of the current validation loss."""

    def __init__(self, min_steps: int | None = None, max_steps: int = -1) -> None:
        super().__init__(min_steps=min_steps, max_steps=max_steps)
        self.val_losses: list[float] = []

    def advance(self, data_fetcher: Any) -> None:
        trainer = self.trainer
        module = trainer.lightning_module
        batch, batch_idx, _ = self.fetch_batch(data_fetcher)
        batch = trainer.strategy.batch_to_device(batch)
        self.batch_progress.increment_ready()
        self.batch_progress.increment_started()

        optimizer = trainer.optimizers[0]
        optimizer.zero_grad()
        x, y = batch
        loss = torch.nn.functional.cross_entropy(module(x), y)
        loss.backward()

        val_loss = self.validation_loss()
        self.val_losses.append(val_loss)
        for parameter in module.parameters():
            if parameter.grad is not None:
                parameter.grad /= val_loss
        optimizer.step()
        # count the step like the built-in optimizer loop does, so `max_steps` and `global_step` keep working
        self.automatic_optimization.optim_progress.optimizer.step.increment_ready()
        self.automatic_optimization.optim_progress.optimizer.step.increment_completed()

        self.batch_progress.increment_processed()
        self.batch_progress.increment_completed()

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean cross-entropy over the whole validation set, with the model in eval mode."""
        module = self.trainer.lightning_module
        was_training = module.training
        module.eval()
        total, count = 0.0, 0
        for x, y in self.trainer.val_dataloaders:
            x, y = x.to(module.device), y.to(module.device)
            total += float(torch.nn.functional.cross_entropy(module(x), y, reduction="sum"))
            count += len(y)
        module.train(was_training)
        return total / count


def main(root: str | None = None) -> dict[str, Any]:
    """Run the example with the default logger and checkpointing, writing under ``root`` (a temp folder)."""
    root = root or tempfile.mkdtemp(prefix="alkit-example-")
    import alkit
    from alkit.examples._toy import ToyClassifier, toy_dataloader

    trainer = alkit.Trainer(max_epochs=2, default_root_dir=root, enable_progress_bar=False)
    trainer.fit_loop.replace(epoch_loop=ValidationGuidedEpochLoop)
    trainer.fit(ToyClassifier(), toy_dataloader(), toy_dataloader(seed=1))
    losses = trainer.fit_loop.epoch_loop.val_losses
    return {"steps": trainer.global_step, "first_val_loss": losses[0], "last_val_loss": losses[-1]}


if __name__ == "__main__":
    print(main())
