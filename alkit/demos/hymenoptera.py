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

What the command does better than Flash's hymenoptera demo: the dataset's ``val/`` folder (153 images)
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alkit._io import save_checkpoint_atomic
from alkit.demos._common import (
    DemoError,
    check_minimums,
    find_shared,
    format_table,
    image_classifier,
    image_folders,
    new_output_dir,
    one_line,
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
}


def default_data_dir() -> Path:
    """``shared/data/hymenoptera_data`` beside the repository when present, else ``data/hymenoptera_data``."""
    return find_shared("hymenoptera_data") or Path("data") / "hymenoptera_data"


class _ExplicitStore(argparse._StoreAction):
    """``store`` that also records the flag as given on the command line, so ``--quick`` leaves it alone."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        super().__call__(parser, namespace, values, option_string)
        explicit = set(getattr(namespace, "_explicit", ()))
        explicit.add(self.dest)
        namespace._explicit = explicit


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The demo's flags (shared by ``alkit demo hymenoptera`` and ``python -m alkit.demos.hymenoptera``)."""
    from alkit.active.heuristics import HEURISTIC_NAMES

    parser.register("action", None, _ExplicitStore)  # every plain flag below records that it was given
    parser.register("action", "store", _ExplicitStore)

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
        default=0.0,
        help="share of the initial labels held out (once, for good) as a validation set; Flash used 0.1. The test "
        "set (val/, 153 images) already measures every round, so by default no label is spent on validation",
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

    Sets ``args.train_dir``, ``args.test_dir``, ``args.pretrained`` (for ``ImageClassifier``) and ``args.pool_size``
    (``None``: the whole pool is scored every round).
    """
    args.pool_size = None
    if args.quick:  # presets for the flags not given: an explicit flag wins, then is checked like any other
        explicit = getattr(args, "_explicit", set())
        for name, value in QUICK.items():
            if name not in explicit:
                setattr(args, name, value)
    check_minimums(
        [
            ("--image-size", args.image_size, 32),
            ("--rounds", args.rounds, 1),
            ("--query-size", args.query_size, 1),
            ("--initial-labels", args.initial_labels, 2),
            ("--mc-iterations", args.mc_iterations, 1),
            ("--label-epochs", args.label_epochs, 1),
            ("--batch-size", args.batch_size, 1),
        ]
    )
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
            f"--data-dir {str(data_dir)!r} has no train/ folder: the hymenoptera images are missing; get them with "
            "`python data_scripts/download_hymenoptera.py` (downloads into data/hymenoptera_data) or "
            "`python data_scripts/download_hymenoptera.py --from hymenoptera_data.zip` (a copy you already have); "
            "accepted: a --data-dir folder holding train/<class>/ (and val/<class>/) images"
        )
    args.data_dir, args.train_dir = data_dir, train_dir
    args.test_dir = test_dir if test_dir.is_dir() else None
    args.pretrained, args.weights_description, args.weights_warning = resolve_weights(args.backbone, args.weights)
    return args


# -------------------------------------------------------------------------------------------------- the run
def _describe_round(trainer: Any, round_index: int) -> str | None:
    history = getattr(trainer.fit_loop, "history", None)
    if history is None or round_index >= len(history):
        return None
    record = history[round_index]
    parts = [f"{record.num_labelled} labelled"]
    parts += [f"{name}={record.metrics[name]:.3f}" for name in ("val_acc", "test_acc") if name in record.metrics]
    parts.append(f"train {record.train_time_s:.1f}s")
    if record.indices_added:
        parts.append(f"scored {record.scoring_time_s:.1f}s, +{len(record.indices_added)} labels")
    return ", ".join(parts)


def summary_table(history: Any) -> str:
    """One row per round: labels trained on, accuracies, time spent training and scoring."""
    metrics = [name for name in ("val_acc", "test_acc") if any(name in r.metrics for r in history)]
    header = ["round", "labelled", *metrics, "added", "train_s", "score_s"]
    rows = [
        [
            r.round + 1,
            r.num_labelled,
            *(r.metrics.get(name) for name in metrics),
            len(r.indices_added),
            f"{r.train_time_s:.1f}",
            f"{r.scoring_time_s:.1f}",
        ]
        for r in history
    ]
    return format_table(header, rows)


def _example_image(test_dir: Path | None, train_dir: Path) -> Path:
    """An image to show ``model.predict`` on: Flash's bee from val/ when present, else the first test image."""
    from alkit.vision.images import list_images

    folder = test_dir or train_dir
    flash_example = folder / "bees" / "65038344_52a45d090d.jpg"
    if flash_example.is_file():
        return flash_example
    return Path(list_images(folder, recursive=True)[0])


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the demo as ``args`` say; print progress and the summary; return what was measured.

    Returns:
        ``{"history": ActiveLearningHistory, "output_dir": Path, "seconds": float, "prediction": (path, label,
        probability), "files": {name: Path}, "model": ImageClassifier, "datamodule": ActiveLearningDataModule,
        "trainer": alkit.Trainer}``.
    """
    check_args(args)
    start = time.perf_counter()
    with quiet_lightning():
        import torch
        from matplotlib.figure import Figure

        import alkit
        from alkit.active import ActiveLearningDataModule, ActiveLearningLoop, plot_label_efficiency
        from alkit.demos._progress import SegmentProgress
        from alkit.lightning import pl
        from alkit.vision.backbones import backbone_spec

        pl.seed_everything(args.seed, verbose=False)
        if args.weights_warning:
            print(f"warning: {args.weights_warning}", file=sys.stderr)
        # every image header checked and the classes counted now (a truncated JPEG/PNG, a single class)
        images = image_folders(
            args, "a folder holding train/<class>/ (and val/<class>/) readable images of 2 or more classes"
        )
        try:
            datamodule = ActiveLearningDataModule(
                images,
                heuristic=args.heuristic,
                initial_num_labels=args.initial_labels,
                query_size=args.query_size,
                val_split=args.val_split or None,
                pool_size=args.pool_size,
                seed=args.seed,
                pool_batch_size=64,  # scoring needs no gradients: bigger batches are faster
            )
        except (ValueError, OSError) as error:  # checked before the output folder exists and anything trains
            raise DemoError(
                f"the settings do not fit the images in {args.train_dir} (--initial-labels {args.initial_labels}, "
                f"--val-split {args.val_split}, --query-size {args.query_size}): {one_line(error)}"
            ) from error
        head = torch.nn.Sequential(
            torch.nn.Dropout(p=args.dropout),
            torch.nn.Linear(backbone_spec(args.backbone).num_features, datamodule.num_classes),
        )
        # the weights are loaded into the backbone before the output folder exists
        model = image_classifier(args, datamodule.num_classes, head=head)
        output = new_output_dir("hymenoptera", args.output, overwrite=args.overwrite)

        print(
            f"alkit demo hymenoptera: {args.rounds} rounds of +{args.query_size} labels ({args.heuristic}, "
            f"{args.mc_iterations} MC-dropout passes) from {args.initial_labels} random ones; "
            f"{len(datamodule.pool_indices)} images in the pool"
            + (f" (scoring {args.pool_size} per round)" if args.pool_size else "")
        )
        print(f"  backbone {args.backbone} ({args.weights_description}), frozen; {args.image_size}px images")
        test_size = len(datamodule.labelled.test_dataset) if datamodule.has_test else 0
        print(f"  test set: {args.test_dir} ({test_size} images)" if test_size else "  no test set (no val/ folder)")
        print(f"  output: {output}")

        progress = SegmentProgress(
            "round",
            args.rounds,
            args.label_epochs,
            segment_of=lambda trainer: getattr(trainer.fit_loop, "current_round", None),
            describe=_describe_round,
        )
        trainer = alkit.Trainer(
            max_epochs=args.rounds,  # Flash's convention: one "epoch" of the trainer is one labelling round
            default_root_dir=output,
            logger=pl.loggers.CSVLogger(output, name="logs", version=""),
            callbacks=[progress],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        active_learning_loop = ActiveLearningLoop(
            label_epoch_frequency=args.label_epochs,
            inference_iteration=args.mc_iterations,
            seed=args.seed,
            export_path=output,
        )
        active_learning_loop.connect(trainer.fit_loop)
        trainer.fit_loop = active_learning_loop
        trainer.finetune(model, datamodule=datamodule, strategy="freeze")

        history = active_learning_loop.history
        example = _example_image(args.test_dir, args.train_dir)
        label, probabilities = model.predict(example, return_probabilities=True)
        files = {"checkpoint": save_checkpoint_atomic(trainer, output / "final_model.ckpt")}
        files["history_csv"], files["history_json"] = history.save(output, "active_learning_history")
        metric = "test_acc" if any("test_acc" in r.metrics for r in history) else "val_acc"
        figure = Figure(figsize=(6, 4))
        plot_label_efficiency({args.heuristic: history}, metric=metric, ax=figure.subplots())
        figure.tight_layout()
        figure.savefig(output / "label_efficiency.png", dpi=100)
        files["plot"] = output / "label_efficiency.png"
        table = summary_table(history)
        files["summary"] = write_text_atomic(output / "summary.txt", table + "\n")
    seconds = time.perf_counter() - start
    probability = float(probabilities.max())
    print()
    print(table)
    print(f"model.predict({example.name!r}) -> {label!r} (p={probability:.2f})")
    print(f"done in {seconds:.0f} s; history (CSV/JSON), label_efficiency.png, final_model.ckpt, summary.txt in:")
    print(f"  {output}")
    return {
        "history": history,
        "output_dir": output,
        "seconds": seconds,
        "prediction": (example, label, probability),
        "files": files,
        "model": model,
        "datamodule": datamodule,
        "trainer": trainer,
    }


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
