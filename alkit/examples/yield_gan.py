"""Example 6 – ``YieldLoop``: a GAN whose ``training_step`` yields one loss per optimizer.

The generator's output is computed once per batch and reused for the discriminator's loss, which the
``optimizer_idx`` form (one ``training_step`` call per optimizer) cannot do::

    def training_step(self, batch, batch_idx):
        fake = self.generator(noise)                       # once per batch
        yield generator_loss(self.discriminator(fake))     # optimizer 0: generator
        yield discriminator_loss(real, fake.detach())      # optimizer 1: discriminator

    trainer.fit_loop.epoch_loop.batch_loop.connect(optimizer_loop=YieldLoop())

The generator's optimizer comes first. YieldLoop toggles the optimizers as Lightning 1.x did (while a loss is
computed, only its optimizer's parameters require grad), and the code before the first ``yield`` runs while the
first optimizer is toggled: the shared fake points carry gradients to the generator only if the generator is that
optimizer. The other order stops with an error that says so.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import torch

from alkit.lightning import pl


class TinyGAN(pl.LightningModule):
    """A GAN on 2-D points; counts how often the generator runs."""

    def __init__(self, latent_dim: int = 4) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.generator = torch.nn.Sequential(torch.nn.Linear(latent_dim, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        self.discriminator = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        self.generator_calls = 0

    def generate(self, n: int) -> torch.Tensor:
        self.generator_calls += 1
        return self.generator(torch.randn(n, self.latent_dim, device=self.device))

    def training_step(self, batch: Any, batch_idx: int) -> Iterator[torch.Tensor]:
        real = batch[0]
        fake = self.generate(len(real))  # the generator's optimizer is toggled: the graph reaches its parameters
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        ones, zeros = torch.ones(len(real), 1, device=self.device), torch.zeros(len(real), 1, device=self.device)
        generator_loss = bce(self.discriminator(fake), ones)
        self.log("generator_loss", generator_loss)
        yield generator_loss
        discriminator_loss = bce(self.discriminator(real), ones) + bce(self.discriminator(fake.detach()), zeros)
        self.log("discriminator_loss", discriminator_loss)
        yield discriminator_loss

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            torch.optim.Adam(self.generator.parameters(), lr=1e-3),
            torch.optim.Adam(self.discriminator.parameters(), lr=1e-3),
        ]


def main(root: str | None = None) -> dict[str, Any]:
    """Run the example with the default logger and checkpointing, writing under ``root`` (a temp folder)."""
    root = root or tempfile.mkdtemp(prefix="alkit-example-")
    from torch.utils.data import DataLoader, TensorDataset

    import alkit
    from alkit.loops import YieldLoop

    data = DataLoader(TensorDataset(torch.randn(64, 2) * 0.5 + 2.0), batch_size=16)
    model = TinyGAN()
    trainer = alkit.Trainer(max_epochs=2, default_root_dir=root, enable_progress_bar=False)
    trainer.fit_loop.epoch_loop.batch_loop.connect(optimizer_loop=YieldLoop())
    trainer.fit(model, data)
    return {"batches": 2 * len(data), "generator_calls": model.generator_calls, "global_step": trainer.global_step}


if __name__ == "__main__":
    print(main())
