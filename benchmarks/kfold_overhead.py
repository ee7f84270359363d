"""K-fold overhead: ``kfold_fit(k=5)`` vs a plain for-loop building a fresh Lightning Trainer per fold.

Same data (scikit-learn's digits, no download), same model, same folds, same epochs. The naive loop is what a user
writes without alkit: for each fold a new ``pytorch_lightning.Trainer``, ``fit`` on the fold, ``test`` on the test
set. ``kfold_fit`` additionally saves one checkpoint per fold (for the ensemble and for resuming), restores the
initial weights and rebuilds optimizers per fold and, with the ensemble on, tests the soft-voting ensemble. The
three are interleaved round by round (so machine noise hits them alike); ratios of the medians and of the best runs
are reported (on a busy machine the best runs are the steadier estimate of the intrinsic cost).
Target: kfold_fit / naive <= 1.05.

    python benchmarks/kfold_overhead.py [--epochs 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Subset, TensorDataset

from alkit.kfold import kfold_fit, make_folds
from alkit.lightning import pl

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


def naive(model: pl.LightningModule, epochs: int) -> tuple[float, list[float]]:
    """A fresh Trainer per fold: fit on the fold, test on the test set."""
    train_set, test_set = digits()
    folds = make_folds(len(train_set), K, seed=0)
    start = time.perf_counter()
    test_acc = []
    for fold in folds:
        fold_model = copy.deepcopy(model)
        trainer = pl.Trainer(max_epochs=epochs, **QUIET)
        trainer.fit(
            fold_model,
            DataLoader(Subset(train_set, fold.train_indices.tolist()), batch_size=BATCH_SIZE, shuffle=True),
            DataLoader(Subset(train_set, fold.val_indices.tolist()), batch_size=BATCH_SIZE),
        )
        (metrics,) = trainer.test(fold_model, DataLoader(test_set, batch_size=BATCH_SIZE), verbose=False)
        test_acc.append(metrics["test_acc"])
    return time.perf_counter() - start, test_acc


def alkit_kfold(model: pl.LightningModule, epochs: int, ensemble: bool) -> tuple[float, list[float]]:
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        result = kfold_fit(
            model, DigitsData(), k=K, seed=0, ensemble=ensemble, max_epochs=epochs, default_root_dir=root, **QUIET
        )
        elapsed = time.perf_counter() - start
    return elapsed, [m["test_acc"] for m in result.test_metrics]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per fold")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)

    torch.manual_seed(0)
    model = DigitsMLP()
    alkit_kfold(model, 1, ensemble=False)  # warm-up imports and caches
    naive(model, 1)

    runs = {
        "naive": lambda: naive(model, args.epochs),
        "kfold_fit": lambda: alkit_kfold(model, args.epochs, ensemble=False),
        "kfold_fit+ensemble": lambda: alkit_kfold(model, args.epochs, ensemble=True),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    accuracy: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, run in runs.items():
            elapsed, accuracy[name] = run()
            times[name].append(elapsed)
    median = {name: statistics.median(values) for name, values in times.items()}

    print(f"digits: k={K}, {args.epochs} epochs per fold, batch {BATCH_SIZE}, rounds: {args.rounds} (interleaved)")
    for name, value in median.items():
        runs = ", ".join(f"{v:.2f}" for v in times[name])
        folds = " ".join(f"{a:.3f}" for a in accuracy[name])
        print(f"  {name:<19} {value:6.2f} s   (runs: {runs})   per-fold test_acc: {folds}")
    best = {name: min(values) for name, values in times.items()}
    print(
        f"kfold_fit / naive            = {median['kfold_fit'] / median['naive']:.3f} (medians)"
        f"   {best['kfold_fit'] / best['naive']:.3f} (best runs)   target <= 1.05"
    )
    print(
        f"kfold_fit+ensemble / naive   = {median['kfold_fit+ensemble'] / median['naive']:.3f} (medians)"
        f"   {best['kfold_fit+ensemble'] / best['naive']:.3f} (best runs)"
    )


if __name__ == "__main__":
    main()
