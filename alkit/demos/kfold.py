"""``alkit kfold``: k-fold cross-validation with :func:`alkit.kfold_fit` on the digits or a folder of images.

::

    alkit kfold --digits --k 5 --stratify                 # scikit-learn's digits, a small MLP (seconds on a CPU)
    alkit kfold --data-dir path/to/images --k 5           # <class>/<image> folders, a pretrained backbone + head
    python -m alkit.demos.kfold --digits                  # the same without the console script

Every fold trains from the same initial weights with a fresh optimizer; the command prints one line per fold as it
finishes, then the per-fold table with mean ± std and the ensemble, and saves into the output folder: the fold
checkpoints (``fold_<i>.ckpt``), ``kfold_result.json``, ``kfold_summary.csv`` and the fold plot ``kfold_folds.png``.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alkit.demos._common import (
    DemoError,
    check_minimums,
    image_classifier,
    image_folders,
    new_output_dir,
    quiet_lightning,
    resolve_weights,
    write_text_atomic,
)

__all__ = ["add_arguments", "main", "run"]

_DIGITS_DEFAULTS = {"max_epochs": 10, "batch_size": 64}
_IMAGE_DEFAULTS = {"max_epochs": 3, "batch_size": 16}


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``alkit kfold`` flags (shared by ``python -m alkit.demos.kfold``)."""
    source = parser.add_argument_group("data (one of)")
    choice = source.add_mutually_exclusive_group(required=True)
    choice.add_argument("--digits", action="store_true", help="scikit-learn's handwritten digits with a small MLP")
    choice.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="class-per-folder images (DIR/<class>/<image>); a DIR holding train/ (and val/ or test/) uses those",
    )
    source.add_argument("--test-dir", type=Path, metavar="DIR", help="images to test every fold and the ensemble on")

    folds = parser.add_argument_group("cross-validation")
    folds.add_argument("--k", type=int, default=5, help="number of folds (default: 5)")
    folds.add_argument("--stratify", action="store_true", help="keep class ratios in every fold (StratifiedKFold)")
    folds.add_argument("--max-epochs", type=int, help="epochs per fold (default: 10 digits, 3 images)")
    folds.add_argument("--batch-size", type=int, help="batch size (default: 64 digits, 16 images)")
    folds.add_argument("--no-ensemble", action="store_true", help="skip testing the ensemble of the fold models")
    folds.add_argument("--seed", type=int, default=0, help="seeds the folds and training (default: 0)")

    model = parser.add_argument_group("model")
    model.add_argument("--max-samples", type=int, help="digits: use a stratified subset of this many samples")
    model.add_argument("--hidden", type=int, default=64, help="digits: hidden units of the MLP (default: 64)")
    model.add_argument(
        "--backbone", default="mobilenet_v2", help="images: torchvision backbone (default: mobilenet_v2)"
    )
    model.add_argument(
        "--weights",
        default="auto",
        help="images: 'auto' (shared ImageNet MobileNetV2 weights when present), 'imagenet', 'none' or a PATH",
    )
    model.add_argument("--image-size", type=int, default=160, help="images: side in pixels (default: 160)")
    model.add_argument("--learning-rate", type=float, help="learning rate (default: 1e-2 digits, 1e-3 images)")

    out = parser.add_argument_group("output")
    out.add_argument("--output", type=Path, metavar="DIR", help="output folder (default: alkit_runs/kfold/<time>)")
    out.add_argument("--overwrite", action="store_true", help="allow an --output folder that already holds files")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m alkit.demos.kfold",
        description="k-fold cross-validation with alkit.kfold_fit: per-fold metrics, mean ± std, the ensemble.",
    )
    return add_arguments(parser)


# -------------------------------------------------------------------------------------------------- checks
def _check_args(args: argparse.Namespace) -> None:
    """Every flag checked before anything loads or trains; errors name the flag, the value and what is accepted."""
    image_mode = args.data_dir is not None
    defaults = _IMAGE_DEFAULTS if image_mode else _DIGITS_DEFAULTS
    args.max_epochs = defaults["max_epochs"] if args.max_epochs is None else args.max_epochs
    args.batch_size = defaults["batch_size"] if args.batch_size is None else args.batch_size
    if args.learning_rate is None:
        args.learning_rate = 1e-3 if image_mode else 1e-2
    check_minimums(
        [
            ("--k", args.k, 2),
            ("--max-epochs", args.max_epochs, 1),
            ("--batch-size", args.batch_size, 1),
            ("--hidden", args.hidden, 1),
            ("--image-size", args.image_size, 32),
        ]
    )
    if args.max_samples is not None:
        if image_mode:
            raise DemoError("--max-samples applies to --digits only")
        if not 50 <= args.max_samples <= 1797:
            raise DemoError(f"--max-samples {args.max_samples} is invalid; accepted: an integer in [50, 1797]")
        if args.max_samples * 0.8 / args.k < 10:
            raise DemoError(
                f"--max-samples {args.max_samples} leaves fewer than 10 samples per fold with --k {args.k}; "
                f"accepted: at least {math.ceil(10 * args.k / 0.8)}"
            )
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise DemoError(f"--learning-rate {args.learning_rate} is invalid; accepted: a positive number")
    if args.test_dir is not None and not image_mode:
        raise DemoError("--test-dir applies to --data-dir only (the digits keep 20% aside as their test set)")
    if image_mode:
        from alkit.vision import available_backbones

        if args.backbone not in available_backbones():
            raise DemoError(f"--backbone {args.backbone!r} is unknown; accepted: {available_backbones()}")
        args.train_dir, args.test_dir = _image_folders(args.data_dir, args.test_dir)
        args.pretrained, args.weights_description, args.weights_warning = resolve_weights(args.backbone, args.weights)


def _image_folders(data_dir: Path, test_dir: Path | None) -> tuple[Path, Path | None]:
    """``DIR`` as the training images, or ``DIR/train`` with ``DIR/val`` / ``DIR/test`` as the test set."""
    if not data_dir.is_dir():
        raise DemoError(f"--data-dir {str(data_dir)!r} is not a folder; accepted: a folder of <class>/<image> folders")
    if test_dir is not None and not test_dir.is_dir():
        raise DemoError(f"--test-dir {str(test_dir)!r} is not a folder; accepted: a folder of <class>/<image> folders")
    if (data_dir / "train").is_dir():  # a dataset root such as hymenoptera_data/{train,val}
        if test_dir is None:
            test_dir = next((data_dir / name for name in ("test", "val") if (data_dir / name).is_dir()), None)
        return data_dir / "train", test_dir
    return data_dir, test_dir


# -------------------------------------------------------------------------------------------------- the run
def _digits_problem(args: argparse.Namespace) -> tuple[Any, Any, list]:
    from alkit.demos.digits import DigitsDataModule, DigitsMLP

    data = DigitsDataModule(batch_size=args.batch_size, max_samples=args.max_samples, seed=args.seed)
    model = DigitsMLP(hidden=args.hidden, learning_rate=args.learning_rate)
    return model, data, []


def _image_problem(args: argparse.Namespace) -> tuple[Any, Any, list]:

    from alkit.finetuning import make_finetuning_callback

    # Held-out folds are served with the deterministic evaluation transforms: KFoldDataModule uses
    # ImageClassificationData.train_dataset_for_inference() for them. Every image header is checked here (a
    # truncated JPEG/PNG, an empty folder, a single class fail now, before the output folder exists).
    data = image_folders(
        args,
        "a folder of <class>/<image> folders (or train/ and val/ or test/ holding them) with readable images of 2+"
        " classes",
    )
    if data.train_dataset is None or len(data.train_dataset) == 0:
        raise DemoError(
            f"--data-dir {str(args.data_dir)!r} holds no training images; accepted: a folder of <class>/<image> folders"
        )
    if args.weights_warning:
        print(f"warning: {args.weights_warning}", file=sys.stderr)
    model = image_classifier(args, data.num_classes)  # the weights are loaded before the output folder exists
    return model, data, [make_finetuning_callback("freeze")]


def _check_folds(args: argparse.Namespace, data: Any) -> None:
    """``--k`` against the training samples (and, with ``--stratify``, the smallest class), before any work."""
    if args.data_dir is not None:
        labels = list(data.train_dataset.targets)
    else:
        data.setup("fit")  # one split per instance: kfold_fit reuses this one
        labels = data.train_dataset.tensors[1].tolist()
    if args.k > len(labels):
        raise DemoError(
            f"--k {args.k} is invalid: the training set has {len(labels)} samples; accepted: an integer in "
            f"[2, {len(labels)}]"
        )
    if args.stratify:
        smallest = min(labels.count(label) for label in set(labels))
        if args.k > smallest:
            raise DemoError(
                f"--k {args.k} is invalid with --stratify: the smallest class has {smallest} training samples; "
                f"accepted: an integer in [2, {smallest}] (or drop --stratify)"
            )


def _describe_fold(trainer: Any, fold: int) -> str | None:
    prefix = f"fold_{fold}/"
    metrics = {k[len(prefix) :]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}
    shown = {k: v for k, v in metrics.items() if k.endswith("acc")} or metrics
    return ", ".join(f"{k}={v:.3f}" for k, v in sorted(shown.items())) or None


def summary_csv(result: Any) -> str:
    """One row per fold, then mean, std and the ensemble: the table printed at the end, for spreadsheets."""
    names = result.metric_names
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["fold", "n_train", "n_val", *names])
    for i in range(result.num_folds):
        n_train, n_val = result.fold_sizes[i]
        metrics = result.fold_metrics(i)
        writer.writerow([i, n_train, n_val, *(metrics.get(n, "") for n in names)])
    means, stds = result.mean(), result.std()
    writer.writerow(["mean", "", "", *(means[n] for n in names)])
    writer.writerow(["std", "", "", *(stds[n] for n in names)])
    if result.ensemble_metrics:
        writer.writerow(["ensemble", "", "", *(result.ensemble_metrics.get(n, "") for n in names)])
    return buffer.getvalue()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Cross-validate as ``args`` say; print progress and the summary; return the result and where it was saved.

    Returns:
        ``{"result": KFoldResult, "output_dir": Path, "seconds": float, "files": {name: Path}}``.
    """
    _check_args(args)
    start = time.perf_counter()
    with quiet_lightning():
        from matplotlib.figure import Figure

        import alkit
        from alkit.demos._progress import SegmentProgress
        from alkit.lightning import pl

        pl.seed_everything(args.seed, verbose=False)
        model, data, callbacks = _image_problem(args) if args.data_dir is not None else _digits_problem(args)
        _check_folds(args, data)
        output = new_output_dir("kfold", args.output, overwrite=args.overwrite)  # only once everything checked out
        source = f"images from {args.train_dir}" if args.data_dir is not None else "scikit-learn digits"
        print(f"alkit kfold: {args.k} folds of {source}, {args.max_epochs} epochs per fold -> {output}")
        if args.data_dir is not None:
            print(f"  backbone {args.backbone} ({args.weights_description}), test set: {args.test_dir or 'none'}")
        progress = SegmentProgress(
            "fold",
            args.k,
            args.max_epochs,
            segment_of=lambda trainer: getattr(trainer.fit_loop, "current_fold", None),
            describe=_describe_fold,
        )
        trainer = alkit.Trainer(
            max_epochs=args.max_epochs,
            default_root_dir=output,
            logger=pl.loggers.CSVLogger(output, name="logs", version=""),
            callbacks=[*callbacks, progress],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        result = alkit.kfold_fit(
            model,
            data,
            k=args.k,
            stratify=args.stratify,
            trainer=trainer,
            export_path=output,
            ensemble=not args.no_ensemble,
            seed=args.seed,
        )
        files = {
            "result": output / "kfold_result.json",
            "summary": write_text_atomic(output / "kfold_summary.csv", summary_csv(result)),
        }
        names = [n for n in result.metric_names if n.endswith("acc")] or result.metric_names
        figure = Figure(figsize=(3.4 * len(names) + 1, 3.4))
        result.plot(names, ax=figure.subplots(1, len(names), squeeze=False)[0])
        figure.savefig(output / "kfold_folds.png", dpi=100)
        files["plot"] = output / "kfold_folds.png"
    seconds = time.perf_counter() - start
    print()
    print(result)
    for name in names:
        print(f"{name}: {result.mean(name):.4f} ± {result.std(name):.4f} over {result.num_folds} folds")
    if result.ensemble_metrics:
        print("ensemble: " + ", ".join(f"{k}={v:.4f}" for k, v in result.ensemble_metrics.items()))
    print(f"done in {seconds:.1f} s; fold checkpoints, kfold_result.json, kfold_summary.csv, kfold_folds.png in:")
    print(f"  {output}")
    return {"result": result, "output_dir": output, "seconds": seconds, "files": files}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m alkit.demos.kfold [flags]``; returns the exit status (2 for a bad flag or missing data)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run(args)
    except DemoError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
