"""Finetuning strategies for models with a ``backbone`` submodule, as Lightning ``BaseFinetuning`` callbacks.

Usable with any Trainer::

    trainer = pl.Trainer(callbacks=[make_finetuning_callback("freeze")])
    trainer.fit(model, datamodule)

Strategies (the names Flash users know):

- ``"freeze"``: the backbone never trains; its BatchNorm layers stay in eval mode, so their running statistics keep
  the pretrained values and training normalises exactly as inference does.
- ``"no_freeze"``: everything trains (a backbone frozen by an earlier run is made trainable again).
- ``("freeze_unfreeze", epoch)``: frozen for epochs ``0 .. epoch-1``; from ``epoch`` on the backbone trains, added
  to the optimizer as a new parameter group with a tenth of the head's learning rate.
- ``("unfreeze_milestones", ((e1, e2), num_layers))``: frozen until ``e1``; the last ``num_layers`` parametrised
  layers of the backbone train from ``e1``, the rest from ``e2``.

A frozen parameter has ``requires_grad=False`` and so never gets a gradient: optimizers skip it even when a research
loop rebuilds them mid-fit, and models that build their optimizer from ``requires_grad`` parameters (as
``ImageClassifier`` does) leave it out altogether. Epochs are ``trainer.current_epoch``, which keeps increasing across
the fit segments of the k-fold and active-learning loops.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from alkit.lightning import pl

__all__ = [
    "STRATEGIES",
    "FreezeBackbone",
    "FreezeUnfreeze",
    "NoFreeze",
    "UnfreezeMilestones",
    "make_finetuning_callback",
]

STRATEGIES = ("freeze", "no_freeze", "freeze_unfreeze", "unfreeze_milestones")
_ACCEPTED = (
    '"freeze", "no_freeze", ("freeze_unfreeze", epoch), ("unfreeze_milestones", ((e1, e2), num_layers)) '
    "or a pytorch_lightning.callbacks.BaseFinetuning instance"
)


def _backbone(pl_module: pl.LightningModule) -> nn.Module:
    backbone = getattr(pl_module, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise AttributeError(
            f"finetuning strategies need a model with a `backbone` submodule (the part to freeze); "
            f"{type(pl_module).__name__}.backbone is {backbone!r}"
        )
    return backbone


def _parametrised_layers(module: nn.Module) -> list[nn.Module]:
    """Leaf-most modules owning parameters, in definition order (ReLUs and pools are not layers here)."""
    modules = pl.callbacks.BaseFinetuning.flatten_modules(module)
    return [m for m in modules if any(True for _ in m.parameters(recurse=False))]


class _BackboneFinetuning(pl.callbacks.BaseFinetuning):
    """Common mechanics: freeze with BatchNorm in eval mode, unfreeze into the optimizer by parameter identity."""

    #: the unfrozen backbone's learning rate is the first parameter group's divided by this
    backbone_lr_divisor: float = 10.0

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        self.freeze(_backbone(pl_module), train_bn=False)

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        """Nothing to change by default: the frozen part stays frozen."""

    # Lightning's own BatchNorm handling only stops running-stat updates (track_running_stats=False) while the layer
    # still normalises with batch statistics in train mode. A frozen feature extractor should normalise with its
    # pretrained statistics, as at inference: so frozen BatchNorm layers are put in eval mode before every batch
    # (the trainer, a research loop or the user may have called model.train() since).
    @staticmethod
    def _frozen_batchnorms(pl_module: pl.LightningModule) -> list[_BatchNorm]:
        return [
            m
            for m in _backbone(pl_module).modules()
            if isinstance(m, _BatchNorm) and not m.track_running_stats and m.running_mean is not None
        ]

    def _set_frozen_batchnorm_eval(self, pl_module: pl.LightningModule) -> None:
        for module in self._frozen_batchnorms(pl_module):
            module.eval()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._set_frozen_batchnorm_eval(pl_module)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int):
        self._set_frozen_batchnorm_eval(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Leave the module tree in one mode, as Lightning expects at the start of the next fit.
        for module in self._frozen_batchnorms(pl_module):
            module.train(pl_module.training)

    def unfreeze_into_optimizer(self, pl_module: pl.LightningModule, modules: Iterable[nn.Module], optimizer) -> None:
        """Make ``modules`` trainable and add their parameters that ``optimizer`` lacks as a new group.

        Membership is by identity; Lightning's ``filter_on_optimizer`` compares values with ``torch.equal`` and so
        drops a parameter whose values happen to equal another one's (freshly initialised BatchNorm weights are all
        ones). Running again is a no-op, so a resumed or rebuilt optimizer never gets a parameter twice.
        """
        modules = self.flatten_modules(list(modules))
        self.make_trainable(modules)
        for module in modules:
            if isinstance(module, _BatchNorm):  # back to the model's mode: it was held in eval while frozen
                module.train(pl_module.training)
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        new = [p for p in self.filter_params(modules, train_bn=True, requires_grad=True) if id(p) not in in_optimizer]
        if new:
            lr = optimizer.param_groups[0]["lr"] / self.backbone_lr_divisor
            optimizer.add_param_group({"params": new, "lr": lr})


class FreezeBackbone(_BackboneFinetuning):
    """``"freeze"``: the backbone is a fixed feature extractor for the whole fit."""


class NoFreeze(_BackboneFinetuning):
    """``"no_freeze"``: the whole model trains."""

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        self.make_trainable(_backbone(pl_module))


class FreezeUnfreeze(_BackboneFinetuning):
    """``("freeze_unfreeze", unfreeze_epoch)``: backbone frozen before ``unfreeze_epoch``, trained from it on."""

    def __init__(self, unfreeze_epoch: int) -> None:
        super().__init__()
        self.unfreeze_epoch = unfreeze_epoch

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        # ">=" rather than "==": a fit resumed past the unfreeze epoch must still find the backbone trainable.
        if epoch >= self.unfreeze_epoch:
            self.unfreeze_into_optimizer(pl_module, [_backbone(pl_module)], optimizer)


class UnfreezeMilestones(_BackboneFinetuning):
    """``("unfreeze_milestones", ((e1, e2), num_layers))``: last ``num_layers`` layers from ``e1``, all from ``e2``."""

    def __init__(self, milestones: tuple[int, int], num_layers: int) -> None:
        super().__init__()
        self.milestones = tuple(milestones)
        self.num_layers = num_layers

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        layers = _parametrised_layers(_backbone(pl_module))
        first, second = self.milestones
        if epoch >= second:
            self.unfreeze_into_optimizer(pl_module, layers, optimizer)
        elif epoch >= first:
            self.unfreeze_into_optimizer(pl_module, layers[-self.num_layers :], optimizer)


def _is_epoch(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def make_finetuning_callback(strategy: Any = "freeze") -> pl.callbacks.BaseFinetuning:
    """The ``BaseFinetuning`` callback for ``strategy`` (see the module docstring); errors list accepted values."""
    if isinstance(strategy, pl.callbacks.BaseFinetuning):
        return strategy
    if isinstance(strategy, str):
        if strategy == "freeze":
            return FreezeBackbone()
        if strategy == "no_freeze":
            return NoFreeze()
        if strategy in ("freeze_unfreeze", "unfreeze_milestones"):
            raise ValueError(
                f"strategy={strategy!r} needs its schedule: pass ('freeze_unfreeze', epoch) or "
                f"('unfreeze_milestones', ((e1, e2), num_layers)); accepted: {_ACCEPTED}"
            )
        raise ValueError(f"strategy={strategy!r} is not a finetuning strategy; accepted: {_ACCEPTED}")
    if isinstance(strategy, (tuple, list)) and len(strategy) == 2 and isinstance(strategy[0], str):
        name, schedule = strategy
        if name == "freeze_unfreeze":
            if not _is_epoch(schedule):
                raise ValueError(f"strategy={strategy!r}: the unfreeze epoch must be an integer >= 0, got {schedule!r}")
            return FreezeUnfreeze(schedule)
        if name == "unfreeze_milestones":
            try:
                (first, second), num_layers = schedule
            except (TypeError, ValueError):
                first = second = num_layers = None
            if not (_is_epoch(first) and _is_epoch(second) and first <= second and _is_epoch(num_layers)):
                raise ValueError(
                    f"strategy={strategy!r}: expected ('unfreeze_milestones', ((e1, e2), num_layers)) with integers "
                    f"0 <= e1 <= e2 and num_layers >= 1, got {schedule!r}"
                )
            if num_layers < 1:
                raise ValueError(f"strategy={strategy!r}: num_layers must be >= 1, got {num_layers}")
            return UnfreezeMilestones((first, second), num_layers)
        if name in ("freeze", "no_freeze"):
            raise ValueError(f"strategy {name!r} takes no schedule; pass the string {name!r}. Accepted: {_ACCEPTED}")
    raise ValueError(f"strategy={strategy!r} is not a finetuning strategy; accepted: {_ACCEPTED}")
