"""Run every loop-API example and print what it measured: ``python -m alkit.examples``."""

from __future__ import annotations

import importlib
import logging
import warnings

EXAMPLES = ["custom_fit_loop", "from_scratch_loop", "validation_guided_descent", "multiple_optimizers", "yield_gan"]


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    for name in EXAMPLES:
        result = importlib.import_module(f"alkit.examples.{name}").main()
        print(f"{name}: {result}")


if __name__ == "__main__":
    main()
