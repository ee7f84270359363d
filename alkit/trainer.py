"""``alkit.Trainer``: a ``pytorch_lightning.Trainer`` whose loops are public, assignable alkit loops.

With its default loops it behaves exactly like ``pytorch_lightning.Trainer`` (same hooks, metrics and weights; the
parity tests check it). What it adds:

- ``fit_loop``, ``validate_loop``, ``test_loop`` and ``predict_loop`` may be assigned any loop; the loop is attached
  (with all its children) and used by ``fit``/``validate``/``test``/``predict``.
- automatic optimization with several optimizers (Lightning 1.x behaviour, removed in 2.0), driven by
  :class:`~alkit.loops.OptimizerLoop`.
- ``finetune(model, datamodule, strategy=...)``, the Flash-style entry point for transfer learning.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.core import optimizer as pl_optimizer
from pytorch_lightning.loops.fit_loop import _FitLoop
from pytorch_lightning.loops.loop import _Loop
from pytorch_lightning.trainer.states import RunningStage, TrainerFn
from pytorch_lightning.utilities.signature_utils import is_param_in_hook_signature

from alkit.loops.evaluation_loop import EvaluationLoop
from alkit.loops.fit_loop import FitLoop
from alkit.loops.loop import Loop
from alkit.loops.prediction_loop import PredictionLoop
from alkit.loops.training_epoch_loop import TrainingEpochLoop

__all__ = ["Trainer"]

_lightning_active_loop = pl.Trainer._active_loop.fget
_LOOP_ATTRIBUTES = ("fit_loop", "validate_loop", "test_loop", "predict_loop")
_EVALUATION_ROLES = {
    "validate_loop": (TrainerFn.VALIDATING, RunningStage.VALIDATING),
    "test_loop": (TrainerFn.TESTING, RunningStage.TESTING),
}


class Trainer(pl.Trainer):
    """A Lightning ``Trainer`` with the Lightning 1.x loop API: assign ``trainer.fit_loop = MyLoop()``.

    Takes exactly ``pytorch_lightning.Trainer``'s arguments.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lightning_fit_loop = self.fit_loop
        fit_loop = FitLoop(min_epochs=lightning_fit_loop.min_epochs, max_epochs=lightning_fit_loop.max_epochs)
        fit_loop.epoch_loop = TrainingEpochLoop(
            min_steps=lightning_fit_loop.epoch_loop.min_steps, max_steps=lightning_fit_loop.epoch_loop.max_steps
        )
        self.fit_loop = fit_loop
        self.validate_loop = EvaluationLoop(inference_mode=self.validate_loop.inference_mode)
        self.test_loop = EvaluationLoop(inference_mode=self.test_loop.inference_mode)
        self.predict_loop = PredictionLoop(inference_mode=self.predict_loop.inference_mode)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LOOP_ATTRIBUTES:
            value = self._attach_loop(name, value)
        super().__setattr__(name, value)

    def _attach_loop(self, name: str, loop: Any) -> Any:
        """Check that ``loop`` is a loop, give it (and its children) this trainer, and configure its role."""
        if not isinstance(loop, _Loop):
            raise TypeError(
                f"`trainer.{name}` must be a loop (an instance of `alkit.loops.Loop`), got {type(loop).__name__}."
            )
        if not isinstance(loop, Loop):
            return loop  # Lightning's own loops, created with this trainer by `pl.Trainer.__init__`
        if name in _EVALUATION_ROLES and isinstance(loop, EvaluationLoop):
            loop._set_role(*_EVALUATION_ROLES[name])
        if name == "fit_loop" and not isinstance(loop, _FitLoop) and loop.stands_in_for is None:
            # A loop written from scratch takes the FitLoop's place: Lightning's reads of fit-loop internals
            # (data sources, progress, the validation loop) are answered by the FitLoop it replaces.
            current = self.__dict__.get("fit_loop")
            if current is not None:
                loop.stand_in_for(current)
        loop.trainer = self
        return loop

    @property
    def _active_loop(self) -> Any:
        # Lightning's logger connector and tuner dispatch on the active loop's type (`_FitLoop`, ...): a loop standing
        # in for the FitLoop answers with the FitLoop doing the training. Read several times per batch: kept lean.
        loop = _lightning_active_loop(self)
        while loop is not None and "_delegate" in loop.__dict__ and not isinstance(loop, _FitLoop):
            loop = loop.__dict__["_delegate"][0]
        return loop

    # ----------------------------------------------------------------------------------------------------------------
    # running
    # ----------------------------------------------------------------------------------------------------------------
    def _run(self, *args: Any, **kwargs: Any) -> Any:
        with _multiple_optimizers_allowed():
            return super()._run(*args, **kwargs)

    def finetune(
        self,
        model: pl.LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: pl.LightningDataModule | None = None,
        strategy: str | tuple[str, Any] = "freeze",
        ckpt_path: str | None = None,
    ) -> None:
        """Fit ``model`` with a transfer-learning ``strategy`` for its ``backbone`` (Lightning Flash's API).

        Args:
            strategy: ``"freeze"`` (backbone frozen), ``"no_freeze"`` (everything trains),
                ``("freeze_unfreeze", epoch)`` (backbone frozen until ``epoch``), or
                ``("unfreeze_milestones", ((epoch1, epoch2), num_layers))``.
        """
        from alkit.finetuning import make_finetuning_callback

        callback = make_finetuning_callback(strategy)
        self.callbacks = [c for c in self.callbacks if not getattr(c, "_alkit_finetuning", False)]
        callback._alkit_finetuning = True  # type: ignore[attr-defined]
        self.callbacks.append(callback)
        self.fit(model, train_dataloaders, val_dataloaders, datamodule=datamodule, ckpt_path=ckpt_path)


@contextlib.contextmanager
def _multiple_optimizers_allowed() -> Iterator[None]:
    """Let ``configure_optimizers`` return several optimizers under automatic optimization while alkit runs.

    Lightning 2 rejects that at set-up; alkit's ``OptimizerLoop`` steps each optimizer in turn as Lightning 1.x did.
    The one shape that stays an error is an ``optimizer_idx`` argument with a single optimizer.
    """
    original = pl_optimizer._validate_multiple_optimizers_support

    def validate(optimizers: list, model: pl.LightningModule) -> None:
        if not model.automatic_optimization:
            return original(optimizers, model)
        if len(optimizers) == 1 and is_param_in_hook_signature(model.training_step, "optimizer_idx", explicit=True):
            raise ValueError(
                f"`{type(model).__name__}.training_step` takes `optimizer_idx`, but `configure_optimizers` returned"
                " a single optimizer. Remove the `optimizer_idx` argument, or return one optimizer per index."
            )
        return None

    pl_optimizer._validate_multiple_optimizers_support = validate
    try:
        yield
    finally:
        pl_optimizer._validate_multiple_optimizers_support = original
