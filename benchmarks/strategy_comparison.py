"""Which acquisition strategy labels best? Every strategy over several seeds, from equal starts, with statistics.

::

    python benchmarks/strategy_comparison.py --task digits --seeds 5 --out results/strategy_comparison/digits
    python benchmarks/strategy_comparison.py --task hymenoptera --seeds 5 --out results/strategy_comparison/hymenoptera
    python benchmarks/strategy_comparison.py --dataset mnist --seeds 5 --out results/strategy_comparison/mnist
    python benchmarks/strategy_comparison.py --dataset mnist --cold-start --train-size 10000 --seeds 5 \
        --out results/strategy_comparison/mnist/cold_start
    python benchmarks/strategy_comparison.py --quick --out /tmp/strategy_comparison     # seconds: a smoke test

Each seed gives every strategy the same initial labels, the same initial weights and the same test set
(:func:`alkit.active.comparison.compare_strategies`); per run the normalised area under the test-accuracy curve
(AULC); per strategy its mean with a 95 % Student-t interval; per strategy the paired difference against random
and against ``--baseline`` with a paired t-test over seeds. Printed: a per-round table (mean and standard deviation
across seeds) and the AULC table; written to ``--out``: ``comparison.json``, ``table.md``, ``label_efficiency.png``
(mean curves with confidence bands) and ``runs/<strategy>_seed<k>.json``.

Resumable per (strategy, seed): a finished run is kept in ``runs/`` and read back, not recomputed, when the same
command runs again (a run made with other settings is refused).

Tasks (small by default, to run on a 2-core CPU; ``--dataset`` is another name for ``--task``):

* ``digits``: scikit-learn's 8x8 digits (1,437 training / 360 test images), a one-hidden-layer dropout MLP,
  20 initial labels, 8 rounds of +10, each round scoring a random 300 of the pool (Gal et al.'s protocol; BaaL's
  BatchBALD on the whole pool takes minutes a round).
* ``hymenoptera``: the demo's task (``alkit demo hymenoptera``): the frozen MobileNetV2's features of the 245
  training and 153 test images (computed once and cached in ``--out``), a ``Dropout + Linear`` head with the demo's
  training settings, 10 initial labels, 6 rounds of +10, the whole pool scored (``--pool-size 0``).
* ``mnist``: Gal, Islam & Ghahramani (2017)'s setting, reduced to fit a CPU: the md5-checked MNIST files of
  ``../shared/data/MNIST/raw`` (``--data``), their CNN (``benchmarks/_gal_model.py``: Adam, L2 ``3.5 / N`` on the
  dense layer, a fresh Keras-style initialisation per (seed, round), as ``label_efficiency.py``), a 100-image
  validation set drawn per seed and held out of the pool (not evaluated: nothing selects on it), a fixed
  class-stratified 500-image subset of the test set (``--test-size``; the same images for every seed), 20 initial
  labels balanced over the classes (2 per class, drawn per seed), 4 rounds of +10 (20 -> 60 labels), 30 epochs a
  round (one batch of 128 an epoch at these sizes), each round scoring a random 500 of the pool with ``T = 20``;
  BatchBALD estimates its joint entropies from 50 draws per MC sample (``--batch-bald-draws``; BaaL's default of
  500 cost 200 s a round there, against 5-10 s for every other strategy).
  Reduced from ``label_efficiency.py``'s protocol (50 epochs, 2,000 pool images scored with ``T = 100``, the 10,000
  test images, up to 1,000 labels) to fit 35 runs in about an hour on a busy 2-core CPU (a round cost 15-40 s
  there: the convolutions over the test set and the scored pool dominate).
  CoreSet, BADGE and TypiClust read the network's penultimate layer (the 128 features the last ``Linear`` sees:
  :mod:`alkit.active.embeddings`' protocol). Default strategies: random, entropy, BALD, BatchBALD, CoreSet, BADGE
  and TypiClust.

Strategies: ``random``, ``entropy``, ``margin``, ``bald``, ``batch_bald``, and the diversity strategies
(``coreset``, ``badge``, ``typiclust``, the ``bald_coreset`` hybrid) when this alkit has them.

``--cold-start``: instead, does a TypiClust initial set beat a random one? Random acquisition from
``initial_strategy="random"`` and from ``"typiclust"`` (same seeds, same initial weights), 20 -> 40 labels by
default, compared paired over seeds (``cold_start.md``/``.json``). On ``mnist`` both initial sets ignore the
labels (a cold start cannot balance the classes): 20 random images, or the most typical image of each of 20
k-means clusters of the whole training set in the space of its first 50 principal components of the pixels
(:class:`PixelPCA`: label-free, and no pretrained MNIST encoder is at hand; k-means on the 784 raw pixels of 58,900
images took over 5 minutes a seed on the busy CPU).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from alkit._io import write_text_atomic
from alkit.active.comparison import StrategyComparison, compare_strategies
from alkit.active.heuristics import HEURISTIC_NAMES

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from label_efficiency import FreshInitEachRound  # noqa: E402  (this folder's module: Gal et al.'s per-round init)

UNCERTAINTY = ["random", "entropy", "margin", "bald", "batch_bald"]
DIVERSITY = ["coreset", "badge", "typiclust", "bald_coreset"]

#: Per task: the data, the model and the loop settings (every one a flag as well).
TASKS: dict[str, dict[str, Any]] = {
    "digits": {
        "initial_labels": 20,
        "query_size": 10,
        "rounds": 8,
        "label_epochs": 50,
        "mc_iterations": 20,
        "batch_size": 64,
        "learning_rate": 1e-2,
        "dropout": 0.5,
        "weight_decay": 0.0,
        "steps_per_batch": 1,
        "pool_size": 300,
    },
    "hymenoptera": {
        "initial_labels": 10,
        "query_size": 10,
        "rounds": 6,
        "label_epochs": 20,
        "steps_per_batch": 5,
        "mc_iterations": 20,
        "batch_size": 64,
        "learning_rate": 3e-3,
        "dropout": 0.5,
        "weight_decay": 1e-2,
        "pool_size": 0,
    },
    "mnist": {
        "initial_labels": 20,
        "query_size": 10,
        "rounds": 5,
        "label_epochs": 30,
        "mc_iterations": 20,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "weight_decay_c": 3.5,
        "pool_size": 500,
        "test_size": 500,
        "val_size": 100,
        "batch_bald_draws": 50,
    },
}

#: Per task, the strategies run when ``--strategies`` is not given (default: :func:`default_strategies`).
TASK_STRATEGIES = {"mnist": ["random", "entropy", "bald", "batch_bald", "coreset", "badge", "typiclust"]}

#: Per task, what ``--quick`` changes besides :data:`QUICK` (a smaller test set and pool to stay at seconds).
QUICK_TASK = {
    "mnist": {"test_size": 200, "pool_size": 60, "batch_size": 32, "strategies": "random,bald,badge,typiclust"}
}

#: ``--quick``: a smoke test in seconds (2 seeds, 2 rounds, few epochs), not a measurement.
QUICK = {"seeds": 2, "rounds": 2, "label_epochs": 3, "mc_iterations": 4, "strategies": "random,entropy,bald"}


def default_strategies() -> list[str]:
    """The uncertainty heuristics, then whichever diversity strategies :mod:`alkit.active.heuristics` accepts."""
    return UNCERTAINTY + [name for name in DIVERSITY if name in HEURISTIC_NAMES]


def _flag_defaults() -> dict[str, list[str]]:
    """Every task setting and its default per task (one flag each; a flag a task does not use is refused)."""
    flags: dict[str, list[str]] = {}
    for task, settings in TASKS.items():
        for name, value in settings.items():
            flags.setdefault(name, []).append(f"{task}: {value}")
    return flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--task", "--dataset", dest="task", choices=sorted(TASKS), default="digits")
    parser.add_argument("--strategies", default=None, help="comma-separated names (default: every one available)")
    parser.add_argument("--baseline", default=None, help="strategy every other is compared with besides random")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (5 or more for a useful paired test)")
    for name, defaults in _flag_defaults().items():
        kind = next(type(settings[name]) for settings in TASKS.values() if name in settings)
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help="; ".join(defaults))
    parser.add_argument(
        "--train-size",
        type=int,
        default=None,
        help="mnist: keep a class-stratified random subset of this many training images per seed [all 59,900]",
    )
    parser.add_argument(
        "--data", type=Path, default=None, help="mnist: folder of the four MNIST .gz files [../shared/data/MNIST/raw]"
    )
    parser.add_argument("--out", type=Path, default=Path("results/strategy_comparison"))
    parser.add_argument("--quick", action="store_true", help="a smoke test in seconds: " + str(QUICK))
    parser.add_argument(
        "--cold-start",
        action="store_true",
        help="compare a TypiClust initial set with a random one (random acquisition after it); default budget "
        "20 -> 40 labels (--initial-labels 20 --rounds 3 --query-size 10)",
    )
    return parser


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The task's settings with the flags given on top (and ``--quick``'s when asked)."""
    settings = dict(TASKS[args.task])
    if args.quick:
        quick = {**QUICK, **QUICK_TASK.get(args.task, {})}
        settings.update({k: v for k, v in quick.items() if k in settings})
    for name in _flag_defaults():
        value = getattr(args, name)
        if value is None:
            continue
        if name not in settings:
            used = ", ".join(task for task, values in TASKS.items() if name in values)
            raise SystemExit(
                f"--{name.replace('_', '-')} {value} does not apply to --task {args.task}; accepted with: {used}"
            )
        settings[name] = value
    if args.train_size is not None:
        if args.task != "mnist":
            raise SystemExit(
                f"--train-size {args.train_size} does not apply to --task {args.task}; accepted with: mnist"
            )
        settings["train_size"] = args.train_size
    return settings


def check_args(args: argparse.Namespace) -> tuple[list[str], list[int], dict[str, Any]]:
    """The strategies, seeds and settings, each checked before anything loads (errors name flag and accepted)."""
    quick = {**QUICK, **QUICK_TASK.get(args.task, {})}
    default = ",".join(TASK_STRATEGIES.get(args.task) or default_strategies())
    strategies = args.strategies or (quick["strategies"] if args.quick else default)
    names = [name.strip() for name in strategies.split(",") if name.strip()]
    unknown = [name for name in names if name not in HEURISTIC_NAMES]
    if not names or unknown:
        raise SystemExit(f"--strategies {strategies!r}: unknown {unknown}; accepted: {', '.join(HEURISTIC_NAMES)}")
    seeds = QUICK["seeds"] if args.quick and args.seeds == 5 else args.seeds
    if seeds < 1:
        raise SystemExit(f"--seeds {seeds} is invalid; accepted: an integer >= 1")
    if args.baseline is not None and args.baseline not in names:
        raise SystemExit(f"--baseline {args.baseline!r} is not among --strategies; accepted: {names}")
    settings = settings_of(args)
    for name in (
        "initial_labels",
        "query_size",
        "label_epochs",
        "mc_iterations",
        "batch_size",
        "steps_per_batch",
        "test_size",
        "val_size",
    ):
        if name in settings and settings[name] < 1:
            raise SystemExit(f"--{name.replace('_', '-')} {settings[name]} is invalid; accepted: an integer >= 1")
    if settings["pool_size"] < 0:
        raise SystemExit(
            f"--pool-size {settings['pool_size']} is invalid; accepted: an integer >= 0 (0: the whole pool)"
        )
    if settings["rounds"] < 2:
        raise SystemExit(f"--rounds {settings['rounds']} is invalid; accepted: an integer >= 2")
    if args.task == "mnist":
        if not args.cold_start and settings["initial_labels"] % 10:
            raise SystemExit(
                f"--initial-labels {settings['initial_labels']} is invalid for mnist; accepted: a multiple of 10 "
                "(the initial set is balanced over the 10 classes)"
            )
        if "train_size" in settings and not 1000 <= settings["train_size"] <= 59_000:
            raise SystemExit(f"--train-size {settings['train_size']} is invalid; accepted: 1000..59000")
        for name, low, high in (("test_size", 10, 10_000), ("val_size", 10, 10_000)):
            if not low <= settings[name] <= high:
                flag = name.replace("_", "-")
                raise SystemExit(f"--{flag} {settings[name]} is invalid; accepted: {low}..{high}")
        if settings["pool_size"] and settings["pool_size"] < settings["query_size"]:
            raise SystemExit(
                f"--pool-size {settings['pool_size']} is invalid; accepted: 0 (the whole pool) or >= --query-size "
                f"({settings['query_size']})"
            )
    return names, list(range(seeds)), settings


# ------------------------------------------------------------------------------------------------------ tasks
def digits_task(settings: dict[str, Any]) -> tuple[Any, Any]:
    """Digits (test set: a stratified fifth) and a dropout MLP."""
    from alkit.demos.digits import DigitsDataModule, DigitsMLP

    data = DigitsDataModule(test_fraction=0.2, batch_size=settings["batch_size"], seed=0)
    data.setup("fit")

    def make_model() -> Any:
        return DigitsMLP(hidden=64, dropout=settings["dropout"], learning_rate=settings["learning_rate"])

    return data, make_model


def hymenoptera_task(settings: dict[str, Any], out: Path, quick: bool) -> tuple[Any, Any]:
    """The demo's frozen-MobileNetV2 features (cached in ``out``) and its ``Dropout + Linear`` head."""
    from alkit.demos._common import find_shared, resolve_weights
    from alkit.demos._features import FeatureData, HeadClassifier, backbone_features

    image_size = 64 if quick else 160
    cache = out / f"features_mobilenet_v2_{image_size}px.pt"
    if cache.is_file():
        stored = torch.load(cache, map_location="cpu", weights_only=True)  # tensors and strings: nothing executes
    else:
        from alkit.vision import ImageClassificationData, ImageClassifier

        data_dir = find_shared("hymenoptera_data")
        if data_dir is None:
            raise SystemExit("--task hymenoptera needs ../shared/data/hymenoptera_data beside the repository")
        pretrained, _, warning = resolve_weights("mobilenet_v2", "auto")
        if warning:
            raise SystemExit(f"--task hymenoptera needs the shared MobileNetV2 weights: {warning}")
        images = ImageClassificationData.from_folders(
            train_folder=data_dir / "train", test_folder=data_dir / "val", image_size=image_size
        )
        backbone = ImageClassifier("mobilenet_v2", num_classes=2, pretrained=pretrained).backbone
        train = backbone_features(backbone, images.train_dataset_for_inference())
        test = backbone_features(backbone, images.test_dataset)
        stored = {"train": list(train), "test": list(test), "classes": images.classes}
        temporary = cache.with_name(f".{cache.name}.tmp")
        torch.save(stored, temporary)
        temporary.replace(cache)
    data = FeatureData(tuple(stored["train"]), tuple(stored["test"]), stored["classes"], settings["batch_size"])
    num_features = stored["train"][0].shape[1]

    def make_model() -> Any:
        return HeadClassifier(
            num_features,
            2,
            settings["dropout"],
            settings["learning_rate"],
            settings["weight_decay"],
            settings["steps_per_batch"],
        )

    return data, make_model


class FreshInitFromDataSeed(FreshInitEachRound):
    """Every round of a run starts from a fresh initialisation drawn from (seed, round), the seed the datamodule's.

    ``label_efficiency.py``'s callback (Gal et al.'s code built a new model every round), with the seed read from
    the run's datamodule: :func:`compare_strategies` builds every run's trainer from the same arguments, so one
    callback serves every seed, and a round's weights are the same for every strategy of the seed.
    """

    def __init__(self) -> None:
        super().__init__(seed=-1)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.seed = int(trainer.datamodule.seed)
        super().on_train_start(trainer, pl_module)


class PixelPCA(torch.nn.Module):
    """A label-free embedding for the TypiClust cold start: the images' first principal components of the pixels.

    Fitted (covariance and its eigenvectors, in float64) on a random ``sample`` of the training images drawn with
    ``seed``; it exposes ``embed(x)`` (:mod:`alkit.active.embeddings`' protocol). k-means then works on
    ``components`` numbers per image instead of 784, which is what makes clustering the whole training set affordable.
    """

    def __init__(self, images: torch.Tensor, components: int = 50, seed: int = 0, sample: int = 10_000) -> None:
        import numpy as np

        super().__init__()
        flat = images.reshape(images.shape[0], -1)
        if not 1 <= components <= flat.shape[1]:
            raise ValueError(f"`components={components}` is invalid; accepted: 1..{flat.shape[1]}")
        rows = np.random.default_rng(seed).choice(flat.shape[0], size=min(sample, flat.shape[0]), replace=False)
        chosen = flat[torch.from_numpy(np.sort(rows))].double()
        mean = chosen.mean(0)
        centred = chosen - mean
        _, vectors = torch.linalg.eigh(centred.T @ centred / max(chosen.shape[0] - 1, 1))
        self.register_buffer("mean", mean.float())
        self.register_buffer("components", vectors[:, -components:].flip(1).float().contiguous())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(x.shape[0], -1) - self.mean) @ self.components

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)


def mnist_task(
    settings: dict[str, Any], data_dir: Path | None, cold_start: bool
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Gal et al.'s MNIST setting: per-seed data, the CNN, per-seed datamodule arguments and the trainer's.

    Returns ``(data, make_model, datamodule_kwargs, trainer_kwargs)``: ``data(seed)`` draws the seed's validation
    set (the test subset is fixed); ``datamodule_kwargs(seed)`` draws the seed's class-balanced initial labels
    (``initial_labels / 10`` per class) unless ``cold_start``, where the datamodule draws them itself (TypiClust
    on :class:`PixelPCA`'s embedding).
    """
    import numpy as np
    from _gal_model import GalCNN
    from _mnist import MNISTActiveData, balanced_mask, check_mnist_dir, default_mnist_dir

    raw = data_dir if data_dir is not None else default_mnist_dir()
    try:
        check_mnist_dir(raw)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"--task mnist: {error}") from None
    loaded: dict[int, Any] = {}

    def data(seed: int) -> Any:
        if seed not in loaded:
            loaded.clear()  # one seed's data in memory at a time
            loaded[seed] = MNISTActiveData(
                raw, val_size=settings["val_size"], test_size=settings["test_size"],
                batch_size=settings["batch_size"], seed=seed, train_size=settings.get("train_size"),
            )  # fmt: skip
        return loaded[seed]

    def make_model() -> Any:
        return GalCNN(lr=settings["learning_rate"], weight_decay_c=settings["weight_decay_c"])

    common = {"pool_size": settings["pool_size"] or None, "pool_batch_size": 500}

    def datamodule_kwargs(seed: int) -> dict[str, Any]:
        if cold_start:
            return {**common, "initial_embedding_model": PixelPCA(data(seed).train_images, 50, seed)}
        per_class = settings["initial_labels"] // 10
        mask = balanced_mask(np.asarray(data(seed).train_dataset.targets), per_class, np.random.default_rng(seed))
        return {**common, "map_dataset_to_labelled": lambda dataset: mask}

    trainer_kwargs = {
        "accelerator": "cpu",
        "devices": 1,
        "num_sanity_val_steps": 0,
        "limit_val_batches": 0,  # nothing selects on it (label_efficiency's default keeps the last epoch too)
        "callbacks": [FreshInitFromDataSeed()],
    }
    return data, make_model, datamodule_kwargs, trainer_kwargs


# ------------------------------------------------------------------------------------------------------ outputs
def per_round_table(comparison: StrategyComparison) -> str:
    """Markdown: mean ± standard deviation across seeds of the metric per round, one column per strategy."""
    labels = comparison.curve(comparison.strategies[0])[0]
    lines = ["| labels | " + " | ".join(comparison.strategies) + " |", "|---" * (1 + len(comparison.strategies)) + "|"]
    columns = [(comparison.curve(name)[1], comparison.round_std(name)) for name in comparison.strategies]
    for i, n in enumerate(labels):
        cells = [f"{mean[i]:.3f} ± {std[i]:.3f}" for mean, std in columns]
        lines.append(f"| {int(n)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cold_start(
    data: Any,
    make_model: Any,
    seeds: list[int],
    settings: dict[str, Any],
    out: Path,
    task: str,
    datamodule_kwargs: Any = None,
    trainer_kwargs: dict[str, Any] | None = None,
) -> StrategyComparison:
    """Random acquisition from a random and from a TypiClust initial set, paired over seeds."""
    import dataclasses

    runs = []
    for initial in ("random", "typiclust"):

        def seed_kwargs(seed: int, initial: str = initial) -> dict[str, Any]:
            given = datamodule_kwargs(seed) if callable(datamodule_kwargs) else {}
            return {"pool_size": settings["pool_size"] or None, **given, "initial_strategy": initial}

        comparison = compare_strategies(
            data,
            make_model,
            ["random"],
            seeds,
            rounds=settings["rounds"],
            initial_num_labels=settings["initial_labels"],
            query_size=settings["query_size"],
            label_epochs=settings["label_epochs"],
            mc_iterations=settings["mc_iterations"],
            datamodule_kwargs=seed_kwargs,
            trainer_kwargs=trainer_kwargs,
            run_dir=out / f"runs_cold_start_{initial}",
            settings={"task": task, **settings, "initial_strategy": initial},
        )
        runs += [dataclasses.replace(run, strategy=f"{initial} start") for run in comparison.runs]
    return StrategyComparison(runs, baseline="random start")


def main(argv: list[str] | None = None) -> StrategyComparison:
    args = build_parser().parse_args(argv)
    if args.cold_start:
        for name, value in (("initial_labels", 20), ("rounds", 3), ("query_size", 10)):
            if getattr(args, name) is None:
                setattr(args, name, 2 * value // 5 if args.quick and name == "initial_labels" else value)
    strategies, seeds, settings = check_args(args)
    if settings.get("batch_bald_draws") is not None and settings["batch_bald_draws"] < 1:
        raise SystemExit(f"--batch-bald-draws {settings['batch_bald_draws']} is invalid; accepted: an integer >= 1")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    for pattern in (
        ".*does not have many workers.*",
        ".*LeafSpec.*",
        ".*no `validation_step`.*",
        ".*across ranks is zero.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)
    args.out.mkdir(parents=True, exist_ok=True)
    datamodule_kwargs: Any = {"pool_size": settings["pool_size"] or None}
    trainer_kwargs: dict[str, Any] | None = None
    initial_num_labels = settings["initial_labels"]
    if args.task == "digits":
        data, make_model = digits_task(settings)
    elif args.task == "mnist":
        data, make_model, datamodule_kwargs, trainer_kwargs = mnist_task(settings, args.data, args.cold_start)
        initial_num_labels = 0  # the balanced initial set comes with datamodule_kwargs(seed)
        if args.cold_start:
            settings["initial_embedding"] = "pixel_pca50"
    else:
        data, make_model = hymenoptera_task(settings, args.out, args.quick)
    if args.cold_start:
        print(f"{args.task}: cold start, TypiClust vs random initial set, seeds {seeds}; {settings}", flush=True)
        comparison = cold_start(
            data, make_model, seeds, settings, args.out, args.task, datamodule_kwargs, trainer_kwargs
        )
        rounds_table = per_round_table(comparison)
        summary = comparison.summary_line("typiclust start")
        text = f"# Cold start: {args.task}\n\n{rounds_table}\n\n```\n{comparison.table()}\n```\n\n{summary}\n"
        write_text_atomic(args.out / "cold_start.md", text)
        comparison.save_json(args.out / "cold_start.json")
        print(f"\n{rounds_table}\n\n{comparison.table()}\n{summary}")
        return comparison
    print(f"{args.task}: {', '.join(strategies)} on seeds {seeds}; settings {settings}", flush=True)

    def report(run: Any, *_: Any) -> None:
        curve = " ".join(f"{v:.3f}" for v in run.values)
        print(f"  {run.strategy:>12} seed {run.seed}: {curve}  AULC {run.aulc:.4f} ({run.seconds:.1f} s)", flush=True)

    start = time.perf_counter()
    chosen: list[Any] = list(strategies)
    if "batch_bald_draws" in settings:
        from baal.active.heuristics import BatchBALD

        batch_bald = BatchBALD(settings["query_size"], num_draw=settings["batch_bald_draws"])
        chosen = [("batch_bald", batch_bald) if name == "batch_bald" else name for name in strategies]
    comparison = compare_strategies(
        data,
        make_model,
        chosen,
        seeds,
        rounds=settings["rounds"],
        initial_num_labels=initial_num_labels,
        query_size=settings["query_size"],
        label_epochs=settings["label_epochs"],
        mc_iterations=settings["mc_iterations"],
        baseline=args.baseline,
        datamodule_kwargs=datamodule_kwargs,
        trainer_kwargs=trainer_kwargs,
        run_dir=args.out / "runs",
        settings={"task": args.task, **settings, "quick": args.quick},
        on_run=report,
    )
    rounds_table = per_round_table(comparison)
    text = (
        f"# Strategy comparison: {args.task}\n\nSettings: {settings}; seeds {seeds}.\n\n"
        f"Test accuracy per round (mean ± std across seeds):\n\n{rounds_table}\n\n"
        f"AULC (normalised area under the test-accuracy curve):\n\n```\n{comparison.table()}\n```\n"
    )
    write_text_atomic(args.out / "table.md", text)
    comparison.save_json(args.out / "comparison.json")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5))
    comparison.plot(ax=figure.subplots())
    figure.tight_layout()
    figure.savefig(args.out / "label_efficiency.png", dpi=100)
    print()
    print(rounds_table)
    print()
    print(comparison.table())
    print(f"\n{time.perf_counter() - start:.0f} s; table.md, comparison.json, label_efficiency.png in {args.out}")
    return comparison


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1:])
