"""Helpers Lightning 1.x loop code imported from ``pytorch_lightning.loops.utilities``.

Each helper has a public name; the 1.x name is an alias, so ``from pytorch_lightning.loops.utilities import
_get_active_optimizers`` becomes ``from alkit.loops.utilities import _get_active_optimizers`` and nothing else
changes:

- ``_build_training_step_kwargs`` → :func:`build_training_step_kwargs`
- ``_get_active_optimizers`` → :func:`get_active_optimizers`
- ``_block_parallel_sync_behavior`` → :func:`block_parallel_sync_behavior`
- ``_is_max_limit_reached`` → :func:`is_max_limit_reached`
- ``_reset_progress`` → :func:`reset_progress`
- ``check_finite_loss`` → :func:`check_finite_loss`
- ``TrainingEpochLoop._prepare_outputs_training_batch_end`` → :func:`prepare_outputs_training_batch_end`

It also keeps what Lightning 2 no longer parses: the ``"frequency"`` key of the optimizer dicts returned by
``configure_optimizers`` (:func:`recording_optimizer_frequencies`, :func:`optimizer_frequencies`).
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from torch.optim import Optimizer

from alkit import _seam
from alkit.lightning import pl

__all__ = [
    "block_parallel_sync_behavior",
    "build_training_step_kwargs",
    "check_finite_loss",
    "get_active_optimizers",
    "is_max_limit_reached",
    "optimizer_frequencies",
    "prepare_outputs_training_batch_end",
    "recording_optimizer_frequencies",
    "reset_progress",
]

#: ``block_parallel_sync_behavior(strategy, block=True)``: no gradient sync between DDP processes inside the block
block_parallel_sync_behavior = _seam.block_parallel_sync_behavior
#: ``is_max_limit_reached(current, maximum=-1)``: whether ``current`` reached ``maximum`` (``-1``: no limit)
is_max_limit_reached = _seam.is_max_limit_reached
#: ``reset_progress(loop)``: reset every progress tracker of ``loop`` and of its child loops
reset_progress = _seam.reset_progress
#: ``check_finite_loss(loss)``: raise ``ValueError`` if ``loss`` is NaN or infinite
check_finite_loss = pl.loops.utilities.check_finite_loss


# ----------------------------------------------------------------------------------------------------------------------
# which optimizers step on a batch, and with which arguments
# ----------------------------------------------------------------------------------------------------------------------
def get_active_optimizers(
    optimizers: Sequence[Optimizer], frequencies: Sequence[int], batch_idx: int
) -> list[tuple[int, Optimizer]]:
    """The ``(optimizer_idx, optimizer)`` pairs that step on batch ``batch_idx``.

    Without ``frequencies`` every optimizer steps on every batch, in order. With them (the ``"frequency"`` keys of
    ``configure_optimizers``), one optimizer is active at a time: optimizer 0 for ``frequencies[0]`` batches, then
    optimizer 1 for ``frequencies[1]`` batches, and so on, cycling (a WGAN's critic for ``n_critic`` batches, then
    the generator for one). ``batch_idx`` counts within the epoch, as in Lightning 1.x.
    """
    if not frequencies:
        return list(enumerate(optimizers))
    place = batch_idx % sum(frequencies)
    for optimizer_idx, frequency in enumerate(frequencies):
        if place < frequency:
            return [(optimizer_idx, optimizers[optimizer_idx])]
        place -= frequency
    raise AssertionError("unreachable: place < sum(frequencies)")  # pragma: no cover


@functools.lru_cache(maxsize=64)
def _takes_optimizer_idx(training_step: Callable) -> bool:
    # signature inspection costs more than a tiny model's step: once per training_step function
    return pl.utilities.signature_utils.is_param_in_hook_signature(training_step, "optimizer_idx")


def build_training_step_kwargs(
    kwargs: OrderedDict,
    lightning_module: pl.LightningModule,
    optimizers: Sequence[Optimizer],
    opt_idx: int | None,
    hiddens: Any = None,
) -> OrderedDict:
    """The arguments of ``training_step`` for optimizer ``opt_idx``: ``kwargs`` plus ``optimizer_idx`` when needed.

    As in Lightning 1.x, ``optimizer_idx`` is passed only when there are several optimizers; with one, a
    ``training_step(batch, batch_idx, optimizer_idx=0)`` keeps its default. With several optimizers under automatic
    optimization, a ``training_step`` without ``optimizer_idx`` is an error: it could not tell which loss to return.
    ``hiddens`` is accepted for 1.x signatures only: truncated back-propagation through time is gone from Lightning 2.
    """
    if len(optimizers) < 2:
        return kwargs
    training_step = lightning_module.training_step
    if _takes_optimizer_idx(getattr(training_step, "__func__", training_step)):
        if not lightning_module.automatic_optimization:
            raise ValueError(
                "Your `LightningModule.training_step` signature contains an `optimizer_idx` argument, but under manual"
                " optimization the step handles the optimizers itself. Remove the `optimizer_idx` argument or set"
                " `self.automatic_optimization = True`."
            )
        kwargs = OrderedDict(kwargs)
        kwargs["optimizer_idx"] = opt_idx
    elif lightning_module.automatic_optimization and not inspect.isgeneratorfunction(training_step):
        # (a generator step is refused with a pointer to YieldLoop when its output reaches the closure)
        raise ValueError(
            f"Your LightningModule defines {len(optimizers)} optimizers but `training_step` is missing the"
            " `optimizer_idx` argument: it is called once per optimizer and must return that optimizer's loss."
            " Add `optimizer_idx`, or yield one loss per optimizer with `alkit.loops.YieldLoop`."
        )
    return kwargs


# ----------------------------------------------------------------------------------------------------------------------
# the "frequency" key of configure_optimizers
# ----------------------------------------------------------------------------------------------------------------------
#: optimizer -> its "frequency"; weak, so the optimizers of a finished run are not kept alive
_FREQUENCIES: weakref.WeakKeyDictionary[Optimizer, int] = weakref.WeakKeyDictionary()


def _take_frequencies(optim_conf: Any) -> Any:
    """Record the ``"frequency"`` of each optimizer dict and return the configuration without that key."""
    if isinstance(optim_conf, Mapping):
        dicts = [optim_conf]
    elif isinstance(optim_conf, list | tuple) and optim_conf and all(isinstance(d, Mapping) for d in optim_conf):
        dicts = list(optim_conf)
    else:
        for item in optim_conf if isinstance(optim_conf, list | tuple) else [optim_conf]:
            for optimizer in item if isinstance(item, list | tuple) else [item]:
                if isinstance(optimizer, Optimizer):
                    _FREQUENCIES.pop(optimizer, None)  # returned again, now without a frequency
        return optim_conf
    frequencies = [d.get("frequency") for d in dicts]
    if all(f is None for f in frequencies):
        for d in dicts:
            if isinstance(d.get("optimizer"), Optimizer):
                _FREQUENCIES.pop(d["optimizer"], None)
        return optim_conf
    if any(f is None for f in frequencies):
        raise ValueError("A frequency must be given to each optimizer.")  # Lightning 1.x's message
    if any(not isinstance(f, int) or isinstance(f, bool) or f < 0 for f in frequencies) or not sum(frequencies):
        raise ValueError(
            f"The optimizer frequencies must be non-negative integers, not all 0; `configure_optimizers` gave"
            f" {frequencies}."
        )
    for d, frequency in zip(dicts, frequencies, strict=True):
        _FREQUENCIES[d["optimizer"]] = frequency
    stripped = [{key: value for key, value in d.items() if key != "frequency"} for d in dicts]
    return stripped[0] if isinstance(optim_conf, Mapping) else stripped


def recording_optimizer_frequencies() -> AbstractContextManager[None]:
    """A context in which the ``"frequency"`` keys returned by ``configure_optimizers`` are recorded (and removed,
    so that Lightning 2 does not warn about a key it does not know). ``alkit.Trainer`` runs inside it.

    ``configure_optimizers`` may then return, as in Lightning 1.x::

        [{"optimizer": critic_optimizer, "frequency": 5}, {"optimizer": generator_optimizer, "frequency": 1}]

    A frequency must be given to every optimizer or to none.
    """
    return _seam.optimizer_configuration_filter(_take_frequencies)


def optimizer_frequencies(optimizers: Sequence[Optimizer]) -> list[int]:
    """The recorded ``"frequency"`` of each optimizer (1.x's ``trainer.optimizer_frequencies``); ``[]`` without."""
    if len(optimizers) < 2:
        return []  # a single optimizer steps on every batch whatever its frequency
    frequencies = [_FREQUENCIES.get(optimizer) for optimizer in optimizers]
    if any(f is None for f in frequencies):
        return []
    return frequencies  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------------------------
# what on_train_batch_end receives
# ----------------------------------------------------------------------------------------------------------------------
def prepare_outputs_training_batch_end(
    batch_output: list, lightning_module: pl.LightningModule, num_optimizers: int
) -> Any:
    """Turn ``TrainingBatchLoop.run``'s outputs into what ``on_train_batch_end`` receives, as Lightning 1.x did.

    ``batch_output`` is the batch loop's list (one entry per optimization of the batch): under automatic
    optimization each entry maps ``optimizer_idx`` to that optimizer's outputs (``{"loss": ..., **extra}``), and
    an optimizer whose ``training_step`` returned ``None`` (or that was not active) has no entry.

    - one optimizer, or manual optimization: that step's outputs dict (``{}`` when the step was skipped, as in
      Lightning 2);
    - several optimizers: a list of the outputs dicts in optimizer order, skipped optimizers left out (Lightning
      1.x: ``[{"loss": g_loss}, {"loss": d_loss}]``; with ``"frequency"``, only the active optimizer's).
    """
    several = num_optimizers > 1 and lightning_module.automatic_optimization
    if not several:
        if not batch_output:
            return {}
        first = batch_output[0]
        if lightning_module.automatic_optimization:
            return next(iter(first.values()), {})
        return first
    if not batch_output:
        return []
    per_split = [[outputs[i] for i in sorted(outputs)] for outputs in batch_output]
    return per_split[0] if len(per_split) == 1 else per_split


# ----------------------------------------------------------------------------------------------------------------------
# the 1.x names
# ----------------------------------------------------------------------------------------------------------------------
_build_training_step_kwargs = build_training_step_kwargs
_get_active_optimizers = get_active_optimizers
_block_parallel_sync_behavior = block_parallel_sync_behavior
_is_max_limit_reached = is_max_limit_reached
_reset_progress = reset_progress
_prepare_outputs_training_batch_end = prepare_outputs_training_batch_end
