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

from typing import Any

from alkit import _seam
from alkit._seam import _FitLoop, _Loop
from alkit.lightning import check_namespace, pl
from alkit.loops.evaluation_loop import EvaluationLoop
from alkit.loops.fit_loop import FitLoop
from alkit.loops.loop import Loop
from alkit.loops.prediction_loop import PredictionLoop
from alkit.loops.training_epoch_loop import TrainingEpochLoop

TrainerFn = pl.trainer.states.TrainerFn
RunningStage = pl.trainer.states.RunningStage

__all__ = ["Trainer"]

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
        for argument in ("callbacks", "logger", "plugins", "strategy", "profiler"):
            check_namespace(kwargs.get(argument), argument)
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
        loop = _seam.active_loop(self)
        while loop is not None and "_delegate" in loop.__dict__ and not isinstance(loop, _FitLoop):
            loop = loop.__dict__["_delegate"][0]
        return loop

    # ----------------------------------------------------------------------------------------------------------------
    # running
    # ----------------------------------------------------------------------------------------------------------------
    def fit(self, model: pl.LightningModule, *args: Any, **kwargs: Any) -> None:
        _check_run_arguments(model, args, kwargs)
        return super().fit(model, *args, **kwargs)

    def validate(self, model: pl.LightningModule | None = None, *args: Any, **kwargs: Any) -> Any:
        _check_run_arguments(model, args, kwargs)
        return super().validate(model, *args, **kwargs)

    def test(self, model: pl.LightningModule | None = None, *args: Any, **kwargs: Any) -> Any:
        _check_run_arguments(model, args, kwargs)
        return super().test(model, *args, **kwargs)

    def predict(self, model: pl.LightningModule | None = None, *args: Any, **kwargs: Any) -> Any:
        _check_run_arguments(model, args, kwargs)
        return super().predict(model, *args, **kwargs)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        with _seam.multiple_optimizers_validator(_validate_optimizers):
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


def _check_run_arguments(model: Any, args: tuple, kwargs: dict) -> None:
    """Refuse a model or datamodule of the other Lightning namespace before Lightning's generic type error."""
    check_namespace(model, "model")
    check_namespace(kwargs.get("datamodule"), "datamodule")
    for value in args:  # a datamodule may also come positionally, in place of the dataloaders
        check_namespace(value, "datamodule" if hasattr(value, "setup") else "dataloaders")


def _validate_optimizers(optimizers: list, model: pl.LightningModule) -> None:
    """Lightning's set-up check, relaxed to let automatic optimization have several optimizers (1.x behaviour).

    The one shape that stays an error is a required ``optimizer_idx`` argument with a single optimizer.
    """
    if not model.automatic_optimization:
        return _validate_optimizers.lightning(optimizers, model)  # type: ignore[attr-defined]
    if len(optimizers) == 1 and _requires_optimizer_idx(model.training_step):
        raise ValueError(
            f"`{type(model).__name__}.training_step` requires `optimizer_idx`, but `configure_optimizers` returned"
            " a single optimizer. Give `optimizer_idx` a default (`optimizer_idx=0`), remove it, or return one"
            " optimizer per index."
        )
    return None


def _requires_optimizer_idx(training_step: Any) -> bool:
    """Whether ``training_step`` has an ``optimizer_idx`` parameter without a default."""
    import inspect

    parameter = inspect.signature(training_step).parameters.get("optimizer_idx")
    return parameter is not None and parameter.default is inspect.Parameter.empty
