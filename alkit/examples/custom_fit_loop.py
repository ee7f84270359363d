"""Example 1 – subclass a built-in loop to add behaviour.

``EpochSummaryFitLoop`` keeps Lightning's whole fit logic and adds a per-epoch record of the training loss and a
summary returned by ``run``::

    trainer = alkit.Trainer(max_epochs=3)
    trainer.fit_loop = EpochSummaryFitLoop(max_epochs=3)
    trainer.fit(model, train_dataloader)
    trainer.fit_loop.history  # [{"epoch": 0, "train_loss": ...}, ...]
"""

from __future__ import annotations

import tempfile
from typing import Any

from alkit.loops import FitLoop


class EpochSummaryFitLoop(FitLoop):
    """A FitLoop that records the last training loss of every epoch."""

    def __init__(self, min_epochs: int | None = 0, max_epochs: int | None = None) -> None:
        super().__init__(min_epochs=min_epochs, max_epochs=max_epochs)
        self.history: list[dict[str, float]] = []
        self.advances = 0

    def advance(self) -> None:
        self.advances += 1
        super().advance()  # one whole epoch

    def on_advance_end(self) -> None:
        epoch = self.epoch_progress.current.processed  # the epoch that just ran
        super().on_advance_end()
        self.history.append({"epoch": epoch, "train_loss": float(self.trainer.callback_metrics["train_loss"])})

    def on_run_end(self) -> Any:
        super().on_run_end()
        return {"epochs": len(self.history), "final_train_loss": self.history[-1]["train_loss"]}


def main(root: str | None = None) -> dict[str, Any]:
    """Run the example with the default logger and checkpointing, writing under ``root`` (a temp folder)."""
    root = root or tempfile.mkdtemp(prefix="alkit-example-")
    import alkit
    from alkit.examples._toy import ToyClassifier, toy_dataloader

    trainer = alkit.Trainer(max_epochs=3, default_root_dir=root, enable_progress_bar=False)
    trainer.fit_loop = EpochSummaryFitLoop(max_epochs=3)
    trainer.fit(ToyClassifier(), toy_dataloader())
    return {"history": trainer.fit_loop.history}


if __name__ == "__main__":
    print(main())
