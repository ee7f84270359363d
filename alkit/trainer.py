"""``alkit.Trainer``: a ``pytorch_lightning.Trainer`` whose loops are public, assignable alkit loops.

With its default loops it behaves exactly like ``pytorch_lightning.Trainer`` (same hooks, metrics and weights; the
parity tests check it). What it adds:

- ``fit_loop``, ``validate_loop``, ``test_loop`` and ``predict_loop`` may be assigned any loop; the loop is attached
  (with all its children) and used by ``fit``/``validate``/``test``/``predict``.
- automatic optimization with several optimizers (Lightning 1.x behaviour, removed in 2.0), driven by
  :class:`~alkit.loops.OptimizerLoop`.
- ``finetune(model, datamodule, strategy=...)``, the Flash-style entry point for transfer learning.
- Lightning 1.x's ``reset_train_dataloader()`` & co., and a loop written from scratch as ``fit_loop`` finds
  ``trainer.train_dataloader``/``val_dataloaders`` ready, as Lightning 1.5 had them before running the fit loop.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import Iterator
from typing import Any

from alkit import _seam
from alkit._checkpoint import check_checkpoint
from alkit._seam import _FitLoop, _Loop
from alkit.lightning import check_namespace, pl
from alkit.loops.evaluation_loop import EvaluationLoop
from alkit.loops.fit_loop import FitLoop
from alkit.loops.loop import Loop
from alkit.loops.prediction_loop import PredictionLoop
from alkit.loops.utilities import optimizer_frequencies, recording_optimizer_frequencies

TrainerFn = pl.trainer.states.TrainerFn
RunningStage = pl.trainer.states.RunningStage

__all__ = ["Trainer"]

_LOOP_ATTRIBUTES = ("fit_loop", "validate_loop", "test_loop", "predict_loop")
_EVALUATION_ROLES = {
    "validate_loop": (TrainerFn.VALIDATING, RunningStage.VALIDATING),
    "test_loop": (TrainerFn.TESTING, RunningStage.TESTING),
}


#: Lightning's own `Trainer._active_loop` getter, called directly (no extra call layer on a per-batch path)
_lightning_active_loop = _seam.active_loop_getter()


class Trainer(pl.Trainer):
    """A Lightning ``Trainer`` with the Lightning 1.x loop API: assign ``trainer.fit_loop = MyLoop()``.

    Takes exactly ``pytorch_lightning.Trainer``'s arguments.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for argument in ("callbacks", "logger", "plugins", "strategy", "profiler"):
            check_namespace(kwargs.get(argument), argument)
        super().__init__(*args, **kwargs)
        lightning_fit_loop = self.fit_loop
        # The Trainer's limit flags, as Lightning stored them in its loops (`None`: not given; Lightning resolves
        # them when `fit` starts). A loop attached without limits of its own takes these (see `alkit.loops.Loop`).
        self._alkit_loop_limits = {
            "min_epochs": lightning_fit_loop.min_epochs,
            "max_epochs": lightning_fit_loop.max_epochs,
            "min_steps": lightning_fit_loop.epoch_loop.min_steps,
            "max_steps": lightning_fit_loop.epoch_loop.max_steps,
        }
        self.fit_loop = FitLoop()
        self.validate_loop = EvaluationLoop(inference_mode=self.validate_loop.inference_mode)
        self.test_loop = EvaluationLoop(inference_mode=self.test_loop.inference_mode)
        self.predict_loop = PredictionLoop(inference_mode=self.predict_loop.inference_mode)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LOOP_ATTRIBUTES:
            value = self._attach_loop(name, value)
        super().__setattr__(name, value)
        if name == "fit_loop":
            # Lightning dispatches on the active loop's type (`_FitLoop`, ...) several times per batch. A loop
            # standing in for the FitLoop needs an `_active_loop` that answers with the FitLoop it wraps; a trainer
            # with a FitLoop keeps Lightning's own (no extra call per read): the class follows what is assigned.
            # (Changing the class makes CPython keep a dictionary for the instance; a Trainer has one anyway.)
            base = type(self).__dict__.get("_alkit_base_class", type(self))
            wanted = base if isinstance(value, _FitLoop) else _stand_in_trainer_class(base)
            if type(self) is not wanted:
                object.__setattr__(self, "__class__", wanted)

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
            # (data sources, progress, the validation loop) are answered by its own `fit_loop` child when it has
            # one (1.x research loops: `loop.connect(trainer.fit_loop)`), else by the FitLoop it replaces.
            own = loop.__dict__.get("fit_loop")
            target = own if isinstance(own, _FitLoop) else self._fit_loop_doing_the_work()
            if target is not None:
                loop.stand_in_for(target)
        loop.trainer = self
        return loop

    def _fit_loop_doing_the_work(self) -> Any:
        """The FitLoop that trains: ``fit_loop`` itself, or the one a loop standing in for it wraps."""
        loop = self.__dict__.get("fit_loop")
        while loop is not None and not isinstance(loop, _FitLoop):
            loop = loop.stands_in_for if isinstance(loop, Loop) else None
        return loop

    # ----------------------------------------------------------------------------------------------------------------
    # data
    # ----------------------------------------------------------------------------------------------------------------
    @property
    def train_dataloader(self) -> Any:
        """The training dataloader(s) of ``fit``.

        A loop standing in for the FitLoop (written from scratch, or a research loop) finds them ready whenever it
        reads them during ``fit``, as Lightning 1.5 set them up before running the fit loop: the first read sets
        them up (Lightning's own FitLoop sets them up when it starts).
        """
        loaders = super().train_dataloader
        if loaders is None:
            fit_loop = self._stood_in_fit_loop()
            if fit_loop is not None:
                with _in_stage(self, RunningStage.TRAINING):
                    fit_loop.setup_data()
                loaders = super().train_dataloader
        return loaders

    @property
    def val_dataloaders(self) -> Any:
        """The validation dataloader(s) of ``fit`` or ``validate`` (set up on first read, as ``train_dataloader``)."""
        loaders = super().val_dataloaders
        if loaders is None:
            fit_loop = self._stood_in_fit_loop()
            if fit_loop is not None:
                with _in_stage(self, RunningStage.VALIDATING):
                    fit_loop.epoch_loop.val_loop.setup_data()
                loaders = super().val_dataloaders
        return loaders

    def _stood_in_fit_loop(self) -> Any:
        """While fitting with a loop that stands in for the FitLoop: the FitLoop it wraps (else ``None``)."""
        loop = self.__dict__.get("fit_loop")
        if isinstance(loop, _FitLoop) or self.state.fn != TrainerFn.FITTING or self.lightning_module is None:
            return None
        return self._fit_loop_doing_the_work()

    def reset_train_dataloader(self, model: pl.LightningModule | None = None) -> None:
        """Load the training dataloaders again now (Lightning 1.x), e.g. after a k-fold loop changed the fold."""
        self._check_reset(model, "reset_train_dataloader")
        fit_loop = self._fit_loop_doing_the_work()
        _seam.drop_loaded_data(fit_loop)
        with _in_stage(self, RunningStage.TRAINING):
            fit_loop.setup_data()

    def reset_val_dataloader(self, model: pl.LightningModule | None = None) -> None:
        """Load the validation dataloaders again now (those of ``validate`` while validating, else of ``fit``)."""
        self._check_reset(model, "reset_val_dataloader")
        if self.state.fn == TrainerFn.VALIDATING:
            loop = self.validate_loop
        else:
            loop = self._fit_loop_doing_the_work().epoch_loop.val_loop
        _seam.drop_loaded_data(loop)
        with _in_stage(self, RunningStage.VALIDATING):
            loop.setup_data()

    def reset_test_dataloader(self, model: pl.LightningModule | None = None) -> None:
        """Load the test dataloaders again now (Lightning 1.x)."""
        self._check_reset(model, "reset_test_dataloader")
        _seam.drop_loaded_data(self.test_loop)
        with _in_stage(self, RunningStage.TESTING):
            self.test_loop.setup_data()

    def reset_predict_dataloader(self, model: pl.LightningModule | None = None) -> None:
        """Load the predict dataloaders again now (Lightning 1.x)."""
        self._check_reset(model, "reset_predict_dataloader")
        _seam.drop_loaded_data(self.predict_loop)
        with _in_stage(self, RunningStage.PREDICTING):
            self.predict_loop.setup_data()

    def reset_train_val_dataloaders(self, model: pl.LightningModule | None = None) -> None:
        """Load the training and validation dataloaders again now (Lightning 1.x)."""
        self.reset_train_dataloader(model)
        self.reset_val_dataloader(model)

    def _check_reset(self, model: pl.LightningModule | None, method: str) -> None:
        if self.lightning_module is None:
            raise RuntimeError(
                f"`trainer.{method}()` loads the dataloaders of the running `fit`/`validate`/`test`/`predict`: call it"
                " from a loop or hook while one runs (Lightning 2 takes the data from the module or datamodule given"
                " to that call)."
            )
        if model is not None and model is not self.lightning_module:
            raise ValueError(
                f"`trainer.{method}(model)`: `model` must be the module the trainer is running"
                f" ({type(self.lightning_module).__name__}), got another {type(model).__name__}."
            )

    # ----------------------------------------------------------------------------------------------------------------
    # running
    # ----------------------------------------------------------------------------------------------------------------
    def fit(self, model: pl.LightningModule, *args: Any, **kwargs: Any) -> None:
        self._prepare_run(model, args, kwargs, ckpt_path_position=3)
        return super().fit(model, *args, **kwargs)

    def validate(self, model: pl.LightningModule | None = None, *args: Any, **kwargs: Any) -> Any:
        self._prepare_run(model, args, kwargs, ckpt_path_position=1)
        return super().validate(model, *args, **kwargs)

    def test(self, model: pl.LightningModule | None = None, *args: Any, **kwargs: Any) -> Any:
        self._prepare_run(model, args, kwargs, ckpt_path_position=1)
        return super().test(model, *args, **kwargs)

    def predict(self, model: pl.LightningModule | None = None, *args: Any, **kwargs: Any) -> Any:
        self._prepare_run(model, args, kwargs, ckpt_path_position=3)
        return super().predict(model, *args, **kwargs)

    def _prepare_run(self, model: Any, args: tuple, kwargs: dict, ckpt_path_position: int) -> None:
        """Before ``fit``/``validate``/``test``/``predict``: refuse bad arguments, then attach the loop trees.

        Every loop in this trainer's loop trees gets the trainer here, as Lightning 1.x did when the Trainer ran: a
        loop connected to an attached loop is attached now, not when it was connected (1.x's order: reading its
        ``trainer`` in between is the "not attached" error), and takes the Trainer's limits it was not built with.
        """
        _check_run_arguments(model, args, kwargs)
        in_args = len(args) > ckpt_path_position
        _check_ckpt_path(args[ckpt_path_position] if in_args else kwargs.get("ckpt_path"))
        for name in _LOOP_ATTRIBUTES:
            loop = self.__dict__.get(name)
            if isinstance(loop, Loop):
                loop.trainer = self

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        with _seam.multiple_optimizers_validator(_validate_optimizers), recording_optimizer_frequencies():
            return super()._run(*args, **kwargs)

    @property
    def optimizer_frequencies(self) -> list[int]:
        """The ``"frequency"`` of each optimizer from ``configure_optimizers`` (Lightning 1.x); ``[]`` without."""
        return optimizer_frequencies(self.optimizers)

    # Lightning 1.x loop code dispatches hooks through these Trainer methods (Lightning 2 moved them to
    # `trainer.call`); they keep such loops running unchanged.
    def _call_lightning_module_hook(self, hook_name: str, *args: Any, pl_module: Any = None, **kwargs: Any) -> Any:
        module = pl_module or self.lightning_module
        if not callable(getattr(module, hook_name, None)):
            return None  # a hook Lightning 2 removed (`training_step_end`, ...): nothing to call
        return _seam.call_module_hook(self, hook_name, *args, pl_module=pl_module, **kwargs)

    def _call_strategy_hook(self, hook_name: str, *args: Any, **kwargs: Any) -> Any:
        if not callable(getattr(self.strategy, hook_name, None)):
            # a `*_step_end` hook Lightning 2 removed: 1.x returned the step output through it unchanged
            return args[0] if hook_name.endswith("_step_end") and args else None
        return _seam.call_strategy_hook(self, hook_name, *args, **kwargs)

    def _call_callback_hooks(self, hook_name: str, *args: Any, **kwargs: Any) -> None:
        _seam.call_callback_hooks(self, hook_name, *args, **kwargs)

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


def _stand_in_active_loop(trainer: Trainer) -> Any:
    """``trainer._active_loop`` when ``fit_loop`` stands in for a FitLoop: the FitLoop doing the training.

    Lightning's logger connector and tuner dispatch on the active loop's type (``_FitLoop``, ...).
    """
    loop = _lightning_active_loop(trainer)
    while loop is not None and "_delegate" in loop.__dict__ and not isinstance(loop, _FitLoop):
        loop = loop.__dict__["_delegate"][0]
    return loop


@functools.cache
def _stand_in_trainer_class(base: type) -> type:
    """``base`` (``alkit.Trainer`` or a subclass) with the ``_active_loop`` of a trainer whose fit loop stands in.

    Same name, module and behaviour otherwise; instances pickle and copy as this class again (``ddp_spawn``).
    """
    return type(
        base.__name__,
        (base,),
        {
            "__module__": base.__module__,
            "__qualname__": base.__qualname__,
            "__doc__": base.__doc__,
            "_alkit_base_class": base,
            "_active_loop": property(_stand_in_active_loop),
            "__reduce_ex__": _reduce_stand_in_trainer,
        },
    )


def _reduce_stand_in_trainer(trainer: Trainer, protocol: int) -> tuple:
    # the class is built at run time, so it is pickled as its base (by name) and rebuilt on loading
    return _new_stand_in_trainer, (type(trainer)._alkit_base_class,), trainer.__getstate__()


def _new_stand_in_trainer(base: type) -> Trainer:
    cls = _stand_in_trainer_class(base)
    return cls.__new__(cls)


@contextlib.contextmanager
def _in_stage(trainer: pl.Trainer, stage: RunningStage) -> Iterator[None]:
    """Run the block in ``stage`` (Lightning's data set-up reads it: limits, hook names), then restore the stage."""
    previous = trainer.state.stage
    trainer.state.stage = stage
    try:
        yield
    finally:
        trainer.state.stage = previous


def _check_run_arguments(model: Any, args: tuple, kwargs: dict) -> None:
    """Refuse a model or datamodule of the other Lightning namespace before Lightning's generic type error."""
    check_namespace(model, "model")
    check_namespace(kwargs.get("datamodule"), "datamodule")
    for value in args:  # a datamodule may also come positionally, in place of the dataloaders
        check_namespace(value, "datamodule" if hasattr(value, "setup") else "dataloaders")


def _check_ckpt_path(ckpt_path: Any) -> None:
    """A local checkpoint file to resume or evaluate from is read with ``weights_only=True`` first, whatever Lightning
    does.

    Lightning 2.4 and 2.5 load it with ``torch.load(weights_only=False)``, so a pickle naming code would run it; 2.6
    takes ``weights_only`` in ``fit`` (default: torch's, ``True`` since torch 2.6).
    Lightning's special values (``"last"``, ``"best"``, ``"hpc"``, ``"registry..."``) and URLs are left to Lightning.
    """
    if ckpt_path is None or not isinstance(ckpt_path, (str, os.PathLike)):
        return
    text = os.fspath(ckpt_path)
    if text in ("last", "best", "hpc") or text.startswith("registry") or "://" in text:
        return
    check_checkpoint(text, "ckpt_path")


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


# The Trainer's arguments as Lightning declares them: `PL_TRAINER_<FLAG>` environment defaults, argument parsers and
# `help(alkit.Trainer)` read them from this signature (alkit's `__init__` forwards `*args, **kwargs`).
Trainer.__init__.__signature__ = inspect.signature(pl.Trainer.__init__)  # type: ignore[attr-defined]
