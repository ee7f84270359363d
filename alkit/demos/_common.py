"""What every demo needs: finding the data and weights, a fresh output folder, quiet Lightning, plain-text tables.

Kept apart from the demos so :mod:`alkit.cli`, the demos and the notebooks discover data the same way: the project's
``shared/`` folder next to the repository (where CI and every developer machine keep the datasets and the pretrained
MobileNetV2 weights), else the current directory's ``data/`` (where ``data_scripts/`` installs downloads).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from alkit._io import write_text_atomic

__all__ = [
    "DemoError",
    "image_classifier",
    "image_folders",
    "REPO_ROOT",
    "find_shared",
    "format_table",
    "new_output_dir",
    "one_line",
    "quiet_lightning",
    "resolve_weights",
    "check_minimums",
    "write_text_atomic",
]

#: The repository checkout holding this package (``alkit/demos/_common.py`` -> two levels up).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: The ImageNet-pretrained MobileNetV2 feature extractor kept in ``shared/data`` (no download needed).
MOBILENET_WEIGHTS = "weights/mobilenet_v2_imagenet_features.pth"

_WEIGHT_KEYWORDS = ("auto", "imagenet", "none")


class DemoError(Exception):
    """A problem the user can fix (missing data, bad flag value); the command prints it without a traceback."""


def shared_data_candidates() -> list[Path]:
    """Where ``shared/data`` may be: beside the repository, or beside the current directory (a notebook's cwd)."""
    candidates = [REPO_ROOT.parent / "shared" / "data", Path.cwd().resolve().parent / "shared" / "data"]
    unique: list[Path] = []
    for path in candidates:
        if path not in unique:
            unique.append(path)
    return unique


def find_shared(relative: str) -> Path | None:
    """``shared/data/<relative>`` if some copy of ``shared/`` has it, else ``None``."""
    for base in shared_data_candidates():
        path = base / relative
        if path.exists():
            return path
    return None


def resolve_weights(backbone: str, weights: str | os.PathLike | None) -> tuple[bool | str, str, str | None]:
    """Turn a ``--weights`` value into ``ImageClassifier(pretrained=...)``, a description, and a warning if any.

    ``None``/``"auto"``: the shared ImageNet MobileNetV2 weights for ``mobilenet_v2`` when present, else a random
    backbone (with a warning: a random backbone on a few hundred images learns next to nothing, about 0.46 accuracy
    on hymenoptera against 0.95 pretrained). ``"imagenet"``: torchvision's weights (downloaded or cached).
    ``"none"``: random on purpose (no warning). Anything else: a path to a state dict.
    """
    if weights is None or str(weights) == "auto":
        if backbone == "mobilenet_v2":
            path = find_shared(MOBILENET_WEIGHTS)
            if path is not None:
                return str(path), f"ImageNet weights from {path}", None
        return (
            False,
            "random initialisation",
            f"no pretrained weights for backbone={backbone!r} were found offline, so the backbone is RANDOM and "
            "accuracy will stay near chance. Use --backbone mobilenet_v2 with the shared weights, --weights PATH to "
            "a state dict, or --weights imagenet to let torchvision download them.",
        )
    if str(weights) == "imagenet":
        return True, "torchvision ImageNet weights", None
    if str(weights) == "none":
        return False, "random initialisation (--weights none)", None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise DemoError(
            f"--weights {os.fspath(weights)!r}: no such file; accepted: a path to a state dict or one of "
            f"{list(_WEIGHT_KEYWORDS)}"
        )
    from alkit.vision.backbones import read_state_dict

    try:  # read now, weights-only (no code runs from the file), so a bad file fails before any folder is created
        read_state_dict(path, argument="--weights")
    except (ValueError, OSError) as error:
        reason = one_line(error.__cause__ or error)
        raise DemoError(
            f"--weights {os.fspath(weights)!r} is not a loadable state dict ({reason}); accepted: a file holding a "
            f"state dict of tensors (read with torch.load(weights_only=True)) or one of {list(_WEIGHT_KEYWORDS)}"
        ) from error
    return str(path), f"weights from {path}", None


def one_line(error: BaseException | str, limit: int = 400) -> str:
    """``error``'s message on one line (lines joined, whitespace collapsed, at most ``limit`` characters)."""
    text = " ".join(str(error).split()) or (type(error).__name__ if isinstance(error, BaseException) else "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def new_output_dir(kind: str, output: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
    """The run's output folder, created: ``output`` or ``alkit_runs/<kind>/<timestamp>`` (never an earlier run's).

    An ``output`` that already holds files is refused unless ``overwrite``: a second run must not silently replace
    the checkpoints and histories of the first.
    """
    if output is not None:
        path = Path(output).expanduser()
        if path.exists() and not path.is_dir():
            raise DemoError(f"--output {os.fspath(output)!r} is a file; accepted: a folder (new or empty)")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise DemoError(
                f"--output {os.fspath(output)!r} already holds files of an earlier run; choose a new folder, or pass "
                "--overwrite to replace them"
            )
        path.mkdir(parents=True, exist_ok=True)
        return path
    base = Path("alkit_runs") / kind
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / stamp
    suffix = 1
    while path.exists():
        path = base / f"{stamp}-{suffix}"
        suffix += 1
    path.mkdir(parents=True)
    return path


def check_minimums(flags: Sequence[tuple[str, int, int]]) -> None:
    """Refuse any ``(flag, value, minimum)`` below its minimum, naming the flag and the accepted values."""
    for flag, value, minimum in flags:
        if value < minimum:
            raise DemoError(f"{flag} {value} is invalid; accepted: an integer >= {minimum}")


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats rounded, missing/NaN as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A right-aligned plain-text table (readable in a terminal, a CI log and a notebook alike)."""
    cells = [[str(h) for h in header]] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(row[c]) for row in cells) for c in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's start-up chatter and the warnings that do not apply to a small CPU demo.

    The demo prints its own progress and summary; "GPU available: False", "does not have many workers" (image
    decoding in worker processes costs more than it saves on 2 cores) and "smaller than the logging interval" would
    only bury it.
    """
    names = ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for pattern in (
            ".*does not have many workers.*",
            ".*smaller than the logging interval.*",
            ".*The number of training batches.*",
            ".*Checkpoint directory .* exists and is not empty.*",
            ".*LeafSpec.*is deprecated.*",  # torch's pytree deprecation, raised inside Lightning
            ".*Total length of .* across ranks is zero.*",  # no validation set: an empty val dataloader
        ):
            warnings.filterwarnings("ignore", message=pattern)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def image_folders(args: Any, accepted: str) -> Any:
    """``ImageClassificationData.from_folders`` on the demo's ``--data-dir`` folders, every image checked now.

    A truncated JPEG/PNG, an empty folder or a single class is a :class:`DemoError` naming ``--data-dir`` and
    ``accepted``, raised before the run folder exists.
    """
    from alkit.vision import ImageClassificationData
    from alkit.vision.images import ImageLoadError

    try:
        return ImageClassificationData.from_folders(
            train_folder=args.train_dir,
            test_folder=args.test_dir,
            batch_size=args.batch_size,
            image_size=args.image_size,
            seed=args.seed,
        )
    except (ValueError, OSError, ImageLoadError) as error:
        raise DemoError(
            f"--data-dir {str(args.data_dir)!r} is not usable: {one_line(error)}; accepted: {accepted}"
        ) from error


def image_classifier(args: Any, num_classes: int, **kwargs: Any) -> Any:
    """The demo's ``ImageClassifier`` with ``--backbone``/``--weights`` loaded now, before the run folder exists.

    Weights that do not fit the backbone are a :class:`DemoError` naming ``--weights`` and ``--backbone``.
    ``kwargs`` go to the classifier (e.g. ``head=``).
    """
    from alkit.vision import ImageClassifier

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the choice of weights was reported when it was resolved
            return ImageClassifier(
                backbone=args.backbone,
                num_classes=num_classes,
                pretrained=args.pretrained,
                learning_rate=args.learning_rate,
                image_size=args.image_size,
                **kwargs,
            )
    except (ValueError, OSError) as error:
        raise DemoError(
            f"--weights {str(args.weights)!r} does not fit --backbone {args.backbone}: {one_line(error)}; "
            "accepted: a state dict of that backbone, 'auto', 'imagenet' or 'none'"
        ) from error
