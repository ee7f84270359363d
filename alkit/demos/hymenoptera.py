"""``alkit demo hymenoptera``: Lightning Flash's ants-vs-bees active-learning demo, on alkit, done right.

Flash's demo, with alkit imports (the code this command runs, with flags for the numbers)::

    datamodule = ActiveLearningDataModule(
        ImageClassificationData.from_folders(train_folder="data/hymenoptera_data/train/", batch_size=2),
        initial_num_labels=5,
        val_split=0.1,
    )
    head = torch.nn.Sequential(torch.nn.Dropout(p=0.1), torch.nn.Linear(512, datamodule.num_classes))
    model = ImageClassifier(backbone="resnet18", head=head, num_classes=datamodule.num_classes)
    trainer = alkit.Trainer(max_epochs=3)                       # max_epochs = labelling rounds
    active_learning_loop = ActiveLearningLoop(label_epoch_frequency=1)
    active_learning_loop.connect(trainer.fit_loop)
    trainer.fit_loop = active_learning_loop
    trainer.finetune(model, datamodule=datamodule, strategy="freeze")
    predictions = model.predict("data/hymenoptera_data/val/bees/65038344_52a45d090d.jpg")
    trainer.save_checkpoint("image_classification_model.pt")

What the command does better than Flash's run (``shared/ANCHORS.md``): the dataset's ``val/`` folder (153 images)
is the test set, so every round reports test accuracy on data no round ever labels; the backbone is ImageNet-pretrained
(the shared MobileNetV2 weights; a random ResNet-18, which is all Flash could get offline, learns next to nothing);
MC dropout really samples, so BALD ranks the pool; the final model is the one trained on the final labelled set.

Output folder: ``active_learning_history.csv``/``.json`` (one row per round), ``label_efficiency.png``,
``final_model.ckpt``, ``summary.txt``; the folder is printed at the end.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alkit.demos._common import (
    DemoError,
    find_shared,
    format_table,
    new_output_dir,
    quiet_lightning,
    resolve_weights,
    write_text_atomic,
)

__all__ = ["DESCRIPTION", "add_arguments", "default_data_dir", "main", "run"]

DESCRIPTION = (
    "Active learning on the hymenoptera ants-vs-bees images (Lightning Flash's demo, on alkit): each round trains the "
    "head of a frozen pretrained backbone on the labelled images, tests it on the dataset's val/ folder, scores the "
    "unlabelled pool with MC dropout and a BaaL heuristic, and labels the most informative images. Prints one line "
    "per round and a summary table; saves the history (CSV/JSON), the label-efficiency plot and the final model."
)

#: Settings of ``--quick``: a smoke test that finishes in seconds (tests, CI), not a meaningful experiment.
QUICK = {
    "image_size": 64,
    "rounds": 2,
    "query_size": 4,
    "initial_labels": 8,
    "label_epochs": 1,
    "mc_iterations": 4,
    "batch_size": 16,
    "pool_size": 24,
    "test_size": 32,
}


def default_data_dir() -> Path:
    """``shared/data/hymenoptera_data`` beside the repository when present, else ``data/hymenoptera_data``."""
    return find_shared("hymenoptera_data") or Path("data") / "hymenoptera_data"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The demo's flags (shared by ``alkit demo hymenoptera`` and ``python -m alkit.demos.hymenoptera``)."""
    from alkit.active.heuristics import HEURISTIC_NAMES

    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="hymenoptera_data folder with train/ and val/ (default: ../shared/data/hymenoptera_data beside the "
        "repository if present, else data/hymenoptera_data)",
    )
    parser.add_argument("--backbone", default="mobilenet_v2", help="torchvision backbone")
    parser.add_argument(
        "--weights",
        default="auto",
        help="'auto' (the shared ImageNet MobileNetV2 weights when present), 'imagenet' (torchvision download), "
        "'none' (random) or a PATH to a state dict",
    )
    parser.add_argument("--image-size", type=int, default=160, help="image side in pixels")
    parser.add_argument("--rounds", type=int, default=6, help="labelling rounds (the trainer's max_epochs)")
    parser.add_argument("--query-size", type=int, default=10, help="images labelled per round")
    parser.add_argument("--initial-labels", type=int, default=10, help="images labelled at random before round 1")
    parser.add_argument(
        "--val-split",
        type=float,
        default=0.2,
        help="share of the initial labels held out (once, for good) as the validation set",
    )
    parser.add_argument("--heuristic", default="bald", choices=HEURISTIC_NAMES, help="acquisition heuristic (BaaL)")
    parser.add_argument("--mc-iterations", type=int, default=20, help="MC-dropout passes when scoring the pool")
    parser.add_argument("--label-epochs", type=int, default=10, help="training epochs per round")
    parser.add_argument("--dropout", type=float, default=0.5, help="dropout probability of the head")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="learning rate of the head (Adam)")
    parser.add_argument("--batch-size", type=int, default=16, help="training batch size")
    parser.add_argument("--seed", type=int, default=0, help="seeds the initial labels, splits and training")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="DIR",
        help="output folder (default: alkit_runs/hymenoptera/<timestamp>)",
    )
    parser.add_argument("--overwrite", action="store_true", help="allow an --output folder that already holds files")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny settings for a smoke test in seconds: "
        + ", ".join(f"{k.replace('_', '-')}={v}" for k, v in QUICK.items()),
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m alkit.demos.hymenoptera",
        description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    return add_arguments(parser)


# -------------------------------------------------------------------------------------------------- checks
def check_args(args: argparse.Namespace) -> argparse.Namespace:
    """Apply ``--quick`` and check every flag before anything loads; errors name the flag, value and what is accepted.

    Sets ``args.train_dir``, ``args.test_dir``, ``args.pretrained`` (for ``ImageClassifier``), ``args.pool_size``
    and ``args.test_size`` (``None``: whole pool / whole test set).
    """
    args.pool_size = args.test_size = None
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    for flag, value, minimum in (
        ("--image-size", args.image_size, 32),
        ("--rounds", args.rounds, 1),
        ("--query-size", args.query_size, 1),
        ("--initial-labels", args.initial_labels, 2),
        ("--mc-iterations", args.mc_iterations, 1),
        ("--label-epochs", args.label_epochs, 1),
        ("--batch-size", args.batch_size, 1),
    ):
        if value < minimum:
            raise DemoError(f"{flag} {value} is invalid; accepted: an integer >= {minimum}")
    if not 0 <= args.val_split < 1:
        raise DemoError(f"--val-split {args.val_split} is invalid; accepted: a number in [0, 1)")
    if not 0 <= args.dropout < 1:
        raise DemoError(f"--dropout {args.dropout} is invalid; accepted: a number in [0, 1)")
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise DemoError(f"--learning-rate {args.learning_rate} is invalid; accepted: a positive number")
    from alkit.active.heuristics import requires_mc_samples, resolve_heuristic

    if args.mc_iterations < 2 and requires_mc_samples(resolve_heuristic(args.heuristic)):
        raise DemoError(
            f"--mc-iterations {args.mc_iterations} is invalid with --heuristic {args.heuristic}: it compares "
            "Monte-Carlo dropout samples; accepted: an integer >= 2"
        )
    from alkit.vision import available_backbones

    if args.backbone not in available_backbones():
        raise DemoError(f"--backbone {args.backbone!r} is unknown; accepted: {available_backbones()}")

    data_dir = args.data_dir if args.data_dir is not None else default_data_dir()
    train_dir, test_dir = data_dir / "train", data_dir / "val"
    if not train_dir.is_dir():
        raise DemoError(
            f"--data-dir {str(data_dir)!r} has no train/ folder: the hymenoptera images are missing. Get them with\n"
            "    python data_scripts/download_hymenoptera.py            (downloads into data/hymenoptera_data)\n"
            "or  python data_scripts/download_hymenoptera.py --from hymenoptera_data.zip   (a copy you already have)\n"
            "or pass --data-dir to a folder holding train/<class>/ and val/<class>/ images."
        )
    args.data_dir, args.train_dir = data_dir, train_dir
    args.test_dir = test_dir if test_dir.is_dir() else None
    args.pretrained, args.weights_description, args.weights_warning = resolve_weights(args.backbone, args.weights)
    return args


# -------------------------------------------------------------------------------------------------- the run
def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the demo as ``args`` say; print progress and the summary; return what was measured.

    Returns:
        ``{"history": ActiveLearningHistory, "output_dir": Path, "seconds": float, "prediction": (path, label),
        "files": {name: Path}, "model": ImageClassifier, "datamodule": ActiveLearningDataModule}``.
    """
    check_args(args)
    raise DemoError("the hymenoptera demo needs alkit.active.ActiveLearningLoop, which is not available yet")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m alkit.demos.hymenoptera [flags]``; returns the exit status (2 for a bad flag or missing data)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run(args)
    except DemoError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
