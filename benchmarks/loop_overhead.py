"""Loop overhead: ``alkit.Trainer`` vs ``pytorch_lightning.Trainer`` vs a plain PyTorch loop, side by side.

A tiny model makes the per-step cost of the loop machinery dominate. Four configurations are interleaved round by
round, each round starting with another one (so machine noise and the position in a round hit them alike), and the
median per-step time of each is reported with the ratios:

- ``lightning``: ``pytorch_lightning.Trainer``;
- ``alkit``: ``alkit.Trainer`` with its default loops (a user who never replaces a loop);
- ``alkit+opt``: ``alkit.Trainer`` with a replaced optimizer loop, ``trainer.fit_loop.epoch_loop.batch_loop.connect(
  optimizer_loop=MyOptimizerLoop())`` where ``MyOptimizerLoop`` is a trivial subclass of ``OptimizerLoop`` (what a
  user who customises the batch level pays);
- ``plain``: a hand-written PyTorch loop (the floor).

Targets: alkit / Lightning <= 1.01 with the default loops; the replaced optimizer loop is reported beside it.
Wall-clock time is the measure; the process CPU time is printed too, as a check on a machine that is not quiet
(other processes stretch wall-clock time but hardly CPU time). Run it with ``OMP_NUM_THREADS=1`` on a quiet machine.

    OMP_NUM_THREADS=1 python benchmarks/loop_overhead.py [--steps 2000] [--rounds 5] [--width 0]

On a machine shared with other work, ``--instructions`` counts the instructions per step under valgrind's callgrind
instead (deterministic; 10-20 minutes): ``python benchmarks/loop_overhead.py --instructions --steps 500``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

import alkit
from alkit.lightning import pl
from alkit.loops import OptimizerLoop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _callgrind import UNDER_CALLGRIND, count_segments  # noqa: E402


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


class MyOptimizerLoop(OptimizerLoop):
    """A trivial subclass: the cost of any user-replaced optimizer loop, with no work of its own."""


def replace_optimizer_loop(trainer: pl.Trainer) -> None:
    trainer.fit_loop.epoch_loop.batch_loop.connect(optimizer_loop=MyOptimizerLoop())


BATCH = 8


def data(steps: int) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    return DataLoader(
        TensorDataset(torch.randn(steps * BATCH, 32, generator=generator), torch.randint(0, 2, (steps * BATCH,))),
        batch_size=BATCH,
    )


def time_lightning(
    trainer_cls: type, steps: int, width: int = 0, customise: Callable[[pl.Trainer], None] | None = None
) -> tuple[float, float]:
    """(wall-clock, process CPU) seconds per step of ``trainer.fit``."""
    torch.manual_seed(0)
    model, loader = TinyModel(width), data(steps)
    trainer = trainer_cls(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    if customise is not None:
        customise(trainer)
    start, start_cpu = time.perf_counter(), time.process_time()
    trainer.fit(model, loader)
    elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    assert trainer.global_step == steps
    return elapsed / steps, elapsed_cpu / steps


def time_plain(steps: int, width: int = 0) -> tuple[float, float]:
    torch.manual_seed(0)
    model, loader = TinyModel(width), data(steps)
    optimizer = model.configure_optimizers()
    start, start_cpu = time.perf_counter(), time.process_time()
    model.train()
    for batch_idx, batch in enumerate(loader):
        optimizer.zero_grad()
        loss = model.training_step(batch, batch_idx)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps, (time.process_time() - start_cpu) / steps


# ---------------------------------------------------------------------------------------------------------------------
# --instructions: instructions per step counted by valgrind (the same on a busy machine as on a quiet one)
# ---------------------------------------------------------------------------------------------------------------------
_FIRST_RUN_STEPS = 100  # per configuration: a run of 100 steps and one of 100 + --steps; the difference is per step


def _callgrind_segments(steps: int, width: int) -> None:
    """Under callgrind: each configuration's two runs, each between two ``os.getppid()`` calls (dump markers)."""
    configurations = {
        "lightning": (pl.Trainer, None),
        "alkit": (alkit.Trainer, None),
        "alkit+opt": (alkit.Trainer, replace_optimizer_loop),
    }
    for trainer_cls, customise in configurations.values():
        time_lightning(trainer_cls, 20, width, customise)  # warm-up
    for trainer_cls, customise in configurations.values():
        for n in (_FIRST_RUN_STEPS, _FIRST_RUN_STEPS + steps):
            os.getppid()  # `--dump-before=getppid`: the counts so far are written out, the run is counted alone
            time_lightning(trainer_cls, n, width, customise)
            os.getppid()
    print(
        "SEGMENTS",
        " ".join(f"{name}:{n}" for name in configurations for n in (_FIRST_RUN_STEPS, _FIRST_RUN_STEPS + steps)),
    )


def count_instructions(steps: int, width: int) -> None:
    """Run this script under ``valgrind --tool=callgrind`` and print the instructions per step of each configuration.

    Deterministic: other processes do not change the count, so the ratio can be measured on a busy machine. An
    instruction is not a nanosecond, so the ratio of times on a quiet machine can differ somewhat, but a change that
    removes work from alkit's step shows here exactly, whatever else the machine is doing.
    """
    _, counts = count_segments(__file__, ["--steps", str(steps), "--width", str(width), "--instructions"])
    labels = list(counts)
    per_step = {}
    for label in labels[::2]:
        name = label.split(":")[0]
        short, long = counts[f"{name}:{_FIRST_RUN_STEPS}"], counts[f"{name}:{_FIRST_RUN_STEPS + steps}"]
        per_step[name] = (long - short) / steps
    model = f"MLP 32-{width}-2" if width else "Linear(32, 2)"
    print(f"model: {model}, batch {BATCH}, instructions per step ({steps} steps counted by callgrind), 1 thread")
    for name, value in per_step.items():
        print(f"  {name:<10} {value:,.0f}")
    for name in ("alkit", "alkit+opt"):
        print(f"{name + ' / lightning':<22} = {per_step[name] / per_step['lightning']:.3f} (instructions)")


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
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per step under valgrind's callgrind instead of timing (deterministic, for a busy"
        " machine; needs valgrind, takes 10-20 minutes; --rounds is not used)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    if args.instructions:
        if os.environ.get(UNDER_CALLGRIND):
            _callgrind_segments(args.steps, args.width)
        else:
            count_instructions(args.steps, args.width)
        return

    runs: dict[str, Callable[[], tuple[float, float]]] = {
        "lightning": lambda: time_lightning(pl.Trainer, args.steps, args.width),
        "alkit": lambda: time_lightning(alkit.Trainer, args.steps, args.width),
        "alkit+opt": lambda: time_lightning(alkit.Trainer, args.steps, args.width, replace_optimizer_loop),
        "plain": lambda: time_plain(args.steps, args.width),
    }
    time_lightning(pl.Trainer, 50, args.width)  # warm-up imports and caches
    time_lightning(alkit.Trainer, 50, args.width, replace_optimizer_loop)
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_index in range(args.rounds):
        # each round starts with another configuration, so no configuration always runs first or last
        for name in names[round_index % len(names) :] + names[: round_index % len(names)]:
            gc.collect()
            seconds, cpu_seconds = runs[name]()
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
    median = {name: statistics.median(values) for name, values in wall.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    model = f"MLP 32-{args.width}-2" if args.width else "Linear(32, 2)"
    print(
        f"model: {model}, batch {BATCH}, steps per run: {args.steps}, rounds: {args.rounds} (interleaved, order"
        " rotated each round), 1 thread"
    )
    for name, value in median.items():
        runs_text = ", ".join(f"{v * 1e3:.3f}" for v in wall[name])
        print(f"  {name:<10} {value * 1e3:.3f} ms/step, CPU {median_cpu[name] * 1e3:.3f}   (runs: {runs_text})")
    for name, target in (("alkit", "   (target <= 1.01)"), ("alkit+opt", "")):
        ratio, ratio_cpu = median[name] / median["lightning"], median_cpu[name] / median_cpu["lightning"]
        print(f"{name + ' / lightning':<22} = {ratio:.3f}, CPU {ratio_cpu:.3f}{target}")
    print(f"{'lightning / plain':<22} = {median['lightning'] / median['plain']:.2f}")
    print(f"{'alkit / plain':<22} = {median['alkit'] / median['plain']:.2f}")


if __name__ == "__main__":
    main()
