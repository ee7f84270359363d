"""Reproduce Gal, Islam & Ghahramani (2017), Table 1, with alkit's ActiveLearningLoop: MNIST label efficiency.

Number of acquired images needed to reach 10% and 5% MNIST test error, our runs beside the paper's::

    python benchmarks/label_efficiency.py --dataset mnist --heuristics bald,variation_ratios,entropy,random \\
        --seeds 3 --max-labels 1000 --out results/

Protocol (the defaults; every knob is a flag): 20 initial labels balanced over the classes, a 100-image validation
set (model selection only), the standard 10,000-image test set, the rest of the training set as the pool; the paper's
CNN retrained every round from a fresh Keras ``glorot_uniform`` initialisation (zero biases; drawn per (seed, round),
as the authors' code built a new model per round) with Adam and an L2 penalty ``3.5 / N``; 10 acquisitions per round,
``T = 100`` MC-dropout samples scored on a random 2,000-image pool subset per round; 3 seeds; runs up to 1,000
labels. Every setting that differs from the paper's protocol (to save CPU time) is listed in ``protocol.json`` and in
``table.md``.

How alkit is used: one ``alkit.Trainer``, one ``ActiveLearningDataModule`` and one ``ActiveLearningLoop`` per
(heuristic, seed) for the whole run; the loop re-initialises the weights, fits, validates, tests, scores the pool
(``alkit.active.score_pool``: the model's deterministic convolutions run once per image, only the dropout head ``T``
times) and labels, round after round.

Resumable per (heuristic, seed): each run lives in ``<out>/runs/<heuristic>_seed<k>/``; the loop writes its history
(CSV/JSON) and a full checkpoint atomically after every round, so an interrupted run continues from its last
finished round, and a finished run (``run.json``) is never recomputed. ``--rounds-per-invocation`` stops every run
after that many rounds (to spread the benchmark over several sessions). Outputs, rebuilt at the end of every
invocation: ``rounds.csv`` (one row per round of every run), ``table.md``/``table.csv`` (ours: mean +- std over
seeds, beside the paper), ``label_efficiency.png`` and ``protocol.json``.

``--quick``: a seconds-long smoke run for CI (few rounds, small test subset and pool subset, small T).

The full table with the paper's protocol (every default; 3 seeds x 4 heuristics, 99 rounds each up to 1,000 labels;
2 runs at a time, 1 thread each), resumable, writing ``rounds.csv``, ``table.md``/``table.csv``,
``label_efficiency.png`` and ``protocol.json`` into ``--out``::

    python benchmarks/label_efficiency.py --dataset mnist --heuristics bald,variation_ratios,entropy,random \\
        --seeds 3 --jobs 2 --threads 1 --stop-after-crossings true --out benchmarks/results/label_efficiency

``benchmarks/results/label_efficiency`` is kept in the repository: each measured run's configuration, per-round
history and ``run.json`` (not its checkpoints or per-round pool scores), so the table can be rebuilt and audited,
and the command above continues from the runs already there (a run without ``run.json`` starts again).

``--stop-after-crossings true`` ends each run once its test error has reached both 10 % and 5 % (same crossing
points, shorter curves; recorded as a deviation); ``--rounds-per-invocation k`` spreads the work over several calls;
``--report-only`` rebuilds the outputs from the runs on disk without running anything.

Cost per round with this protocol, 1 thread, measured on a shared 2-core machine (load about 6, so about 3.5x an idle
core): train (50 epochs + validation) 8.6 s at 20 labels and 104-114 s at 1,000 labels (about 6.5 s + 0.10 s per
label), test (10,000 images) 12-13 s, scoring (2,000 pool images, T = 100, feature cache) 20-21 s. Summed over the
99 rounds of a run: about 9,100 s there, about 2,600 s on an idle core; the 12 runs with ``--jobs 2`` on an idle
2-core machine: about 4.3 hours (about 1.6 hours with ``--stop-after-crossings true`` if the crossings fall near the
paper's). Earlier measurements on an idle core at 20-40 labels: train 2.2 s, test 3.8 s, scoring 5-7 s at T = 100
(without the feature cache about 12.6 s at T = 20; with ``nn.Dropout`` instead of ``ByteDropout`` about 10 s at
T = 100).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from alkit._io import write_text_atomic
from alkit.lightning import pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _mnist import check_mnist_dir, default_mnist_dir  # noqa: E402

Callback = pl.callbacks.Callback

#: Gal et al. 2017, Table 1: acquired images to reach 10% / 5% MNIST test error.
PAPER_TABLE: dict[str, tuple[int, int]] = {
    "bald": (145, 335),
    "variation_ratios": (120, 295),
    "entropy": (165, 355),
    "random": (255, 835),
}
PAPER_NAMES = {"bald": "BALD", "variation_ratios": "Variation ratios", "entropy": "Max entropy", "random": "Random"}
ERROR_LEVELS = (0.10, 0.05)
DATASETS = ("mnist",)
RUN_FILE = "run.json"
LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
HISTORY_NAME = "active_learning_history"


@dataclass(frozen=True)
class Protocol:
    """Everything that changes the numbers of a run (a run directory is only ever continued with the same)."""

    initial_per_class: int = 2
    val_size: int = 100
    test_size: int = 10_000
    query_size: int = 10
    max_labels: int = 1000
    pool_size: int = 2000
    mc_iterations: int = 100
    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay_c: float = 3.5
    weight_decay_scope: str = "dense"
    patience: int = 0
    min_epochs: int = 0
    restore_best: bool = False
    val_every: int = 1
    fast_dropout: bool = True
    init: str = "glorot_uniform"
    fresh_init_each_round: bool = True
    stop_after_crossings: bool = False

    @property
    def initial_labels(self) -> int:
        return 10 * self.initial_per_class

    @property
    def num_rounds(self) -> int:
        """Rounds so that the last one trains on ``max_labels`` labels (the loop does not score after it)."""
        return math.ceil((self.max_labels - self.initial_labels) / self.query_size) + 1


#: The paper's protocol (with the authors' code where the paper is silent): our defaults.
PAPER = Protocol()

#: What ``--quick`` changes (flags given explicitly still win).
QUICK = {
    "max_labels": 40,
    "test_size": 500,
    "pool_size": 100,
    "mc_iterations": 5,
    "epochs": 3,
    "batch_size": 32,
}

#: Why a setting may differ from the paper's; shown beside each deviation in the outputs.
DEVIATION_REASONS = {
    "mc_iterations": "CPU time: scoring cost grows with T",
    "epochs": "CPU time: training cost grows with epochs x labels",
    "patience": "CPU time: stop a round's training once the 100-image validation accuracy stops improving",
    "min_epochs": "early stopping never stops a round before this many epochs",
    "restore_best": "model selection on the validation set: each round keeps its best validation epoch",
    "test_size": "CPU time: a fixed class-stratified test subset (same images for every run) instead of all 10,000",
    "pool_size": "CPU time: fewer pool images scored per round",
    "max_labels": "CPU time: the runs stop earlier than the paper's 1,000 labels",
    "batch_size": "more gradient steps per epoch on small labelled sets (fewer epochs needed)",
    "val_every": "CPU time: validation every few epochs",
    "query_size": "acquisitions per round differ",
    "initial_per_class": "initial labelled set differs",
    "val_size": "validation set size differs",
    "lr": "learning rate differs",
    "weight_decay_c": "weight decay constant differs",
    "weight_decay_scope": "weight decay applied to other layers",
    "fast_dropout": "dropout masks from torch's float draws instead of byte draws (same distribution)",
    "init": "PyTorch's default initialisation instead of Keras' glorot_uniform (zero biases)",
    "fresh_init_each_round": "every round restarts from the seed's one initialisation instead of a fresh one",
    "stop_after_crossings": "CPU time: a run stops once its test error has reached both levels (the crossing "
    "points are unchanged; its curve ends there)",
}

#: Implementation choices where the paper is silent or where alkit's loop fixes the behaviour.
IMPLEMENTATION_NOTES = [
    "Initialisation: the authors' Keras code builds a new Sequential model (Keras default glorot_uniform kernels, "
    "zero biases) before every acquisition round's fit. fresh_init_each_round=true does the same: at the start of "
    "round r of seed s every weight is redrawn from a generator seeded by (s, r), so every heuristic of a seed "
    "gets the same initial weights in the same round; fresh_init_each_round=false restores the seed's round-0 "
    "weights every round (alkit ActiveLearningLoop should_reset_weights=True).",
    "Weight decay: L2 penalty (c / N) * ||W||^2 on the dense-128 weights (Keras l2(c/N) as in the authors' code), "
    "i.e. Adam weight_decay = 2c/N on that layer; N = labelled training images of the round.",
    "The validation set (100 images, class-stratified, drawn per seed) and the initial 20 labels (2 per class, drawn "
    "per seed) are the same for every heuristic of a seed.",
    "'Acquired images' = labelled training images minus the 20 initial ones (the validation images are not counted).",
    "A crossing point is the first round whose test error is <= the level; mean +- sample std (ddof=1) over seeds. "
    "A run goes on to max_labels (the cap, given in table.md) unless stop_after_crossings ends it once its error "
    "has reached both levels; a level not reached by the cap is reported as 'not reached (> cap)', with the number "
    "of seeds that did reach it.",
    "Dropout masks are drawn from random bytes (ByteDropout: exact Bernoulli(p) for p = 0.25, 0.5) to make the "
    "T-sample MC head cheaper on a CPU; MC-dropout scoring uses alkit's feature cache (convolutions once per image).",
]


# --------------------------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Gal et al. (2017) MNIST label efficiency with alkit's ActiveLearningLoop, beside the paper.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", default="mnist", help=f"one of {DATASETS}")
    parser.add_argument("--heuristics", default="bald,variation_ratios,entropy,random", help="comma-separated")
    parser.add_argument("--seeds", type=int, default=3, help="runs per heuristic (seeds 0..k-1)")
    parser.add_argument("--seed-offset", type=int, default=0, help="first seed")
    parser.add_argument("--out", type=Path, default=Path("results"), help="results folder (created)")
    parser.add_argument(
        "--data", type=Path, default=None, help="folder of the MNIST .gz files [../shared/data/MNIST/raw]"
    )
    parser.add_argument("--quick", action="store_true", help=f"CI smoke run; sets {QUICK} unless given")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run [all cores / jobs]")
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time (processes)")
    parser.add_argument(
        "--rounds-per-invocation", type=int, default=None, help="stop every run after this many rounds (resumable)"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: rebuild the table, rounds.csv, plot and protocol.json from the runs already in --out "
        "(e.g. while other invocations are still running some of them)",
    )
    paper = asdict(PAPER)
    for field in fields(Protocol):
        flag = "--" + field.name.replace("_", "-")
        default = paper[field.name]
        if isinstance(default, bool):
            parser.add_argument(flag, type=_parse_bool, default=None, help=f"true/false [paper: {default}]")
        else:
            parser.add_argument(flag, type=type(default), default=None, help=f"[paper: {default}]")
    return parser


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


@dataclass
class Settings:
    protocol: Protocol
    heuristics: list[str]
    seeds: list[int]
    out: Path
    data: Path
    threads: int
    jobs: int
    rounds_per_invocation: int | None
    quick: bool


def resolve_settings(args: argparse.Namespace) -> Settings:
    """Check every argument (clear errors naming the argument, value and accepted values) before any work."""
    from alkit.active.heuristics import HEURISTIC_NAMES

    if args.dataset.lower() not in DATASETS:
        raise SystemExit(f"error: --dataset {args.dataset!r} is not supported; accepted: {', '.join(DATASETS)}.")
    names = [h.strip().lower().replace("-", "_") for h in args.heuristics.split(",") if h.strip()]
    names = ["entropy" if h == "max_entropy" else h for h in names]
    unknown = [h for h in names if h not in HEURISTIC_NAMES]
    if not names or unknown:
        raise SystemExit(
            f"error: --heuristics {args.heuristics!r}: unknown {unknown or 'empty list'}; accepted: "
            f"{', '.join(HEURISTIC_NAMES)} (alias max_entropy)."
        )
    if len(set(names)) != len(names):
        raise SystemExit(f"error: --heuristics {args.heuristics!r} names a heuristic twice.")
    for flag, value, minimum in (
        ("--seeds", args.seeds, 1),
        ("--seed-offset", args.seed_offset, 0),
        ("--jobs", args.jobs, 1),
        ("--threads", args.threads, 1),
        ("--rounds-per-invocation", args.rounds_per_invocation, 1),
    ):
        if value is not None and value < minimum:
            raise SystemExit(f"error: {flag} must be an integer >= {minimum}, got {value}.")

    values = asdict(PAPER)
    if args.quick:
        values.update(QUICK)
    for name in values:
        given = getattr(args, name)
        if given is not None:
            values[name] = given
    protocol = Protocol(**values)
    _check_protocol(protocol)

    data = args.data if args.data is not None else default_mnist_dir()
    try:
        check_mnist_dir(data)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    cores = os.cpu_count() or 1
    threads = args.threads if args.threads is not None else max(1, cores // args.jobs)
    seeds = list(range(args.seed_offset, args.seed_offset + args.seeds))
    return Settings(protocol, names, seeds, args.out, data, threads, args.jobs, args.rounds_per_invocation, args.quick)


def _check_protocol(p: Protocol) -> None:
    def need(flag: str, value: Any, ok: bool, accepted: str) -> None:
        if not ok:
            raise SystemExit(f"error: --{flag} {value!r} is not accepted; accepted: {accepted}.")

    need("initial-per-class", p.initial_per_class, p.initial_per_class >= 1, "an integer >= 1")
    need("val-size", p.val_size, 10 <= p.val_size <= 10_000, "10..10000 (at least one image per class)")
    need("test-size", p.test_size, 10 <= p.test_size <= 10_000, "10..10000")
    need("query-size", p.query_size, p.query_size >= 1, "an integer >= 1")
    need(
        "max-labels",
        p.max_labels,
        p.max_labels > p.initial_labels,
        f"more than the {p.initial_labels} initial labels",
    )
    need("pool-size", p.pool_size, p.pool_size >= p.query_size, f"an integer >= --query-size ({p.query_size})")
    need("mc-iterations", p.mc_iterations, p.mc_iterations >= 2, "an integer >= 2 (MC dropout compares samples)")
    need("epochs", p.epochs, p.epochs >= 1, "an integer >= 1")
    need("batch-size", p.batch_size, p.batch_size >= 1, "an integer >= 1")
    need("lr", p.lr, p.lr > 0, "a positive float")
    need("weight-decay-c", p.weight_decay_c, p.weight_decay_c >= 0, "a float >= 0")
    need("weight-decay-scope", p.weight_decay_scope, p.weight_decay_scope in ("dense", "all"), "dense, all")
    need("patience", p.patience, p.patience >= 0, "an integer >= 0 (0: no early stopping)")
    need("min-epochs", p.min_epochs, 0 <= p.min_epochs <= p.epochs, f"0..--epochs ({p.epochs})")
    need("val-every", p.val_every, p.val_every >= 1, "an integer >= 1")
    need("init", p.init, p.init in ("glorot_uniform", "torch_default"), "glorot_uniform, torch_default")


def deviations(protocol: Protocol) -> list[dict[str, Any]]:
    """Every setting that differs from the paper's protocol, with its reason."""
    ours, paper = asdict(protocol), asdict(PAPER)
    return [
        {"setting": name, "ours": ours[name], "paper": paper[name], "why": DEVIATION_REASONS.get(name, "")}
        for name in ours
        if ours[name] != paper[name]
    ]


# --------------------------------------------------------------------------------------------------------------------
# one (heuristic, seed) run
# --------------------------------------------------------------------------------------------------------------------
class PausedRun(Exception):
    """Raised to stop a run after ``--rounds-per-invocation`` rounds; its checkpoint lets the next call continue."""


def run_dir(out: Path, heuristic: str, seed: int) -> Path:
    return out / "runs" / f"{heuristic}_seed{seed}"


def run_config(protocol: Protocol, heuristic: str, seed: int) -> dict[str, Any]:
    return {"heuristic": heuristic, "seed": seed, "protocol": asdict(protocol)}


def run_state(directory: Path, config: dict[str, Any]) -> str:
    """``"finished"``, ``"resumable"`` or ``"new"``; a folder made with other settings is refused (never mixed)."""
    config_path = directory / CONFIG_FILE
    if config_path.is_file():
        saved = json.loads(config_path.read_text(encoding="utf-8"))
        if saved != config:
            differ = sorted(
                k
                for k in set(saved["protocol"]) | set(config["protocol"])
                if saved["protocol"].get(k) != config["protocol"].get(k)
            )
            raise SystemExit(
                f"error: {directory} holds a run made with other settings ({', '.join(differ)}: "
                f"{[saved['protocol'].get(k) for k in differ]} there, {[config['protocol'].get(k) for k in differ]} "
                "now); use another --out or the same settings. Nothing was changed."
            )
    if (directory / RUN_FILE).is_file():
        return "finished"
    if (directory / _resume_checkpoint_name()).is_file():
        return "resumable"
    return "new"


def _resume_checkpoint_name() -> str:
    from alkit.active.loop import RESUME_CHECKPOINT

    return RESUME_CHECKPOINT


def _quiet() -> None:
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", ".*Checkpoint directory.*exists and is not empty.*")
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_one(settings: Settings, heuristic: str, seed: int) -> str:
    """Run (or continue) one (heuristic, seed); ``"finished"``, ``"skipped"``, ``"paused"`` or ``"busy"``.

    The run folder is locked while a process works on it: a second invocation started by mistake (or a worker left
    over from an interrupted one) must not write the same history and checkpoint; it reports ``"busy"`` instead.
    """
    directory = run_dir(settings.out, heuristic, seed)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a+") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): run unlocked
            pass
        except OSError:
            return "busy"
        return _run_unlocked(settings, heuristic, seed)


def _run_unlocked(settings: Settings, heuristic: str, seed: int) -> str:
    import torch
    from _gal_model import GalCNN, ValidationModelSelection
    from _mnist import MNISTActiveData, balanced_mask

    from alkit import Trainer
    from alkit.active import ActiveLearningDataModule
    from alkit.active.loop import ActiveLearningLoop

    _quiet()
    torch.set_num_threads(settings.threads)
    protocol = settings.protocol
    directory = run_dir(settings.out, heuristic, seed)
    config = run_config(protocol, heuristic, seed)
    state = run_state(directory, config)
    if state == "finished":
        return "skipped"
    write_text_atomic(directory / CONFIG_FILE, json.dumps(config, indent=2))
    checkpoint = directory / _resume_checkpoint_name()

    data = MNISTActiveData(
        settings.data,
        val_size=protocol.val_size,
        test_size=protocol.test_size,
        batch_size=protocol.batch_size,
        seed=seed,
    )
    initial = balanced_mask(
        np.asarray(data.train_dataset.targets), protocol.initial_per_class, np.random.default_rng(seed)
    )
    datamodule = ActiveLearningDataModule(
        data,
        heuristic=heuristic,
        map_dataset_to_labelled=lambda dataset: initial,
        query_size=protocol.query_size,
        pool_size=protocol.pool_size,
        seed=seed,
        pool_batch_size=500,
    )
    model = GalCNN(
        weight_decay_c=protocol.weight_decay_c,
        weight_decay_scope=protocol.weight_decay_scope,
        lr=protocol.lr,
        fast_dropout=protocol.fast_dropout,
        init=protocol.init,
    )
    model.initialize(init_generator(seed, 0))  # the same initial weights for every heuristic of a seed
    loop = ActiveLearningLoop(
        label_epoch_frequency=protocol.epochs,
        inference_iteration=protocol.mc_iterations,
        should_reset_weights=True,
        max_rounds=protocol.num_rounds,
        budget=protocol.max_labels - protocol.initial_labels,
        seed=seed,
        export_path=directory,
        checkpoint_each_round=True,
        stopping_criterion=StopAfterCrossings() if protocol.stop_after_crossings else None,
    )
    if loop.stopping_criterion is not None:
        loop.stopping_criterion.loop = loop
    callbacks: list[Any] = [
        ValidationModelSelection(protocol.patience, protocol.min_epochs, protocol.restore_best),
        _RoundPrinter(heuristic, seed, protocol.initial_labels, protocol.num_rounds),
    ]
    if protocol.fresh_init_each_round:
        callbacks.append(FreshInitEachRound(seed))
    if settings.rounds_per_invocation is not None:
        callbacks.append(_PauseAfter(settings.rounds_per_invocation))
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=protocol.num_rounds,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=protocol.val_every,
        default_root_dir=directory,
        callbacks=callbacks,
    )
    loop.connect(trainer.fit_loop)
    trainer.fit_loop = loop
    resume = str(checkpoint) if state == "resumable" else None
    if resume:
        print(f"[{heuristic} seed {seed}] resuming from {checkpoint}", flush=True)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume)
    except PausedRun:
        return "paused"
    summary = {"status": "finished", "rounds": len(loop.history), "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_text_atomic(directory / RUN_FILE, json.dumps(summary, indent=2))
    if checkpoint.is_file():
        checkpoint.unlink()  # a finished run is never continued: its history is the result
    return "finished"


class StopAfterCrossings:
    """Stop a run once its test error has been at or below every level of ``ERROR_LEVELS`` (both crossings found).

    A ``should_stop(metrics, uncertainty)`` criterion for the loop: it reads the loop's history (the one restored
    with a resumed run) and the current round's metrics, so it keeps no state of its own.
    """

    def __init__(self) -> None:
        self.loop: Any = None

    def should_stop(self, metrics: dict[str, float], uncertainty: Any = None) -> bool:
        history = self.loop.history if self.loop is not None else ()
        errors = [1.0 - r.metrics.get("test_acc", 0.0) for r in history] + [1.0 - metrics.get("test_acc", 0.0)]
        return both_levels_reached(errors)


def both_levels_reached(errors: list[float]) -> bool:
    return all(any(e <= level + 1e-12 for e in errors) for level in ERROR_LEVELS)


def init_generator(seed: int, round_index: int) -> Any:
    """The generator of the initial weights of round ``round_index`` of seed ``seed`` (a function of both only)."""
    import torch

    state = np.random.SeedSequence([seed, round_index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class FreshInitEachRound(Callback):
    """Redraw every weight at the start of each round's training, as the authors' code built a new model per round.

    Round ``r`` of seed ``s`` starts from ``init_generator(s, r)``'s draw (after the loop's restore of the round-0
    weights, which it replaces), independent of the heuristic and of the global RNG the run's other draws use, so a
    resumed run draws the same weights. (This script saves its checkpoints between rounds only, so every training
    start is a round's start.)
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rounds_initialised: list[int] = []

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        round_index = int(trainer.fit_loop.current_round)
        pl_module.initialize(init_generator(self.seed, round_index))
        self.rounds_initialised.append(round_index)


class _RoundPrinter(Callback):
    """One line per finished round (the loop's history), printed when the next round starts and at the end."""

    def __init__(self, heuristic: str, seed: int, initial: int, rounds: int) -> None:
        self.heuristic, self.seed, self.initial, self.rounds = heuristic, seed, initial, rounds
        self.printed = 0

    def _print_new(self, trainer: Any) -> None:
        history = getattr(trainer.fit_loop, "history", None)
        if history is None:
            return
        if self.printed == 0:
            self.printed = max(0, len(history) - 1)  # resumed: print only the last round already done
        for record in list(history)[self.printed :]:
            m = record.metrics
            print(
                f"[{self.heuristic} seed {self.seed}] round {record.round + 1}/{self.rounds} "
                f"acquired {record.num_labelled - self.initial:4d} test_acc {m.get('test_acc', float('nan')):.4f} "
                f"epochs {m.get('epochs', float('nan')):.0f} train {m.get('fit_time_s', float('nan')):.2f}s "
                f"test {m.get('test_time_s', float('nan')):.2f}s score {record.scoring_time_s:.2f}s",
                flush=True,
            )
        self.printed = len(history)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._print_new(trainer)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._print_new(trainer)


class _PauseAfter(Callback):
    """Stop the run when round ``k + 1`` of this invocation would start (the last checkpoint is the round ``k``'s)."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.started = 0

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.started += 1
        if self.started > self.rounds:
            raise PausedRun(f"stopped after {self.rounds} round(s) (--rounds-per-invocation)")


def _exit_with_parent(parent: int) -> None:
    """In a worker: exit when the invoking process is gone (a killed invocation must not leave runs going on)."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)  # the run's last finished round is on disk; the next invocation continues from it

    threading.Thread(target=watch, daemon=True).start()


def _run_in_worker(settings: Settings, heuristic: str, seed: int) -> tuple[str, str, int, float]:
    """Run one (heuristic, seed); a failure is reported and the other runs go on (this one stays resumable)."""
    start = time.perf_counter()
    try:
        status = run_one(settings, heuristic, seed)
    except Exception:  # report and continue with the next run: its checkpoint lets a later call continue it
        import traceback

        traceback.print_exc()
        status = "failed"
    return status, heuristic, seed, time.perf_counter() - start


# --------------------------------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------------------------------
ROUND_COLUMNS = [
    "heuristic", "seed", "round", "labelled", "acquired", "test_acc", "test_error", "val_acc", "epochs",
    "time_train_s", "time_test_s", "time_score_s", "time_round_s",
]  # fmt: skip


def collect_rounds(out: Path, heuristics: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    """One row per round of every run found on disk (finished or not)."""
    from alkit.active import ActiveLearningHistory

    rows = []
    for heuristic in heuristics:
        for seed in seeds:
            path = run_dir(out, heuristic, seed) / f"{HISTORY_NAME}.json"
            if not path.is_file():
                continue
            config = json.loads((path.parent / CONFIG_FILE).read_text(encoding="utf-8"))
            initial = 10 * config["protocol"]["initial_per_class"]
            for record in ActiveLearningHistory.load(path):
                m = record.metrics
                acc = m.get("test_acc", float("nan"))
                rows.append(
                    {
                        "heuristic": heuristic,
                        "seed": seed,
                        "round": record.round,
                        "labelled": record.num_labelled,
                        "acquired": record.num_labelled - initial,
                        "test_acc": acc,
                        "test_error": 1.0 - acc,
                        "val_acc": m.get("val_acc", float("nan")),
                        "epochs": m.get("epochs", float("nan")),
                        "time_train_s": m.get("fit_time_s", float("nan")),
                        "time_test_s": m.get("test_time_s", float("nan")),
                        "time_score_s": record.scoring_time_s,
                        "time_round_s": record.train_time_s + record.scoring_time_s,
                    }
                )
    return rows


def crossing(rows: list[dict[str, Any]], level: float) -> int | None:
    """Acquired images at the first round whose test error is <= ``level`` (None: never within the run)."""
    for row in sorted(rows, key=lambda r: r["round"]):
        if row["test_error"] <= level + 1e-12:
            return int(row["acquired"])
    return None


def _format_cell(values: list[int | None], complete: list[bool], max_acquired: int) -> str:
    """Mean +- std of the seeds that reached the level; a run still going is "running", not "not reached"."""
    reached = [v for v in values if v is not None]
    missed = sum(v is None and done for v, done in zip(values, complete))
    running = sum(v is None and not done for v, done in zip(values, complete))
    if not reached:
        text = f"not reached (> {max_acquired})" if missed else "running"
    else:
        mean = float(np.mean(reached))
        text = f"{mean:.0f} ± {float(np.std(reached, ddof=1)):.0f}" if len(reached) > 1 else f"{mean:.0f}"
    notes = [f"{len(reached)}/{len(values)} seeds"] if reached and len(reached) < len(values) else []
    notes += [f"{missed} not reached by {max_acquired}"] if missed and reached else []
    notes += [f"{running} still running"] if running and (reached or missed) else []
    return text + (f" ({'; '.join(notes)})" if notes else "")


def build_table(rows: list[dict[str, Any]], heuristics: list[str], protocol: Protocol) -> list[dict[str, Any]]:
    """Per heuristic: our crossing points per seed and their mean/std, beside the paper's numbers."""
    max_acquired = protocol.max_labels - protocol.initial_labels
    table = []
    for heuristic in heuristics:
        by_seed: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            if row["heuristic"] == heuristic:
                by_seed.setdefault(row["seed"], []).append(row)
        entry: dict[str, Any] = {"heuristic": heuristic, "name": PAPER_NAMES.get(heuristic, heuristic)}
        entry["seeds"] = sorted(by_seed)
        entry["complete"] = [
            len(by_seed[s]) >= protocol.num_rounds
            or (protocol.stop_after_crossings and both_levels_reached([r["test_error"] for r in by_seed[s]]))
            for s in sorted(by_seed)
        ]
        for level in ERROR_LEVELS:
            key = f"{round(level * 100)}%"
            values = [crossing(by_seed[s], level) for s in sorted(by_seed)]
            reached = [v for v in values if v is not None]
            entry[f"ours_{key}_per_seed"] = values
            entry[f"ours_{key}"] = _format_cell(values, entry["complete"], max_acquired) if values else "no run"
            entry[f"ours_{key}_mean"] = float(np.mean(reached)) if reached else None
            paper = PAPER_TABLE.get(heuristic, (None, None))[ERROR_LEVELS.index(level)]
            entry[f"paper_{key}"] = paper
            mean = entry[f"ours_{key}_mean"]
            entry[f"ratio_{key}"] = (
                (mean / paper) if (mean is not None and paper and len(reached) == len(values)) else None
            )
        table.append(entry)
    return table


def table_markdown(table: list[dict[str, Any]], protocol: Protocol, rows: list[dict[str, Any]]) -> str:
    cap = protocol.max_labels - protocol.initial_labels
    stop = ", or stops once its test error has reached both levels" if protocol.stop_after_crossings else ""
    lines = [
        "# Label efficiency on MNIST: alkit vs Gal, Islam & Ghahramani (2017), Table 1",
        "",
        "Acquired images (beyond the 20 initial labels) needed to reach 10% and 5% test error; ours: mean ± std over"
        " seeds (first round at or below the error level).",
        "",
        f"Cap: every run goes on to {protocol.max_labels} labelled images ({cap} acquired){stop}; a level not"
        " reached by then is reported as not reached.",
        "",
        "| acquisition | ours 10% | paper 10% | ours/paper | ours 5% | paper 5% | ours/paper | seeds (complete) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in table:
        ratios = []
        for key in ("10%", "5%"):
            r = e[f"ratio_{key}"]
            ratios.append(f"{r:.2f}" if r is not None else "–")
        complete = f"{len(e['seeds'])} ({sum(e['complete'])})"
        lines.append(
            f"| {e['name']} | {e['ours_10%']} | {e['paper_10%']} | {ratios[0]} | {e['ours_5%']} | {e['paper_5%']} | "
            f"{ratios[1]} | {complete} |"
        )
    lines += ["", "Per seed (acquired images at 10% / 5%; '–' = not reached, '…' = still running):", ""]
    for e in table:
        per = ", ".join(
            f"seed {s}: {_dash(a, done)} / {_dash(b, done)}"
            for s, a, b, done in zip(e["seeds"], e["ours_10%_per_seed"], e["ours_5%_per_seed"], e["complete"])
        )
        lines.append(f"- {e['name']}: {per}")
    lines += ["", "## Protocol", "", "```", json.dumps(asdict(protocol), indent=1), "```", ""]
    devs = deviations(protocol)
    lines += ["## Deviations from the paper's protocol", ""]
    if devs:
        lines += [f"- `{d['setting']}`: {d['ours']} (paper: {d['paper']}) — {d['why']}" for d in devs]
    else:
        lines.append("- none")
    lines += ["", "## Implementation notes", ""] + [f"- {note}" for note in IMPLEMENTATION_NOTES]
    if rows:
        lines += [
            "",
            "## Mean wall time per round (s)",
            "",
            "| acquisition | train | test | score | round |",
            "|---|---|---|---|---|",
        ]
        for e in table:
            mine = [r for r in rows if r["heuristic"] == e["heuristic"]]
            if mine:
                means = [
                    np.nanmean([r[k] for r in mine])
                    for k in ("time_train_s", "time_test_s", "time_score_s", "time_round_s")
                ]
                lines.append(f"| {e['name']} | " + " | ".join(f"{v:.2f}" for v in means) + " |")
    return "\n".join(lines) + "\n"


def _dash(value: int | None, complete: bool = True) -> str:
    return str(value) if value is not None else ("–" if complete else "…")


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    write_text_atomic(path, buffer.getvalue())


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return " ".join(_dash(v) for v in value)
    return value


def plot(rows: list[dict[str, Any]], heuristics: list[str], protocol: Protocol, path: Path) -> None:
    """Test accuracy vs acquired images (mean over seeds, min-max band), with the paper's crossing points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, heuristic in enumerate(heuristics):
        mine = [r for r in rows if r["heuristic"] == heuristic]
        if not mine:
            continue
        color = colors[k % len(colors)]
        acquired = sorted({r["acquired"] for r in mine})
        per_x = [[r["test_acc"] for r in mine if r["acquired"] == a] for a in acquired]
        mean = [float(np.mean(v)) for v in per_x]
        ax.plot(acquired, mean, color=color, label=f"{PAPER_NAMES.get(heuristic, heuristic)} (ours)")
        ax.fill_between(acquired, [min(v) for v in per_x], [max(v) for v in per_x], color=color, alpha=0.15)
        for level, paper in zip(ERROR_LEVELS, PAPER_TABLE.get(heuristic, ())):
            ax.plot([paper], [1 - level], marker="*", markersize=13, color=color, markeredgecolor="black", linestyle="")
    for level in ERROR_LEVELS:
        ax.axhline(1 - level, color="grey", linestyle="--", linewidth=0.8)
    ax.plot(
        [],
        [],
        marker="*",
        markersize=11,
        color="white",
        markeredgecolor="black",
        linestyle="",
        label="paper's crossing points",
    )
    ax.set_xlabel("acquired images (beyond the 20 initial labels)")
    ax.set_ylabel(f"test accuracy ({protocol.test_size} test images)")
    ax.set_ylim(0.6, 1.0)
    ax.set_title("MNIST label efficiency: alkit vs Gal et al. (2017)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".png", delete=False) as handle:
        tmp = handle.name
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


def summarize(settings: Settings) -> str:
    """Rebuild rounds.csv, table.md/.csv, the plot and protocol.json from the runs on disk; return the table."""
    out, protocol = settings.out, settings.protocol
    rows = collect_rounds(out, settings.heuristics, settings.seeds)
    write_csv(out / "rounds.csv", rows, ROUND_COLUMNS)
    table = build_table(rows, settings.heuristics, protocol)
    markdown = table_markdown(table, protocol, rows)
    write_text_atomic(out / "table.md", markdown)
    columns = ["heuristic", "ours_10%", "paper_10%", "ratio_10%", "ours_5%", "paper_5%", "ratio_5%",
               "ours_10%_per_seed", "ours_5%_per_seed"]  # fmt: skip
    write_csv(out / "table.csv", table, columns)
    protocol_info = {
        "protocol": asdict(protocol),
        "paper_protocol": asdict(PAPER),
        "deviations": deviations(protocol),
        "implementation_notes": IMPLEMENTATION_NOTES,
        "quick": settings.quick,
        "threads_per_run": settings.threads,
        "jobs": settings.jobs,
        "data": str(settings.data),
    }
    write_text_atomic(out / "protocol.json", json.dumps(protocol_info, indent=2))
    if rows:
        plot(rows, settings.heuristics, protocol, out / "label_efficiency.png")
    return markdown


# --------------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings, report_only = resolve_settings(args), args.report_only
    settings.out.mkdir(parents=True, exist_ok=True)
    runs = [(h, s) for s in settings.seeds for h in settings.heuristics]  # seed-major: a full table row comes early
    for heuristic, seed in runs:  # refuse mixed settings before anything runs
        run_state(run_dir(settings.out, heuristic, seed), run_config(settings.protocol, heuristic, seed))
    if report_only:
        print(summarize(settings), flush=True)
        return 0
    p = settings.protocol
    print(
        f"label_efficiency: {len(runs)} runs x {p.num_rounds} rounds (T={p.mc_iterations}, epochs={p.epochs}, "
        f"pool {p.pool_size}, test {p.test_size}, init {p.init}"
        f"{', fresh per round' if p.fresh_init_each_round else ', same every round'}), "
        f"{settings.jobs} job(s) x {settings.threads} thread(s) "
        f"-> {settings.out}",
        flush=True,
    )
    start = time.perf_counter()
    statuses: dict[tuple[str, int], str] = {}
    if settings.jobs == 1:
        for heuristic, seed in runs:
            statuses[(heuristic, seed)] = _report(_run_in_worker(settings, heuristic, seed))
    else:
        watch = {"initializer": _exit_with_parent, "initargs": (os.getpid(),)}
        with ProcessPoolExecutor(settings.jobs, get_context("spawn"), **watch) as pool:
            futures = [pool.submit(_run_in_worker, settings, h, s) for h, s in runs]
            for future in futures:
                status, heuristic, seed, _ = result = future.result()
                statuses[(heuristic, seed)] = _report(result)
    print(summarize(settings), flush=True)
    done = sum(status in ("finished", "skipped") for status in statuses.values())
    print(
        f"{done}/{len(runs)} runs complete; {time.perf_counter() - start:.0f} s; results in {settings.out}", flush=True
    )
    return 0


def _report(result: tuple[str, str, int, float]) -> str:
    status, heuristic, seed, seconds = result
    print(f"[{heuristic} seed {seed}] {status} ({seconds:.0f} s)", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
