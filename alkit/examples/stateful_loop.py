"""Example 7 – a custom loop with its own state that survives a checkpoint.

Whatever ``on_save_checkpoint`` returns is stored in the Lightning checkpoint (``checkpoint["loops"]``) and handed
back to ``on_load_checkpoint`` by ``trainer.fit(..., ckpt_path=...)``; ``restarting`` is then true::

    trainer = alkit.Trainer(max_epochs=4, callbacks=[ModelCheckpoint(save_last=True)])
    trainer.fit_loop = EpochCountingFitLoop(max_epochs=4)
    trainer.fit(model, data)                       # interrupted after epoch 2
    ...
    trainer.fit(model, data, ckpt_path="last.ckpt")  # counter continues from 2
"""

from __future__ import annotations

from alkit.loops import FitLoop


class EpochCountingFitLoop(FitLoop):
    """Counts the epochs it completed, across interruptions."""

    def __init__(self, min_epochs: int | None = 0, max_epochs: int | None = None) -> None:
        super().__init__(min_epochs=min_epochs, max_epochs=max_epochs)
        self.epochs_completed = 0
        self.was_restarted = False

    def on_run_start(self) -> None:
        self.was_restarted = self.restarting or self.loaded_from_checkpoint
        super().on_run_start()

    def on_advance_end(self) -> None:
        # count before the epoch-end hooks run: ModelCheckpoint saves inside them
        self.epochs_completed += 1
        super().on_advance_end()

    def on_save_checkpoint(self) -> dict:
        state = super().on_save_checkpoint()
        state["epochs_completed"] = self.epochs_completed
        return state

    def on_load_checkpoint(self, state_dict: dict) -> None:
        super().on_load_checkpoint(state_dict)
        self.epochs_completed = state_dict["epochs_completed"]
