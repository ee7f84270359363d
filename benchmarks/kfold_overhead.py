"""K-fold overhead: ``kfold_fit(k=5)`` vs a plain for-loop building a fresh Lightning Trainer per fold, and vs peers.

Same data (scikit-learn's digits, no download), same model, same number of folds and epochs, SGD, batch 32, a test
set tested after every fold, no ensemble. The naive loop is what a user writes without alkit: for each fold a new
``Trainer``, ``fit`` on the fold (validating on its held-out part), ``test`` on the test set. ``kfold_fit`` also saves
one checkpoint per fold (the ensemble and resuming need it), restores the initial weights per fold, rebuilds
optimizers and writes ``kfold_result.json``. ``naive (datamodule)`` is the same loop handing each fold's loaders to
Lightning as a datamodule, as ``kfold_fit`` does: Lightning then looks up, for every batch, whether the datamodule
or the model overrides the batch-transfer hooks (six ``is_overridden`` calls a batch), work a loop given plain
DataLoaders skips; the two naive columns apart measure that cost. The peers, when importable (they need the
``lightning`` namespace, so run with ``ALKIT_LIGHTNING=lightning``; else their columns are skipped and the reason
printed):

- ``pl-crossvalidate``: ``KFoldTrainer.cross_validate``; it needs a logger (a ``CSVLogger`` here), tests each fold
  model on its held-out fold and validates on the datamodule's validation set (the test set here);
- ``lightning-kfold``: ``KFoldTrainer.fit(test_ensemble=False)``; its trainer never calls the datamodule's
  ``setup()``, so the benchmark does.

All columns run interleaved round by round, in a rotated order, after a garbage collection (so machine noise hits them
alike); ratios of the medians of wall time and of process CPU time are reported (CPU time is the steadier one on a
shared machine: waiting for a core does not count). Target: kfold_fit / naive <= 1.02.

``--instructions`` counts the instructions of one run of each column under valgrind's callgrind instead of timing
them: the same count on a busy machine as on a quiet one (10-20 minutes; an instruction is not a nanosecond, but
work added to or removed from kfold_fit shows exactly). ``--parallel N`` compares ``kfold_fit(parallel=N)`` (folds
in N spawned processes) with the sequential run instead.

    python benchmarks/kfold_overhead.py [--epochs 5] [--rounds 5] [--ensemble] [--oof]
    ALKIT_LIGHTNING=lightning python benchmarks/kfold_overhead.py          # with the peer columns
    python benchmarks/kfold_overhead.py --instructions
    python benchmarks/kfold_overhead.py --parallel 2
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Subset, TensorDataset

from alkit.kfold import kfold_fit, make_folds
from alkit.lightning import NAMESPACE, pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _callgrind import UNDER_CALLGRIND, count_segments  # noqa: E402

K = 5
BATCH_SIZE = 32
QUIET = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}


class DigitsMLP(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(-1) == y).float().mean())

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_acc", (self(x).argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.8)}


def digits() -> tuple[TensorDataset, TensorDataset]:
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    train_x, test_x, train_y, test_y = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    return TensorDataset(train_x, train_y), TensorDataset(test_x, test_y)


class DigitsData(pl.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        self.train_set, self.test_set = digits()

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=BATCH_SIZE, shuffle=True)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=BATCH_SIZE)


class FoldData(pl.LightningDataModule):
    """One fold's training and held-out parts and the test set: the naive loop's loaders, as a datamodule."""

    def __init__(self, train_set: TensorDataset, test_set: TensorDataset, train: list[int], held_out: list[int]):
        super().__init__()
        self.train_part, self.held_out, self.test_set = Subset(train_set, train), Subset(train_set, held_out), test_set

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_part, batch_size=BATCH_SIZE, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.held_out, batch_size=BATCH_SIZE)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=BATCH_SIZE)


def naive(model: pl.LightningModule, epochs: int, root: str, *, datamodule: bool = False) -> list[float]:
    """A fresh Trainer per fold: fit on the fold, test on the test set (loaders given as such, or in a datamodule)."""
    train_set, test_set = digits()
    folds = make_folds(len(train_set), K, seed=0)
    test_acc = []
    for fold in folds:
        fold_model = copy.deepcopy(model)
        trainer = pl.Trainer(max_epochs=epochs, default_root_dir=root, **QUIET)
        data = FoldData(train_set, test_set, fold.train_indices.tolist(), fold.val_indices.tolist())
        if datamodule:
            trainer.fit(fold_model, datamodule=data)
            (metrics,) = trainer.test(fold_model, datamodule=data, verbose=False)
        else:
            trainer.fit(fold_model, data.train_dataloader(), data.val_dataloader())
            (metrics,) = trainer.test(fold_model, data.test_dataloader(), verbose=False)
        test_acc.append(metrics["test_acc"])
    return test_acc


def alkit_kfold(model: pl.LightningModule, epochs: int, root: str, *, ensemble: bool, oof: bool, **kwargs) -> list:
    result = kfold_fit(
        model, DigitsData(), k=K, seed=0, ensemble=ensemble, oof=oof, max_epochs=epochs, default_root_dir=root,
        **QUIET, **kwargs,
    )  # fmt: skip
    return [m["test_acc"] for m in result.test_metrics]


def peer_runs() -> tuple[dict[str, Callable[[pl.LightningModule, int, str], list[float]]], list[str]]:
    """The peers' k-fold runs that can run here, and why the others cannot."""
    runs: dict[str, Callable[[pl.LightningModule, int, str], list[float]]] = {}
    skipped = []
    if NAMESPACE != "lightning":
        reason = f"they need the `lightning` namespace, alkit runs on `{NAMESPACE}` (set ALKIT_LIGHTNING=lightning)"
        return runs, [f"pl-crossvalidate, lightning-kfold: {reason}"]
    try:
        import pl_crossvalidate
    except ImportError as err:
        skipped.append(f"pl-crossvalidate: not importable ({err})")
    else:
        runs["pl-crossvalidate"] = lambda model, epochs, root: _pl_crossvalidate(pl_crossvalidate, model, epochs, root)
    try:
        import lightning_kfold
    except ImportError as err:
        skipped.append(f"lightning-kfold: not importable ({err})")
    else:
        runs["lightning-kfold"] = lambda model, epochs, root: _lightning_kfold(lightning_kfold, model, epochs, root)
    return runs, skipped


class DigitsDataWithVal(DigitsData):
    """pl-crossvalidate validates every fold on the wrapped datamodule's validation set (not the held-out fold)."""

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=BATCH_SIZE)


def _pl_crossvalidate(package, model: pl.LightningModule, epochs: int, root: str) -> list[float]:
    logger = pl.loggers.CSVLogger(root)  # KFoldTrainer reads logger.version when it is built
    quiet = {**QUIET, "logger": logger}
    trainer = package.KFoldTrainer(num_folds=K, shuffle=True, max_epochs=epochs, default_root_dir=root, **quiet)
    results = trainer.cross_validate(copy.deepcopy(model), datamodule=DigitsDataWithVal())
    return [fold[0]["test_acc"] for fold in results]


def _lightning_kfold(package, model: pl.LightningModule, epochs: int, root: str) -> list[float]:
    class Digits(package.KFoldDataModule):
        def setup_datasets(self):
            train_set, test_set = digits()
            return train_set, test_set, train_set.tensors[1].numpy()

    datamodule = Digits(num_folds=K, batch_size=BATCH_SIZE)
    datamodule.setup()  # its KFoldTrainer never calls it
    trainer = package.KFoldTrainer(num_folds=K, export_path=root, max_epochs=epochs, default_root_dir=root, **QUIET)
    trainer.fit(copy.deepcopy(model), datamodule, test_ensemble=False)
    return [fold[0]["test_acc"] for fold in trainer.fold_results]


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished child processes (the fold processes of ``parallel=``)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(run: Callable[[str], list[float]]) -> tuple[float, float, list[float]]:
    """Wall and CPU seconds (this process and its fold processes) of ``run`` (in a fresh temporary folder) and its
    per-fold test accuracy.

    What a column prints (lightning-kfold's test tables) goes to ``os.devnull``: the terminal is no part of the cost.
    """
    with tempfile.TemporaryDirectory() as root, open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        gc.collect()
        wall, cpu = time.perf_counter(), _cpu_seconds()
        accuracy = run(root)
        return time.perf_counter() - wall, _cpu_seconds() - cpu, accuracy


def compare(runs: dict[str, Callable[[str], list[float]]], rounds: int, baseline: str) -> None:
    names = list(runs)
    walls: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    accuracy: dict[str, list[float]] = {}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:  # a different order each round
            wall, cpu, accuracy[name] = timed(runs[name])
            walls[name].append(wall)
            cpus[name].append(cpu)
    base_wall, base_cpu = statistics.median(walls[baseline]), statistics.median(cpus[baseline])
    medians = {name: (statistics.median(walls[name]), statistics.median(cpus[name])) for name in names}
    print(f"{'':<22} {'wall (median)':>13} {'/ ' + baseline:>13} {'CPU (median)':>13} {'/ ' + baseline:>13}")
    for name, (wall, cpu) in medians.items():
        print(f"  {name:<20} {wall:11.2f} s {wall / base_wall:13.3f} {cpu:11.2f} s {cpu / base_cpu:13.3f}")
    if "kfold_fit" in medians and "naive (datamodule)" in medians:
        (wall, cpu), (dm_wall, dm_cpu) = medians["kfold_fit"], medians["naive (datamodule)"]
        print(f"kfold_fit / naive (datamodule): wall {wall / dm_wall:.3f}, CPU {cpu / dm_cpu:.3f}")
    print("per-fold test accuracy (last round) and wall times of every round:")
    for name in names:
        folds = " ".join(f"{a:.3f}" for a in accuracy[name])
        print(f"  {name:<20} {folds}   runs: {', '.join(f'{v:.2f}' for v in walls[name])}")


# ---------------------------------------------------------------------------------------------------------------------
# --instructions: instructions counted by valgrind (the same on a busy machine as on a quiet one)
# ---------------------------------------------------------------------------------------------------------------------


def _callgrind_segments(runs: dict[str, Callable[[str], list[float]]], warm_up: dict[str, Callable]) -> None:
    """Under callgrind: one run of each column between two ``os.getppid()`` calls (the dump markers)."""
    for run in warm_up.values():
        timed(run)  # imports and caches, outside the counted segments
    for run in runs.values():
        with tempfile.TemporaryDirectory() as root:
            gc.collect()
            os.getppid()  # `--dump-before=getppid`: the counts so far are written out, the run is counted alone
            run(root)
            os.getppid()
    print("SEGMENTS", " ".join(name.replace(" ", "_") for name in runs))


def count_instructions(arguments: list[str]) -> None:
    """Run this script under ``valgrind --tool=callgrind`` and print each column's instructions and their ratios."""
    stdout, counts = count_segments(__file__, arguments)
    header = [line for line in stdout.splitlines() if line.startswith(("digits:", "  skipped"))]
    print("\n".join(header))
    print(f"{'':<22} {'instructions':>16} {'/ naive':>9}")
    for label, count in counts.items():
        print(f"  {label:<20} {count:16,d} {count / counts['naive']:9.3f}")
    if "naive_(datamodule)" in counts:
        print(f"kfold_fit / naive (datamodule): {counts['kfold_fit'] / counts['naive_(datamodule)']:.3f}")


def columns(
    model: pl.LightningModule, epochs: int, *, oof: bool, ensemble: bool
) -> tuple[dict[str, Callable[[str], list[float]]], list[str]]:
    """Each column's run (given a temporary folder) and why a peer's column is skipped."""
    peers, skipped = peer_runs()
    runs = {
        "naive": lambda root: naive(model, epochs, root),
        "naive (datamodule)": lambda root: naive(model, epochs, root, datamodule=True),
        "kfold_fit": lambda root: alkit_kfold(model, epochs, root, ensemble=False, oof=False),
    }
    if oof:
        runs["kfold_fit+oof"] = lambda root: alkit_kfold(model, epochs, root, ensemble=False, oof=True)
    if ensemble:
        runs["kfold_fit+ensemble"] = lambda root: alkit_kfold(model, epochs, root, ensemble=True, oof=False)
    for name, run in peers.items():
        runs[name] = lambda root, run=run: run(model, epochs, root)
    return runs, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per fold")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ensemble", action="store_true", help="also time kfold_fit with the ensemble test")
    parser.add_argument("--oof", action="store_true", help="also time kfold_fit with out-of-fold predictions")
    parser.add_argument("--parallel", type=int, default=None, help="time kfold_fit(parallel=N) against sequential")
    parser.add_argument("--instructions", action="store_true", help="count instructions under callgrind instead")
    args = parser.parse_args()
    if args.instructions and not os.environ.get(UNDER_CALLGRIND):
        count_instructions(sys.argv[1:])
        return
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = DigitsMLP()
    epochs = args.epochs

    if args.parallel is not None:
        runs = {
            "sequential": lambda root: alkit_kfold(model, epochs, root, ensemble=False, oof=False),
            f"parallel={args.parallel}": lambda root: alkit_kfold(
                model, epochs, root, ensemble=False, oof=False, parallel=args.parallel
            ),
        }
        cpus = os.cpu_count()
        print(f"digits: k={K}, {epochs} epochs per fold, batch {BATCH_SIZE}, {cpus} CPUs, rounds: {args.rounds}")
        compare(runs, args.rounds, "sequential")
        return

    runs, skipped = columns(model, epochs, oof=args.oof, ensemble=args.ensemble)
    if args.instructions:  # this process runs under callgrind
        print(f"digits: k={K}, {epochs} epochs per fold, batch {BATCH_SIZE}, Lightning namespace {NAMESPACE}")
        for reason in skipped:
            print(f"  skipped {reason}")
        _callgrind_segments(runs, warm_up=columns(model, 1, oof=args.oof, ensemble=args.ensemble)[0])
        return
    for run in runs.values():  # warm-up: imports and caches
        timed(run)

    print(
        f"digits: k={K}, {epochs} epochs per fold, batch {BATCH_SIZE}, SGD, test set per fold, no ensemble; "
        f"Lightning namespace {NAMESPACE}, torch threads 1, rounds: {args.rounds} (interleaved, rotated)"
    )
    for reason in skipped:
        print(f"  skipped {reason}")
    compare(runs, args.rounds, "naive")
    print("target: kfold_fit / naive <= 1.02 (medians)", file=sys.stdout)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
