"""The one place where alkit touches Lightning's private internals.

Lightning 2 keeps its loops private (``_FitLoop``, ``_TrainingEpochLoop``, ...), and rebuilding the 1.x loop API
means subclassing them, dispatching hooks the way the Trainer does and reading a few private attributes. Every such
name is imported, wrapped or declared here, and nowhere else in alkit, so that:

- a Lightning release that renames one fails at ``import alkit`` with the name and the Lightning version, not with
  an ``AttributeError`` in the middle of a training run (or, worse, a private attribute silently not carried);
- supporting a new Lightning minor means reading this one file.

The module binds to whichever namespace :mod:`alkit.lightning` chose (``lightning.pytorch`` or
``pytorch_lightning``).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from typing import Any

from alkit.lightning import pl

__all__: list[str] = []  # private by design: import names explicitly

_VERSION = getattr(pl, "__version__", "unknown")
_PREFIX = pl.__name__


class LightningInternalsChanged(ImportError):
    """A private Lightning name alkit relies on is missing from the installed Lightning."""


def _missing(what: str) -> LightningInternalsChanged:
    return LightningInternalsChanged(
        f"alkit relies on `{what}`, which {_PREFIX} {_VERSION} does not have. alkit supports Lightning 2.4 to 2.6;"
        " install one of those (see alkit's README) or report the Lightning version."
    )


def _private(module: str, name: str) -> Any:
    """Import ``name`` from ``{namespace}.{module}``; a missing one fails loudly with the Lightning version."""
    try:
        return getattr(importlib.import_module(f"{_PREFIX}.{module}"), name)
    except (ImportError, AttributeError):
        raise _missing(f"{_PREFIX}.{module}.{name}") from None


# ---------------------------------------------------------------------------------------------------------------------
# private classes alkit subclasses or instantiates
# ---------------------------------------------------------------------------------------------------------------------
_Loop = _private("loops.loop", "_Loop")
_FitLoop = _private("loops.fit_loop", "_FitLoop")
_TrainingEpochLoop = _private("loops.training_epoch_loop", "_TrainingEpochLoop")
_EvaluationLoop = _private("loops.evaluation_loop", "_EvaluationLoop")
_PredictionLoop = _private("loops.prediction_loop", "_PredictionLoop")
_AutomaticOptimization = _private("loops.optimization.automatic", "_AutomaticOptimization")
ClosureResult = _private("loops.optimization.automatic", "ClosureResult")
_ManualOptimization = _private("loops.optimization.manual", "_ManualOptimization")
ManualResult = _private("loops.optimization.manual", "ManualResult")
_DataFetcher = _private("loops.fetchers", "_DataFetcher")
_DataLoaderIterDataFetcher = _private("loops.fetchers", "_DataLoaderIterDataFetcher")
_no_grad_context = _private("loops.utilities", "_no_grad_context")
_DataLoaderSource = _private("trainer.connectors.data_connector", "_DataLoaderSource")
_ResultCollection = _private("trainer.connectors.logger_connector.result", "_ResultCollection")

_BaseProgress = _private("loops.progress", "_BaseProgress")
_BatchProgress = _private("loops.progress", "_BatchProgress")
_OptimizationProgress = _private("loops.progress", "_OptimizationProgress")
_OptimizerProgress = _private("loops.progress", "_OptimizerProgress")
_ProcessedTracker = _private("loops.progress", "_ProcessedTracker")
_Progress = _private("loops.progress", "_Progress")
_ReadyCompletedTracker = _private("loops.progress", "_ReadyCompletedTracker")
_SchedulerProgress = _private("loops.progress", "_SchedulerProgress")
_StartedTracker = _private("loops.progress", "_StartedTracker")

_call = importlib.import_module(f"{_PREFIX}.trainer.call")
_optimizer_module = importlib.import_module(f"{_PREFIX}.core.optimizer")
for _name in ("_call_callback_hooks", "_call_lightning_module_hook", "_call_strategy_hook"):
    if not hasattr(_call, _name):
        raise _missing(f"{_PREFIX}.trainer.call.{_name}")
if not hasattr(_optimizer_module, "_validate_multiple_optimizers_support"):
    raise _missing(f"{_PREFIX}.core.optimizer._validate_multiple_optimizers_support")
_lightning_active_loop = pl.Trainer.__dict__.get("_active_loop")
if not isinstance(_lightning_active_loop, property):
    raise _missing(f"{_PREFIX}.Trainer._active_loop")


# ---------------------------------------------------------------------------------------------------------------------
# hook dispatch, as the Trainer does it (profiling, current-hook bookkeeping, callback order)
# ---------------------------------------------------------------------------------------------------------------------
def call_callback_hooks(trainer: Any, hook: str, *args: Any, **kwargs: Any) -> None:
    """Call ``hook`` on every callback of ``trainer``, as Lightning's loops do."""
    _call._call_callback_hooks(trainer, hook, *args, **kwargs)


def call_module_hook(trainer: Any, hook: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``hook`` on the LightningModule, as Lightning's loops do; returns its value."""
    return _call._call_lightning_module_hook(trainer, hook, *args, **kwargs)


def call_strategy_hook(trainer: Any, hook: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``hook`` on the strategy (``training_step``, ``batch_to_device``, ...); returns its value."""
    return _call._call_strategy_hook(trainer, hook, *args, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# private attributes of Lightning objects
# ---------------------------------------------------------------------------------------------------------------------
def active_loop(trainer: Any) -> Any:
    """The loop Lightning's ``Trainer._active_loop`` reports (before alkit's stand-in resolution)."""
    return _lightning_active_loop.fget(trainer)


def active_loop_getter() -> Callable[[Any], Any]:
    """Lightning's ``Trainer._active_loop`` getter itself, for callers on a per-batch path."""
    return _lightning_active_loop.fget


def logger_connector(trainer: Any) -> Any:
    """The trainer's logger connector (collects ``self.log`` results per batch)."""
    return trainer._logger_connector


def progress_bar_metrics(trainer: Any) -> dict | None:
    """The metrics the progress bar shows (``None`` before the logger connector has any)."""
    return getattr(getattr(trainer, "_logger_connector", None), "_progress_bar_metrics", None)


def lightning_optimizer(trainer: Any, index: int) -> Any:
    """The ``LightningOptimizer`` wrapping ``trainer.optimizers[index]`` (what ``optimizer_step`` receives)."""
    return trainer.strategy._lightning_optimizers[index]


def fetched_batch(data_fetcher: Any) -> tuple[Any, int, int]:
    """``(batch, batch_idx, dataloader_idx)`` last fetched by an iterator-style (``dataloader_iter``) fetcher."""
    return data_fetcher._batch, data_fetcher._batch_idx, data_fetcher._dataloader_idx


def on_before_batch_transfer(trainer: Any, batch: Any, dataloader_idx: int = 0) -> Any:
    """Run the module's ``on_before_batch_transfer`` the way the Trainer does (with its hook bookkeeping)."""
    return trainer.lightning_module._on_before_batch_transfer(batch, dataloader_idx=dataloader_idx)


BATCH_TRANSFER_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")


def overridden_batch_transfer_hooks(datamodule: Any) -> list[str]:
    """The names in ``BATCH_TRANSFER_HOOKS`` that ``datamodule`` overrides (class methods or instance attributes)."""
    overrides = pl.utilities.model_helpers.is_overridden
    return [hook for hook in BATCH_TRANSFER_HOOKS if overrides(hook, datamodule, pl.LightningDataModule)]


def dispatch_batch_hooks_to_model(trainer: Any) -> bool:
    """Let Lightning call the model's batch-transfer hooks directly when the attached datamodule overrides none.

    With a datamodule attached, Lightning asks for each of the three hooks on every batch whether the datamodule
    (then the model) overrides it: six look-ups a batch, 3 % of a small model's run. When the datamodule overrides
    none, the answer is the model every time, so the hook selector is told there is no datamodule to ask. Returns
    whether it was.
    """
    selector = getattr(getattr(trainer, "_data_connector", None), "_datahook_selector", None)
    datamodule = getattr(selector, "datamodule", None)
    if datamodule is None:
        return False
    if overridden_batch_transfer_hooks(datamodule):
        return False
    selector.datamodule = None
    return True


@contextlib.contextmanager
def multiple_optimizers_validator(validate: Callable[[list, Any], None]) -> Iterator[None]:
    """Replace Lightning's check that refuses several optimizers under automatic optimization while in the block.

    Lightning 2 rejects them at set-up; alkit's ``OptimizerLoop`` steps each optimizer in turn as Lightning 1.x did.
    ``validate(optimizers, model)`` is called instead; it receives Lightning's own check as ``validate.lightning``.
    """
    original = _optimizer_module._validate_multiple_optimizers_support
    validate.lightning = original  # type: ignore[attr-defined]
    _optimizer_module._validate_multiple_optimizers_support = validate
    try:
        yield
    finally:
        _optimizer_module._validate_multiple_optimizers_support = original


# ---------------------------------------------------------------------------------------------------------------------
# loop-restart flags (set by Lightning when a checkpoint is loaded)
# ---------------------------------------------------------------------------------------------------------------------
RESTART_FLAGS = ("_restarting", "_loaded_from_state_dict", "_resuming_from_checkpoint")
# Lightning 2.5 added `_loaded_from_state_dict`, restart stages and `_Loop.on_iteration_done` (which clears the
# flags); 2.5.3 added `_resuming_from_checkpoint`. On older minors alkit keeps the flags itself.
_LIGHTNING_CLEARS_FLAGS = all(hasattr(_Loop, name) for name in ("on_iteration_done", "reset_restart_stage"))


def restart_pending(loop: Any) -> bool:
    """Whether ``loop`` still carries a reload flag (flags a Lightning minor does not have count as unset)."""
    return bool(
        getattr(loop, "_restarting", False)
        or getattr(loop, "_loaded_from_state_dict", False)
        or getattr(loop, "_resuming_from_checkpoint", False)
    )


def finish_iteration(loop: Any) -> None:
    """Clear ``loop``'s reload flags after an iteration, as Lightning's own loops do."""
    if _LIGHTNING_CLEARS_FLAGS:
        _Loop.on_iteration_done(loop)
    else:
        for flag in RESTART_FLAGS:
            object.__setattr__(loop, flag, False)


def reset_restart_stage(loop: Any) -> None:
    """Forget where inside an iteration ``loop`` was restarted (a no-op before Lightning 2.5)."""
    if _LIGHTNING_CLEARS_FLAGS:
        loop.reset_restart_stage()


#: the restart stage of a loop that was not restarted (every Lightning loop spells it the same)
_NO_RESTART_STAGE = "none"


def iteration_done(loop: Any) -> None:
    """After an iteration: clear ``loop``'s reload flags and restart stage, as Lightning's ``on_iteration_done``.

    Runs after every batch of every alkit loop (which has every flag, at least as a class default) and writes only
    what is set: a loop that was never reloaded costs three attribute reads, not the writes Lightning's own version
    does each time.
    """
    if loop._restarting or loop._loaded_from_state_dict or loop._resuming_from_checkpoint:
        finish_iteration(loop)
    elif _LIGHTNING_CLEARS_FLAGS and getattr(loop, "_restart_stage", _NO_RESTART_STAGE) != _NO_RESTART_STAGE:
        loop.reset_restart_stage()


def restarting_property(doc: str) -> property:
    """The ``restarting`` property of alkit's loops: Lightning's flag, set for a loop and the loops below it.

    Lightning's epoch loop writes ``val_loop.restarting = False`` before every batch: the setter walks the loops
    below without a call per loop (a child whose class defines ``restarting`` otherwise is set through it).
    """

    def get(loop: Any) -> bool:
        return loop._restarting

    def set_(loop: Any, value: bool) -> None:
        pending = [loop]
        while pending:
            current = pending.pop()
            object.__setattr__(current, "_restarting", value)
            for name in current._child_names:  # alkit loops record their children's names (no `vars()`)
                child = getattr(current, name, None)
                if not isinstance(child, _Loop):
                    continue
                if type(child).restarting is restarting:
                    pending.append(child)
                else:
                    child.restarting = value

    restarting = property(get, set_, doc=doc)
    return restarting


def mark_loaded(loop: Any) -> None:
    """Record that ``loop``'s state came from a checkpoint (Lightning 2.5+ does it in ``load_state_dict``)."""
    object.__setattr__(loop, "_loaded_from_state_dict", True)


def was_loaded(loop: Any) -> bool:
    """Whether ``loop``'s state was loaded from a checkpoint and no iteration has finished since."""
    return bool(getattr(loop, "_loaded_from_state_dict", False))


def clear_restart_flags(loop: Any) -> None:
    """Forget that ``loop`` (and its children) were reloaded from a checkpoint."""
    for flag in RESTART_FLAGS:
        setattr(loop, flag, False)
    reset_restart_stage(loop)
    for child in _children(loop):
        clear_restart_flags(child)


def _children(loop: Any) -> list:
    """``loop``'s child loops: an alkit loop's ``children()`` (its ``__dict__`` stays unrequested), else all."""
    if callable(getattr(type(loop), "children", None)):
        return list(loop.children())
    return [value for value in vars(loop).values() if isinstance(value, _Loop)]


def is_restarting(loop: Any) -> bool:
    return loop._restarting


# ---------------------------------------------------------------------------------------------------------------------
# the private attributes alkit reads or writes on Lightning's loops, checked against the installed Lightning
# ---------------------------------------------------------------------------------------------------------------------
#: attributes Lightning's ``_FitLoop`` sets in ``__init__`` that alkit relies on (data set-up, accumulation, ...)
FIT_LOOP_ATTRIBUTES = (
    "_data_source",
    "_combined_loader",
    "_data_fetcher",
    "max_batches",
    "_last_train_dl_reload_epoch",
    "_combined_loader_states_to_load",
)
#: attributes of Lightning's ``_EvaluationLoop`` carried when a loop is replaced or given a role
EVALUATION_LOOP_ATTRIBUTES = (
    "_trainer_fn",
    "_stage",
    "_data_source",
    "_combined_loader",
    "_max_batches",
    "_last_val_dl_reload_epoch",
    "_seen_batches_per_dataloader",
    "_results",
)
#: methods of Lightning's loops that alkit calls or extends
_METHODS = {
    _Loop: ("state_dict", "load_state_dict", "on_save_checkpoint"),
    _FitLoop: ("setup_data", "_should_accumulate", "on_run_start", "on_advance_start", "advance", "on_advance_end"),
    _TrainingEpochLoop: ("on_run_start", "on_advance_end", "advance"),
    _EvaluationLoop: ("setup_data", "_evaluation_step", "_store_dataloader_outputs"),
    _PredictionLoop: ("setup_data", "_predict_step"),
    _AutomaticOptimization: ("run", "_optimizer_step", "_make_closure"),
}


def _check_attributes() -> None:
    fit = _FitLoop(None)  # type: ignore[arg-type]
    states = pl.trainer.states
    evaluation = _EvaluationLoop(None, states.TrainerFn.VALIDATING, states.RunningStage.VALIDATING)  # type: ignore[arg-type]
    for loop, names in ((fit, FIT_LOOP_ATTRIBUTES), (evaluation, EVALUATION_LOOP_ATTRIBUTES)):
        for name in names:
            if name not in vars(loop):
                raise _missing(f"{type(loop).__name__}.{name}")
    for cls, names in _METHODS.items():
        for name in names:
            if not hasattr(cls, name):
                raise _missing(f"{cls.__name__}.{name}")


_check_attributes()


# ---------------------------------------------------------------------------------------------------------------------
# --- optimization (batch level) ---
# Lightning 2's automatic optimization knows one optimizer; alkit's OptimizerLoop extends it to several (1.x). What
# that needs of Lightning's internals, checked here at import like everything above.
# ---------------------------------------------------------------------------------------------------------------------
_lightning_utilities = importlib.import_module(f"{_PREFIX}.loops.utilities")
for _name in ("_block_parallel_sync_behavior", "_is_max_limit_reached", "_reset_progress"):
    if not hasattr(_lightning_utilities, _name):
        raise _missing(f"{_PREFIX}.loops.utilities.{_name}")
if not hasattr(_optimizer_module, "_configure_optimizers"):
    raise _missing(f"{_PREFIX}.core.optimizer._configure_optimizers")
for _name in ("_make_step_fn", "_make_backward_fn", "_training_step", "_optimizer_zero_grad"):
    if not hasattr(_AutomaticOptimization, _name):
        raise _missing(f"_AutomaticOptimization.{_name}")
if "_current_fx_name" not in vars(pl.LightningModule()):
    raise _missing(f"{_PREFIX}.LightningModule._current_fx_name")

#: Lightning's helpers that 1.x loop code imported from ``loops.utilities`` (``alkit.loops.utilities`` re-exports them)
block_parallel_sync_behavior = _lightning_utilities._block_parallel_sync_behavior
is_max_limit_reached = _lightning_utilities._is_max_limit_reached
reset_progress = _lightning_utilities._reset_progress


def should_accumulate(trainer: Any) -> bool:
    """Whether the current batch only accumulates gradients (Lightning's ``fit_loop._should_accumulate()``)."""
    return trainer.fit_loop._should_accumulate()


@contextlib.contextmanager
def current_hook(module: Any, name: str) -> Iterator[None]:
    """Run the block as if Lightning were calling the module's hook ``name`` (``self.log`` checks and names by it).

    A generator ``training_step`` (``YieldLoop``) runs its body on each ``next()``, outside Lightning's own call.
    """
    previous = module._current_fx_name
    module._current_fx_name = name
    try:
        yield
    finally:
        module._current_fx_name = previous


@contextlib.contextmanager
def optimizer_configuration_filter(transform: Callable[[Any], Any]) -> Iterator[None]:
    """While in the block, Lightning parses ``transform(output)`` of ``configure_optimizers`` instead of the output.

    Lightning 2 drops keys of the optimizer dicts it does not know (1.x's ``"frequency"``) with a warning; alkit reads
    them first (``alkit.loops.utilities.recording_optimizer_frequencies``).
    """
    original = _optimizer_module._configure_optimizers
    if getattr(original, "alkit_transform", None) is transform:
        yield  # already filtering with it (a nested block): applying it twice would lose what it took out
        return

    def configure(optim_conf: Any) -> Any:
        return original(transform(optim_conf))

    configure.alkit_transform = transform  # type: ignore[attr-defined]
    _optimizer_module._configure_optimizers = configure
    try:
        yield
    finally:
        _optimizer_module._configure_optimizers = original


# ---------------------------------------------------------------------------------------------------------------------
# --- evaluation ---
# alkit's EvaluationLoop and PredictionLoop are Lightning's loops run as 1.x dataloader loops: the batches go through
# a per-dataloader epoch loop, which calls Lightning's own per-batch step. The private attributes and methods they
# inherit and use, checked here at import like everything above.
# ---------------------------------------------------------------------------------------------------------------------
#: instance attributes of Lightning's ``_EvaluationLoop`` alkit's ``EvaluationLoop`` reads while it runs
EVALUATION_LOOP_RUN_ATTRIBUTES = ("_data_fetcher", "_combined_loader")
#: instance attributes of Lightning's ``_PredictionLoop`` alkit's ``PredictionLoop`` reads while it runs
PREDICTION_LOOP_RUN_ATTRIBUTES = ("_data_fetcher", "_combined_loader")
_EVALUATION_METHODS = {
    _EvaluationLoop: (
        "_is_sequential",
        "_evaluation_step",
        "_store_dataloader_outputs",
        "num_dataloaders",
        "max_batches",
        "reset",
        "on_run_start",
        "on_run_end",
        "teardown",
    ),
    _PredictionLoop: ("_predict_step", "num_dataloaders", "reset", "on_run_start", "on_run_end", "teardown"),
}


def _check_evaluation_attributes() -> None:
    states = pl.trainer.states
    evaluation = _EvaluationLoop(None, states.TrainerFn.VALIDATING, states.RunningStage.VALIDATING)  # type: ignore[arg-type]
    prediction = _PredictionLoop(None)  # type: ignore[arg-type]
    for loop, names in (
        (evaluation, EVALUATION_LOOP_RUN_ATTRIBUTES),
        (prediction, PREDICTION_LOOP_RUN_ATTRIBUTES),
    ):
        for name in names:
            if name not in vars(loop):
                raise _missing(f"{type(loop).__name__}.{name}")
    for cls, names in _EVALUATION_METHODS.items():
        for name in names:
            if not hasattr(cls, name):
                raise _missing(f"{cls.__name__}.{name}")


_check_evaluation_attributes()


# ---------------------------------------------------------------------------------------------------------------------
# --- loop wiring (replace / stand-in) ---
# ``Loop.replace`` builds a fresh loop in place of another: what Lightning's connectors set on the replaced loop (its
# data source and loaded data) moves across, its own progress does not. A loop that takes the FitLoop's place without
# being one (a research loop wrapping it, a loop written from scratch) answers Lightning's reads and writes of
# ``trainer.fit_loop.<name>`` with the FitLoop it wraps, for the names listed here and no others.
# ---------------------------------------------------------------------------------------------------------------------
#: what Lightning reads or writes on ``trainer.fit_loop`` that a stand-in answers with the FitLoop it wraps
FIT_LOOP_STAND_IN_ATTRIBUTES: tuple[str, ...] = (
    "epoch_loop",
    "epoch_progress",
    "min_epochs",
    "max_epochs",
    "min_steps",
    "max_steps",
    "max_batches",
    "batch_idx",
    "total_batch_idx",
    "setup_data",
    "_should_accumulate",
    "_can_stop_early",
    "_skip_backward",
    "_data_source",
    "_combined_loader",
) + (("is_resuming",) if hasattr(_FitLoop, "is_resuming") else ())  # read since Lightning 2.5
#: what Lightning reads on ``trainer.fit_loop`` that every loop answers itself: the loop contract (``run``, ``done``,
#: the restart flag, its own state in checkpoints). ``pop`` is ``checkpoint["loops"]["fit_loop"].pop`` (a dict).
FIT_LOOP_OWN_ATTRIBUTES: tuple[str, ...] = ("run", "done", "restarting", "state_dict", "load_state_dict", "pop")


def _check_stand_in_attributes() -> None:
    fit = _FitLoop(None)  # type: ignore[arg-type]
    for name in FIT_LOOP_STAND_IN_ATTRIBUTES:
        if name not in vars(fit) and not hasattr(_FitLoop, name):
            raise _missing(f"_FitLoop.{name}")


_check_stand_in_attributes()


def fit_loop_stand_in_properties(wrapped: Callable[[Any], Any]) -> dict[str, property]:
    """One property per name of ``FIT_LOOP_STAND_IN_ATTRIBUTES``: reads and writes go to ``wrapped(stand_in)``."""

    def forward(name: str) -> property:
        def get(self: Any) -> Any:
            return getattr(wrapped(self), name)

        def set_(self: Any, value: Any) -> None:
            setattr(wrapped(self), name, value)

        return property(get, set_, doc=f"The wrapped FitLoop's ``{name}`` (Lightning uses it on ``trainer.fit_loop``).")

    return {name: forward(name) for name in FIT_LOOP_STAND_IN_ATTRIBUTES}


def _wiring_attributes(loop: Any) -> tuple[str, ...]:
    if isinstance(loop, _FitLoop):
        return FIT_LOOP_ATTRIBUTES
    if isinstance(loop, _EvaluationLoop):
        return EVALUATION_LOOP_ATTRIBUTES
    return ()  # prediction loops are never children, so never replaced


def carry_wiring(old: Any, new: Any) -> None:
    """Give ``new`` what Lightning's connectors set on ``old`` (data source, loaded data, evaluation role).

    Only between loops of the same Lightning kind (fit, evaluation); progress is not wiring.
    """
    names = _wiring_attributes(old)
    if names and names == _wiring_attributes(new):
        for name in names:
            setattr(new, name, getattr(old, name))


def drop_loaded_data(loop: Any) -> None:
    """Forget the dataloaders ``loop`` has set up (its next ``setup_data()`` requests them again)."""
    fetcher = getattr(loop, "_data_fetcher", None)
    if fetcher is not None:
        fetcher.teardown()
        loop._data_fetcher = None
    loop._combined_loader = None


def has_data_source(loop: Any) -> bool:
    """Whether a dataloader source (dataloaders, module or datamodule) is attached to ``loop``."""
    return loop._data_source.is_defined()
