"""Loop overhead: ``alkit.Trainer`` vs ``pytorch_lightning.Trainer`` vs a plain PyTorch loop, side by side.

A tiny model makes the per-step cost of the loop machinery dominate. The three are interleaved round by round (so
machine noise hits them alike) and the median per-step time of each is reported with the ratios.
Target: alkit / Lightning <= 1.03.

    python benchmarks/loop_overhead.py [--steps 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import torch
from torch.utils.data import DataLoader, TensorDataset

import alkit
from alkit.lightning import pl


class TinyModel(pl.LightningModule):
    def __init__(self, width: int = 0) -> None:
        super().__init__()
        if width:
            self.layer = torch.nn.Sequential(torch.nn.Linear(32, width), torch.nn.ReLU(), torch.nn.Linear(width, 2))
        else:
            self.layer = torch.nn.Linear(32, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


BATCH = 8


def data(steps: int) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    return DataLoader(
        TensorDataset(torch.randn(steps * BATCH, 32, generator=generator), torch.randint(0, 2, (steps * BATCH,))),
        batch_size=BATCH,
    )


def time_lightning(trainer_cls: type, steps: int, width: int = 0) -> float:
    torch.manual_seed(0)
    model, loader = TinyModel(width), data(steps)
    trainer = trainer_cls(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(model, loader)
    elapsed = time.perf_counter() - start
    assert trainer.global_step == steps
    return elapsed / steps


def time_plain(steps: int, width: int = 0) -> float:
    torch.manual_seed(0)
    model, loader = TinyModel(width), data(steps)
    optimizer = model.configure_optimizers()
    start = time.perf_counter()
    model.train()
    for batch_idx, batch in enumerate(loader):
        optimizer.zero_grad()
        loss = model.training_step(batch, batch_idx)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--width",
        type=int,
        default=0,
        help="hidden width of a 2-layer MLP instead of the single linear layer (shows how the ratio shrinks as the"
        " step itself costs more)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    torch.set_num_threads(1)

    times: dict[str, list[float]] = {"plain": [], "lightning": [], "alkit": []}
    time_lightning(alkit.Trainer, 50, args.width)  # warm-up imports and caches
    for _ in range(args.rounds):
        times["lightning"].append(time_lightning(pl.Trainer, args.steps, args.width))
        times["alkit"].append(time_lightning(alkit.Trainer, args.steps, args.width))
        times["plain"].append(time_plain(args.steps, args.width))
    median = {name: statistics.median(values) for name, values in times.items()}
    model = f"MLP 32-{args.width}-2" if args.width else "Linear(32, 2)"
    print(f"model: {model}, batch {BATCH}, steps per run: {args.steps}, rounds: {args.rounds} (interleaved), 1 thread")
    for name, value in median.items():
        print(f"  {name:<10} {value * 1e3:.3f} ms/step   (runs: {', '.join(f'{v * 1e3:.3f}' for v in times[name])})")
    print(f"alkit / lightning = {median['alkit'] / median['lightning']:.3f}   (target <= 1.03)")
    print(f"lightning / plain = {median['lightning'] / median['plain']:.2f}")
    print(f"alkit / plain     = {median['alkit'] / median['plain']:.2f}")


if __name__ == "__main__":
    main()
