"""A progress bar over the folds or rounds of a research loop, and one printed line per finished fold or round.

Lightning's own bar counts batches of one epoch and restarts every epoch; a k-fold or active-learning run is many
short fits, so the demos replace it with one bar over *all* epochs of the run (total = segments × epochs per
segment) labelled with the current fold/round. The bar is drawn only on a terminal; the per-segment lines are always
printed, so a CI log or a notebook shows the run's progress too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

from alkit.lightning import pl

__all__ = ["SegmentProgress"]


class SegmentProgress(pl.callbacks.Callback):
    """Progress of a run made of ``total_segments`` fits (folds, rounds) of ``epochs_per_segment`` epochs each.

    Args:
        unit: ``"fold"`` or ``"round"``, shown in the bar and the printed lines.
        total_segments: number of folds/rounds the run will make (an upper bound is fine: the bar closes at the end).
        epochs_per_segment: epochs each fit trains.
        segment_of: reads the current 0-based segment from the trainer (e.g. ``trainer.fit_loop.current_fold``).
        describe: ``describe(trainer, segment)`` -> the text printed when ``segment`` has finished, or ``None``.
        show_bar: draw the bar (``None``: only when stderr is a terminal).
    """

    def __init__(
        self,
        unit: str,
        total_segments: int,
        epochs_per_segment: int,
        segment_of: Callable[[pl.Trainer], int | None],
        describe: Callable[[pl.Trainer, int], str | None],
        show_bar: bool | None = None,
    ) -> None:
        self.unit = unit
        self.total_segments = total_segments
        self.epochs_per_segment = epochs_per_segment
        self.segment_of = segment_of
        self.describe = describe
        self.show_bar = sys.stderr.isatty() if show_bar is None else show_bar
        self._bar: Any = None
        self._segment: int | None = None
        self._reported: set[int] = set()

    # -- hooks -----------------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.show_bar and trainer.is_global_zero:
            self._bar = tqdm(
                total=self.total_segments * self.epochs_per_segment,
                unit="epoch",
                dynamic_ncols=True,
                file=sys.stderr,
                leave=False,
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        segment = self.segment_of(trainer)
        if self._segment is not None and segment != self._segment:
            self._report(trainer, self._segment)
        self._segment = segment
        if self._bar is not None and segment is not None:
            self._bar.set_description(f"{self.unit} {segment + 1}/{self.total_segments}")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("train_loss", "val_acc")}
        if metrics:
            self._bar.set_postfix({k: f"{v:.3f}" for k, v in metrics.items()}, refresh=True)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.close()
        if self._segment is not None:
            self._report(trainer, self._segment)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _report(self, trainer: pl.Trainer, segment: int) -> None:
        if segment in self._reported or not trainer.is_global_zero:
            return
        self._reported.add(segment)
        text = self.describe(trainer, segment)
        if text:
            tqdm.write(f"{self.unit} {segment + 1}/{self.total_segments}: {text}", file=sys.stdout)
            sys.stdout.flush()
