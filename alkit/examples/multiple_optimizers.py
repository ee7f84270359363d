"""Example 5 – several optimizers under automatic optimization (Lightning 1.x; removed in Lightning 2).

``configure_optimizers`` returns one optimizer per part of the model and ``training_step`` receives
``optimizer_idx``; alkit's ``OptimizerLoop`` steps each optimizer in turn for every batch, with only that
optimizer's parameters receiving gradients::

    def training_step(self, batch, batch_idx, optimizer_idx):
        ...
    def configure_optimizers(self):
        return [torch.optim.SGD(self.encoder.parameters(), lr=0.1), torch.optim.Adam(self.head.parameters())]

Everything else of 1.x's multiple optimizers works too: an ``optimizer_step(epoch, batch_idx, optimizer,
optimizer_idx, optimizer_closure, on_tpu, using_lbfgs)`` override receives the index, ``"frequency"`` keys make the
optimizers take turns (``[{"optimizer": critic, "frequency": 5}, {"optimizer": generator, "frequency": 1}]``: a
WGAN's ``n_critic``), and ``on_train_batch_end`` receives one outputs dict per optimizer.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch

from alkit.lightning import pl


class TwoOptimizerClassifier(pl.LightningModule):
    """An encoder trained with SGD and a head trained with Adam, each on its own loss term."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch.nn.Linear(8, 16)
        self.head = torch.nn.Linear(16, 2)
        self.seen_optimizer_indices: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.encoder(x)))

    def training_step(self, batch: Any, batch_idx: int, optimizer_idx: int) -> torch.Tensor:
        self.seen_optimizer_indices.append(optimizer_idx)
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        if optimizer_idx == 0:  # the encoder also keeps its activations small
            loss = loss + 1e-3 * self.encoder(x).pow(2).mean()
        self.log(f"loss_{optimizer_idx}", loss)
        return loss

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.SGD(self.encoder.parameters(), lr=0.1), torch.optim.Adam(self.head.parameters(), lr=1e-2)]


def main(root: str | None = None) -> dict[str, Any]:
    """Run the example with the default logger and checkpointing, writing under ``root`` (a temp folder)."""
    root = root or tempfile.mkdtemp(prefix="alkit-example-")
    import alkit
    from alkit.examples._toy import toy_dataloader

    model = TwoOptimizerClassifier()
    trainer = alkit.Trainer(max_epochs=2, default_root_dir=root, enable_progress_bar=False)
    trainer.fit(model, toy_dataloader())
    return {"global_step": trainer.global_step, "optimizer_indices": model.seen_optimizer_indices[:6]}


if __name__ == "__main__":
    print(main())
