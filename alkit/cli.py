"""The ``alkit`` command: the demos and k-fold cross-validation from a shell.

::

    alkit demo hymenoptera              # ants vs bees: does active learning beat random? (Flash's demo on alkit)
    alkit demo hymenoptera --quick      # the same in seconds (tiny settings, for a smoke test)
    alkit kfold --digits --stratify     # kfold_fit on scikit-learn's digits
    alkit kfold --data-dir DIR          # kfold_fit on class-per-folder images
    alkit <command> --help

Each command lives in :mod:`alkit.demos` (``add_arguments`` + ``run``); this module only wires them under one
``argparse`` parser and turns a user error into one clear line and exit status 2. Heavy imports (torch, Lightning)
happen inside ``run``, so ``alkit --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import alkit
from alkit.demos import hymenoptera as hymenoptera_demo
from alkit.demos import kfold as kfold_demo
from alkit.demos._common import DemoError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alkit",
        description="Active learning and k-fold cross-validation on custom PyTorch Lightning loops.",
        epilog="Run `alkit <command> --help` for the flags of a command.",
    )
    parser.add_argument("--version", action="version", version=f"alkit {alkit.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    demo = commands.add_parser(
        "demo",
        help="run a demo (alkit demo hymenoptera)",
        description="End-to-end demos on real data.",
    )
    demos = demo.add_subparsers(dest="demo", metavar="<demo>", required=True)
    hymenoptera = demos.add_parser(
        "hymenoptera",
        help="ants vs bees: a heuristic against random over seeds (Lightning Flash's demo on alkit)",
        description=hymenoptera_demo.DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    hymenoptera_demo.add_arguments(hymenoptera)
    hymenoptera.set_defaults(handler=hymenoptera_demo.run)

    kfold = commands.add_parser(
        "kfold",
        help="k-fold cross-validation with kfold_fit (digits or a folder of images)",
        description="k-fold cross-validation with alkit.kfold_fit: every fold from the same initial weights with a "
        "fresh optimizer; per-fold metrics, mean ± std, the ensemble of the fold models.",
    )
    kfold_demo.add_arguments(kfold)
    kfold.set_defaults(handler=kfold_demo.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``alkit`` console script; returns the exit status (2 for a user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except DemoError as error:
        name = " ".join(part for part in ("alkit", args.command, getattr(args, "demo", None)) if part)
        message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())  # one line
        print(f"{name}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
