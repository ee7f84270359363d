"""``FitWrapperLoop``: the base of research loops that run the FitLoop several times (folds, labelling rounds).

::

    for segment in segments:                 # e.g. for fold in folds / for round in rounds
        prepare(segment)                     # new fold / newly labelled data
        run_fit(num_epochs)                  # fresh optimizers, schedulers, callback state; counters keep growing
        run_test()                           # metrics of this segment
    ...

It is attached in the FitLoop's place (``loop.connect(trainer.fit_loop); trainer.fit_loop = loop``) and answers
Lightning's reads and writes of fit-loop internals through the wrapped loop. It exists so that every segment is a
real fresh fit, which the Lightning 1.x research loops did not guarantee: optimizers rebuilt while the trainer was
in the testing state (so never rebuilt: in Lightning 1.9's k-fold example the learning rate decayed across folds and
later folds trained at chance), a second fit that did nothing because ``max_epochs`` was already reached, EarlyStopping
and ModelCheckpoint state leaking from one fold or round into the next.
"""

from __future__ import annotations

import copy
from collections import ChainMap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from alkit import _seam
from alkit._rng import get_rng_state, set_rng_state
from alkit._seam import _FitLoop
from alkit.lightning import pl
from alkit.loops.loop import FitLoopStandIn, Loop

TrainerFn = pl.trainer.states.TrainerFn
RunningStage = pl.trainer.states.RunningStage

__all__ = ["FitWrapperLoop", "RunState"]


def _as_is(loop: Any, value: Any) -> Any:
    return value


@dataclass(frozen=True)
class RunState:
    """One piece of a research loop's run state, declared once: its default (a fresh value per run), and how it
    goes into a checkpoint and back (``save(loop, value)`` / ``load(loop, saved)``; ``saved=False``: not saved).

    ``reset``, ``on_save_checkpoint`` and ``on_load_checkpoint`` derive from the declarations, so a piece of state
    cannot be reset but forgotten in checkpoints (or saved but not restored). The checkpoint key is the attribute
    name without its leading underscore.
    """

    default: Callable[[], Any]
    save: Callable[[Any, Any], Any] = _as_is
    load: Callable[[Any, Any], Any] = _as_is
    saved: bool = True


class FitWrapperLoop(FitLoopStandIn, Loop):
    """Runs the wrapped FitLoop in segments; subclasses implement ``done`` and ``advance`` with ``run_fit``.

    It answers Lightning's reads and writes of ``trainer.fit_loop.<name>`` with the wrapped FitLoop for the names
    Lightning uses (:class:`~alkit.loops.loop.FitLoopStandIn`), except ``min_epochs``/``max_epochs``: the wrapper
    owns the trainer-level limits (``trainer.max_epochs`` is the number of rounds in Flash's active learning API);
    each segment sets the wrapped loop's own ``max_epochs``. Any other name is the wrapper's own.
    """

    #: the wrapper's own limits (set by ``connect``), not the wrapped loop's
    min_epochs: int | None = None
    max_epochs: int | None = None
    #: the kind of run written into this loop's checkpoints (``"k-fold"``, ``"active-learning"``); a checkpoint of
    #: another kind, or one without research-loop state (a plain Lightning fit's), is refused on load. ``None``: any.
    checkpoint_kind: str | None = None
    #: attribute name -> its declaration; subclasses extend it (``{**FitWrapperLoop.run_state, ...}``)
    run_state: ClassVar[dict[str, RunState]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.reset_run_state()
        self._segment_active = False
        self._segment_end_epoch = 0
        self._resumed_mid_segment = False
        self._initial_callback_states: dict[str, dict[str, Any]] = {}
        self._saved_rng: dict[str, Any] | None = None

    def connect(self, fit_loop: _FitLoop) -> None:  # type: ignore[override]
        """Wrap ``fit_loop`` (usually ``trainer.fit_loop``); then assign this loop as ``trainer.fit_loop``."""
        if not isinstance(fit_loop, _FitLoop):
            raise TypeError(
                f"`{type(self).__name__}.connect` expects the trainer's FitLoop (e.g. `trainer.fit_loop`),"
                f" got {type(fit_loop).__name__}."
            )
        self.stand_in_for(fit_loop)
        self.fit_loop = fit_loop
        self.min_epochs = fit_loop.min_epochs
        self.max_epochs = fit_loop.max_epochs

    def reset(self) -> None:
        if not self.restarting:  # a new (not resumed) fit starts the run over
            self.reset_run_state()

    def reset_run_state(self) -> None:
        """Give every declared piece of run state (``run_state``) its default."""
        for name, declared in self.run_state.items():
            setattr(self, name, declared.default())

    @property
    def fit_loop_connected(self) -> bool:
        return isinstance(self.__dict__.get("fit_loop"), _FitLoop)

    def _require_fit_loop(self) -> _FitLoop:
        fit_loop = self.__dict__.get("fit_loop")
        if not isinstance(fit_loop, _FitLoop):
            raise RuntimeError(
                f"`{type(self).__name__}` wraps no FitLoop: call `loop.connect(trainer.fit_loop)` before"
                " `trainer.fit_loop = loop`."
            )
        return fit_loop

    # ------------------------------------------------------------------------------------------------------------
    # segments
    # ------------------------------------------------------------------------------------------------------------
    def on_run_start(self, *args: Any, **kwargs: Any) -> None:
        self._require_fit_loop()
        self._remember_initial_callback_states()

    @property
    def resuming_segment(self) -> bool:
        """True when the run was restored from a checkpoint saved inside a fit segment.

        The next ``run_fit`` then continues that segment; a subclass must skip the preparation it does before a new
        segment (restoring initial weights, labelling, switching folds), which already happened before the save.
        """
        return self._resumed_mid_segment

    def run_fit(self, num_epochs: int, reload_dataloaders: bool = True) -> None:
        """Train exactly ``num_epochs`` more epochs as a fresh fit: new optimizers, schedulers and callback state.

        Epoch and step counters keep growing across segments so logged curves stay monotonic. A run resumed from a
        checkpoint saved inside a segment continues that segment with its restored optimizer and callback state.
        """
        if num_epochs < 1:
            raise ValueError(f"`num_epochs` must be at least 1, got {num_epochs}.")
        fit_loop = self._require_fit_loop()
        trainer = self.trainer
        if self._resumed_mid_segment:
            self._resumed_mid_segment = False
        else:
            # Resumed at a segment boundary, the wrapped loop still carries the reload flags: nothing inside it is to
            # be resumed (else Lightning would reuse a stale data iterator and draw a different data order).
            _seam.clear_restart_flags(fit_loop)
            trainer.should_stop = False
            self._segment_end_epoch = fit_loop.epoch_progress.current.processed + num_epochs
            if reload_dataloaders:
                self._drop_train_and_val_dataloaders()
            self.reset_optimizers()
            self.reset_callbacks()
        fit_loop.max_epochs = self._segment_end_epoch
        self._segment_active = True
        fit_loop.run()
        self._segment_active = False

    def reset_optimizers(self) -> None:
        """Rebuild optimizers and LR schedulers from ``configure_optimizers`` (fresh state, initial LR)."""
        trainer = self.trainer
        trainer.strategy.setup_optimizers(trainer)

    def reset_callbacks(self) -> None:
        """Give every stateful callback (EarlyStopping, ModelCheckpoint, ...) back its state from the run's start."""
        for callback in self.trainer.callbacks:
            state = self._initial_callback_states.get(callback.state_key)
            if state is None:
                continue
            state = copy.deepcopy(state)
            if isinstance(callback, pl.callbacks.ModelCheckpoint):
                # Best-k tracking starts over (a new fold or labelled set is a new problem; earlier files stay on
                # disk, their names carry the ever-growing epoch and step). `last.ckpt` stays the one resume point
                # instead of becoming `last-v1.ckpt`, `last-v2.ckpt`, ...
                state["last_model_path"] = callback.last_model_path
            callback.load_state_dict(state)
            if isinstance(callback, pl.callbacks.ModelCheckpoint):
                # not in ModelCheckpoint.state_dict(): left set, `save_last` would skip every later segment
                callback._last_checkpoint_saved = ""

    def _remember_initial_callback_states(self) -> None:
        for callback in self.trainer.callbacks:
            if callback.state_key not in self._initial_callback_states:
                self._initial_callback_states[callback.state_key] = copy.deepcopy(callback.state_dict())

    def _drop_train_and_val_dataloaders(self) -> None:
        """Make the next fit request fresh dataloaders (the labelled set or the fold changed)."""
        fit_loop = self._require_fit_loop()
        _seam.drop_loaded_data(fit_loop)
        _seam.drop_loaded_data(fit_loop.epoch_loop.val_loop)

    def show_progress(self, name: str, text: str) -> None:
        """Show ``name=text`` (e.g. ``fold=2/5``) beside the epoch in the progress bar."""
        metrics = _seam.progress_bar_metrics(self.trainer)
        if isinstance(metrics, dict):
            metrics[name] = text

    def restore_saved_rng(self) -> bool:
        """Put back the RNG states saved in the checkpoint this run resumed from (once); whether there were any.

        Every checkpoint a research loop writes carries the state of every global RNG at the save, so a resumed
        segment draws exactly what the interrupted one would have drawn (dropout masks, data order). A subclass
        calls this at the point matching the save: just before continuing an interrupted segment, or at a segment
        boundary before the next segment's preparation.
        """
        if self._saved_rng is None:
            return False
        set_rng_state(self._saved_rng)
        self._saved_rng = None
        return True

    # ------------------------------------------------------------------------------------------------------------
    # evaluation from inside fit
    # ------------------------------------------------------------------------------------------------------------
    def run_validation(self) -> dict[str, float]:
        """Run the trainer's ``validate_loop`` now; returns the logged metrics (empty without validation data)."""
        return self._run_evaluation(self.trainer.validate_loop, TrainerFn.VALIDATING, RunningStage.VALIDATING)

    def run_test(self) -> dict[str, float]:
        """Run the trainer's ``test_loop`` now; returns the logged metrics (empty without test data or step)."""
        return self._run_evaluation(self.trainer.test_loop, TrainerFn.TESTING, RunningStage.TESTING)

    def evaluate_quietly(self, run: Any) -> dict[str, float]:
        """``run()`` (``run_validation``/``run_test``) without logging or printing its metrics, each averaged over the
        processes so every rank records (and saves) the same numbers.

        A research loop logs a segment's metrics once, under the segment's name (``fold_2/val_acc``, the round
        record); Lightning's own logging of the pass would log them a second time at the same step.
        """
        trainer = self.trainer
        loggers, trainer.loggers = trainer.loggers, []
        loops = (trainer.validate_loop, trainer.test_loop)
        verbose = [loop.verbose for loop in loops]
        for loop in loops:
            loop.verbose = False
        try:
            metrics = run()
        finally:
            trainer.loggers = loggers
            for loop, flag in zip(loops, verbose):
                loop.verbose = flag
        return self.reduce_over_processes(metrics)

    def reduce_over_processes(self, metrics: dict[str, float]) -> dict[str, float]:
        """Average each metric over the processes (a no-op in a single process)."""
        trainer = self.trainer
        if trainer.world_size > 1 and metrics:
            keys = sorted(metrics)
            values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=trainer.strategy.root_device)
            values = trainer.strategy.reduce(values, reduce_op="mean")
            metrics = {k: float(v) for k, v in zip(keys, values.tolist())}
        return metrics

    def refuse_max_steps(self, segment: str, limits: str) -> None:
        """Refuse ``Trainer(max_steps=...)`` before any work: steps keep counting across segments (folds, rounds),
        so a step limit would silently cut every later segment short."""
        max_steps = self._require_fit_loop().epoch_loop.max_steps
        if max_steps not in (-1, None):
            raise ValueError(
                f"Trainer(max_steps={max_steps}) is not supported by {type(self).__name__}: steps keep counting "
                f"across {segment}, so it would cut later {segment} short; accepted: max_steps=-1 (the default). "
                f"Use {limits} and limit_train_batches instead."
            )

    def _run_evaluation(self, loop: Any, fn: TrainerFn, stage: RunningStage) -> dict[str, float]:
        trainer = self.trainer
        if not _seam.has_data_source(loop):
            return {}
        previous_fn, previous_stage = trainer.state.fn, trainer.state.stage
        trainer.state.fn = fn
        trainer.state.stage = stage
        try:
            outputs = loop.run()
        finally:
            loop.teardown()
            trainer.state.fn = previous_fn
            trainer.state.stage = previous_stage
            torch.set_grad_enabled(True)
        merged = dict(ChainMap(*outputs)) if outputs else {}
        return {k: float(v.item()) if isinstance(v, torch.Tensor) else float(v) for k, v in merged.items()}

    # ------------------------------------------------------------------------------------------------------------
    # weights
    # ------------------------------------------------------------------------------------------------------------
    def snapshot_weights(self) -> dict[str, torch.Tensor]:
        """A detached CPU copy of the model's weights (to restore later with ``restore_weights``)."""
        return {k: v.detach().cpu().clone() for k, v in self.trainer.lightning_module.state_dict().items()}

    def restore_weights(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Load weights taken with ``snapshot_weights`` back into the model."""
        self.trainer.lightning_module.load_state_dict(snapshot)

    # ------------------------------------------------------------------------------------------------------------
    # checkpointing
    # ------------------------------------------------------------------------------------------------------------
    def on_save_checkpoint(self) -> dict:
        state = {
            "segment_active": self._segment_active,
            "segment_end_epoch": self._segment_end_epoch,
            "initial_callback_states": copy.deepcopy(self._initial_callback_states),
            "rng": get_rng_state(),
            "kind": self.checkpoint_kind,
        }
        for name, declared in self.run_state.items():
            if declared.saved:
                state[name.lstrip("_")] = declared.save(self, getattr(self, name))
        return state

    def on_load_checkpoint(self, state_dict: dict) -> None:
        self._check_checkpoint_kind(state_dict)
        self._segment_active = bool(state_dict.get("segment_active", False))
        self._segment_end_epoch = int(state_dict.get("segment_end_epoch", 0))
        self._resumed_mid_segment = self._segment_active
        self._initial_callback_states = copy.deepcopy(state_dict.get("initial_callback_states", {}))
        self._saved_rng = state_dict.get("rng")
        for name, declared in self.run_state.items():
            key = name.lstrip("_")
            if declared.saved and key in state_dict:
                setattr(self, name, declared.load(self, state_dict[key]))
        # Epochs keep counting across segments, but Lightning refuses a checkpoint whose epoch is beyond
        # `trainer.max_epochs` (for a wrapper: rounds, or epochs per fold, read by the subclass in `connect`):
        # let the limits reach the end of the checkpoint's segment.
        for loop in (self, self.__dict__.get("fit_loop")):
            if loop is not None and "max_epochs" in loop.__dict__ and loop.max_epochs not in (None, -1):
                loop.max_epochs = max(loop.max_epochs, self._segment_end_epoch)

    def _check_checkpoint_kind(self, state_dict: dict) -> None:
        """Refuse, before anything trains, a checkpoint written by another kind of run than this loop's."""
        expected = self.checkpoint_kind
        if expected is None:
            return
        saved = state_dict.get("kind") if isinstance(state_dict, dict) else None
        if saved is None and isinstance(state_dict, dict):  # written before the marker existed
            saved = next((kind for key, kind in _KIND_OF_STATE_KEY.items() if key in state_dict), None)
        if saved == expected:
            return
        name = type(self).__name__
        if saved is None:
            raise ValueError(
                f"ckpt_path is not {_with_article(expected)} checkpoint: it holds no research-loop state (a plain "
                f"Lightning fit's), so {name} cannot resume from it. To start {_with_article(expected)} run from its "
                "weights, load them into the model (model.load_state_dict(torch.load(path, weights_only=True)"
                "['state_dict'])) and call fit without ckpt_path."
            )
        raise ValueError(
            f"ckpt_path is a checkpoint written by {_with_article(saved)} run, but this is {_with_article(expected)} "
            f"run ({name}): resume it from one of its own checkpoints (accepted: checkpoints of "
            f"{_with_article(expected)} run)"
        )


#: the state key each research loop wrote before checkpoints carried a kind marker
_KIND_OF_STATE_KEY = {"current_fold": "k-fold", "current_round": "active-learning"}


def _with_article(kind: str) -> str:
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"
