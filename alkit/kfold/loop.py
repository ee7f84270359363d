"""``KFoldLoop``: k-fold cross-validation as a loop standing in for the Trainer's FitLoop.

::

    datamodule.setup_folds(num_folds)
    initial = snapshot(model)
    for fold in range(num_folds):                      # KFoldLoop.advance
        datamodule.setup_fold_index(fold)
        restore(model, initial); reseed(seed + fold)   # every fold starts from the same weights and RNG state
        fit(max_epochs)                                # fresh optimizers, LR schedulers, EarlyStopping/ModelCheckpoint
        validate(held-out fold); test(shared test set)
        save(f"{export_path}/fold_{fold}.ckpt")
    test(EnsembleVotingModel(fold checkpoints))
    restore(model, initial)                            # the fold models live in their checkpoints

Attach it like Lightning's kfold example::

    loop = KFoldLoop(5, export_path="folds/")
    loop.connect(trainer.fit_loop)
    trainer.fit_loop = loop
    trainer.fit(model, datamodule=KFoldDataModule(datamodule))

``Trainer(max_epochs=E)`` is the number of epochs *per fold*. The loop this replaces (Lightning 1.9's
``examples/pl_loops/kfold.py``) rebuilt optimizers while the trainer was in the testing state, where that did
nothing: the learning rate decayed across folds and later folds trained at chance while the ensemble hid it. Here
every fold goes through :meth:`FitWrapperLoop.run_fit`, which rebuilds them in the fitting state, and every fold's own
metrics are reported (:class:`~alkit.kfold.KFoldResult`), not only the ensemble's.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

import torch

from alkit import _seam
from alkit._rng import global_seed, reseed
from alkit.kfold.datamodule import BaseKFoldDataModule, folds_fingerprint
from alkit.kfold.ensemble import EnsembleVotingModel
from alkit.kfold.oof import check_predictions, oof_result_fields, predict_current_fold
from alkit.kfold.result import KFoldResult
from alkit.lightning import pl
from alkit.loops.fit_wrapper import FitWrapperLoop, RunState

__all__ = ["KFoldLoop"]

RESULT_FILENAME = "kfold_result.json"


class KFoldLoop(FitWrapperLoop):
    """Fit, validate and test one model per fold, then test the ensemble of the fold models.

    Args:
        num_folds: number of folds (the datamodule's splitter must produce exactly this many).
        export_path: folder for the fold checkpoints (``fold_<i>.ckpt``) and ``kfold_result.json``; default
            ``<trainer.default_root_dir>/kfold``.
        ensemble: test an :class:`~alkit.kfold.EnsembleVotingModel` of the fold checkpoints at the end (needs test
            data and a model whose ``forward`` returns class logits).
        seed: fold ``i`` starts with the RNGs seeded ``seed + i`` so its result does not depend on the folds before
            it (nor on a resume). ``None``: the seed given to ``seed_everything`` (``PL_GLOBAL_SEED``) if any, else
            no reseeding.
        oof: after each fold, predict its held-out samples with the fold model (out-of-fold predictions in the
            result; needs a :class:`~alkit.kfold.KFoldDataModule`).

    After the run, :attr:`result` holds the :class:`~alkit.kfold.KFoldResult` (rank-zero's copy is also written to
    ``export_path/kfold_result.json``). Fold metrics are logged as ``fold_<i>/<name>``, the ensemble's as
    ``ensemble/<name>``; the progress bar shows ``fold=i/k``.
    """

    checkpoint_kind = "k-fold"
    #: the state of a run: reset when a new run starts, saved in and restored from every checkpoint
    run_state = {
        **FitWrapperLoop.run_state,
        "current_fold": RunState(int, load=lambda loop, saved: int(saved)),
        "result": RunState(lambda: None, saved=False),
        "_records": RunState(
            list,
            save=lambda loop, records: [loop._saved_record(r) for r in records],
            load=lambda loop, saved: [dict(r) for r in saved],
        ),
        "_ensemble_metrics": RunState(lambda: None),
        "_fingerprint": RunState(lambda: None),
        "_base_seed": RunState(lambda: None),
        "_initial_weights": RunState(lambda: None),
    }

    def __init__(
        self,
        num_folds: int,
        export_path: str | os.PathLike | None = None,
        *,
        ensemble: bool = True,
        seed: int | None = None,
        oof: bool = True,
    ) -> None:
        if not isinstance(oof, bool):
            raise TypeError(f"oof={oof!r} is invalid: expected True or False")
        if isinstance(num_folds, bool) or not isinstance(num_folds, numbers.Integral) or num_folds < 2:
            raise ValueError(f"num_folds={num_folds!r} is invalid: expected an int >= 2")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise ValueError(f"seed={seed!r} is invalid: expected an int or None")
        super().__init__()
        # Every attribute is created here, so that reset, checkpoints and the stand-in names never meet a missing one.
        self.num_folds = int(num_folds)
        self.export_path = None if export_path is None else str(export_path)
        self.ensemble = bool(ensemble)
        self.seed = seed
        self.oof = oof
        self._epochs_per_fold: int | None = None
        self._export_dir: str | None = None
        self._checkpoint_base_dirs: list[str | None] = []

    # ------------------------------------------------------------------------------------------------------------
    # wiring
    # ------------------------------------------------------------------------------------------------------------
    def connect(self, fit_loop: Any) -> None:  # type: ignore[override]
        super().connect(fit_loop)
        self._epochs_per_fold = fit_loop.max_epochs  # Trainer(max_epochs=E): E epochs per fold

    @property
    def done(self) -> bool:
        return self.current_fold >= self.num_folds

    # ------------------------------------------------------------------------------------------------------------
    # the run
    # ------------------------------------------------------------------------------------------------------------
    def on_run_start(self, *args: Any, **kwargs: Any) -> None:
        super().on_run_start(*args, **kwargs)
        trainer = self.trainer
        self._check_trainer_settings()
        datamodule = self._datamodule()
        _seam.dispatch_batch_hooks_to_model(trainer)
        datamodule.setup_folds(self.num_folds)
        if self.oof:  # a model whose predictions cannot be placed is refused before the first fold trains
            check_predictions(trainer, datamodule)
        fingerprint = _fingerprint_of(datamodule)
        if self._fingerprint is not None and fingerprint is not None and fingerprint != self._fingerprint:
            raise RuntimeError(
                "the resumed run computes different folds than the interrupted one (fold fingerprint "
                f"{fingerprint} != {self._fingerprint}): use the same data, splitter, groups and seed as before"
            )
        if fingerprint is not None and trainer.world_size > 1:
            reference = trainer.strategy.broadcast(fingerprint, src=0)
            if reference != fingerprint:
                raise RuntimeError(
                    f"rank {trainer.global_rank} computed different folds than rank 0 ({fingerprint} != {reference}): "
                    "the splitter must be deterministic (give it a random_state or pass seed=)"
                )
        self._fingerprint = fingerprint
        if self._initial_weights is None:
            self._initial_weights = self.snapshot_weights()
        if self._base_seed is None:
            self._base_seed = self.seed if self.seed is not None else global_seed()
        self._export_dir = run_folder(self.export_path, trainer.default_root_dir)
        for record in self._records:  # restored from a checkpoint: fold files are kept relative to the run folder
            record["checkpoint"] = resolve_fold_file(record, self._export_dir)
            record.pop("checkpoint_at_save", None)
        self._checkpoint_base_dirs = [cb.dirpath for cb in self._checkpoint_callbacks()]

    def on_advance_start(self, *args: Any, **kwargs: Any) -> None:
        fold = self.current_fold
        self._datamodule().setup_fold_index(fold)
        # The loaders of a fold are built from the fold selected above, never kept from before (Lightning's sanity
        # check, or the previous fold, may have built them).
        self._drop_train_and_val_dataloaders()
        # A run resumed from a checkpoint continues with the RNG states of the save: inside a fold they are the
        # draws the interrupted fold would have made next; at a fold boundary the per-fold reseed below (if any)
        # takes over.
        self.restore_saved_rng()
        if not self.resuming_segment:  # a resumed fold keeps the weights it was saved with
            self.restore_weights(self._initial_weights)
            if self._base_seed is not None:
                reseed(self._base_seed + fold)
        self._use_fold_checkpoint_dirs(fold)
        self.show_progress("fold", f"{fold + 1}/{self.num_folds}")
        pl.utilities.rank_zero_info(f"KFoldLoop: fold {fold + 1}/{self.num_folds}")

    def advance(self, *args: Any, **kwargs: Any) -> None:
        fold = self.current_fold
        trainer = self.trainer
        self.run_fit(self._epochs_per_fold)
        val_metrics = self._metrics_of_last_fit_validation()
        if val_metrics is None:
            val_metrics = self.evaluate_quietly(self.run_validation)
        else:
            val_metrics = self.reduce_over_processes(val_metrics)
        test_metrics = self.evaluate_quietly(self.run_test) if self._datamodule().has_test_data else {}
        self._log({f"fold_{fold}/{k}": v for k, v in {**val_metrics, **test_metrics}.items()})
        oof = predict_current_fold(trainer, self._datamodule()) if self.oof else None
        checkpoint_path = os.path.join(self._export_dir, f"fold_{fold}.ckpt")
        self._records.append({"val": val_metrics, "test": test_metrics, "checkpoint": checkpoint_path, "oof": oof})
        self.current_fold = fold + 1  # saved below as "fold done": resuming from this file starts the next fold
        trainer.save_checkpoint(checkpoint_path, weights_only=False)  # full state (and results so far): resumable

    def on_run_end(self) -> KFoldResult:
        datamodule = self._datamodule()
        if self.ensemble and datamodule.has_test_data and self._ensemble_metrics is None:
            self._ensemble_metrics = self._test_ensemble()
            self._log({f"ensemble/{k}": v for k, v in self._ensemble_metrics.items()})
        self.restore_weights(self._initial_weights)
        self.result = self._build_result()
        self._write_result(self.result)
        means, stds = self.result.mean(), self.result.std()
        summary = ", ".join(f"{name} {means[name]:.4f} ± {stds[name]:.4f}" for name in means)
        pl.utilities.rank_zero_info(
            f"KFoldLoop: {self.result.num_folds} folds done; {summary}; results in {self._export_dir}"
        )
        return self.result

    # ------------------------------------------------------------------------------------------------------------
    # pieces
    # ------------------------------------------------------------------------------------------------------------
    def _datamodule(self) -> BaseKFoldDataModule:
        datamodule = self.trainer.datamodule
        if not isinstance(datamodule, BaseKFoldDataModule):
            raise TypeError(
                f"KFoldLoop needs a BaseKFoldDataModule, got {type(datamodule).__name__}: wrap yours with "
                "alkit.kfold.KFoldDataModule(datamodule) and pass it as trainer.fit(model, datamodule=...)"
            )
        return datamodule

    def _check_trainer_settings(self) -> None:
        epochs = self._epochs_per_fold
        if epochs is None or epochs < 1:
            raise ValueError(
                f"Trainer(max_epochs={epochs}) is invalid with KFoldLoop: max_epochs is the number of epochs per fold "
                "and must be an int >= 1"
            )
        self.refuse_max_steps("folds", "max_epochs (epochs per fold)")

    def _metrics_of_last_fit_validation(self) -> dict[str, float] | None:
        """The held-out metrics of the fold's final weights when fit already computed them, else ``None``.

        With ``val_check_interval=1.0`` a validation that ran during the fold's last epoch ran after its last training
        batch; re-running it would only cost time (and log the metrics twice).
        """
        trainer = self.trainer
        interval = trainer.val_check_interval
        if not (isinstance(interval, float) and interval == 1.0):
            return None
        val_loop = self.fit_loop.epoch_loop.val_loop
        if val_loop.batch_progress.total.completed == 0:  # counts the validation batches of the last epoch only
            return None
        results = getattr(val_loop, "_results", None)
        if not isinstance(results, dict) or not hasattr(results, "_forked_name"):
            return None
        names = [
            results._forked_name(metric, False)[1]
            for metric in results.values()
            if getattr(getattr(metric, "meta", None), "on_epoch", False)
        ]
        metrics = {name: float(trainer.callback_metrics[name]) for name in names if name in trainer.callback_metrics}
        return metrics or None

    def _test_ensemble(self) -> dict[str, float]:
        trainer = self.trainer
        strategy = trainer.strategy
        paths = [record["checkpoint"] for record in self._records]
        voting = EnsembleVotingModel(trainer.lightning_module, paths, map_location="cpu")
        saved_module, saved_model = strategy.lightning_module, strategy.model
        voting.trainer = trainer
        results = getattr(trainer.test_loop, "_results", None)
        if isinstance(results, dict):
            results.clear()  # the fold models' logged `test_*` entries, possibly logged with other options
        strategy.connect(voting)
        strategy.model_to_device()
        try:
            return self.evaluate_quietly(self.run_test)
        finally:
            strategy._lightning_module = saved_module
            strategy.model = saved_model

    def _log(self, metrics: dict[str, float]) -> None:
        trainer = self.trainer
        for name, value in metrics.items():
            trainer.callback_metrics[name] = torch.tensor(value)
        if metrics and trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)

    def _checkpoint_callbacks(self) -> list[pl.callbacks.ModelCheckpoint]:
        return [cb for cb in self.trainer.callbacks if isinstance(cb, pl.callbacks.ModelCheckpoint)]

    def _use_fold_checkpoint_dirs(self, fold: int | None) -> None:
        """Each fold's ModelCheckpoint files go to ``<its dirpath>/fold_<i>`` so folds never overwrite each other."""
        for callback, base in zip(self._checkpoint_callbacks(), self._checkpoint_base_dirs):
            if base is not None:
                callback.dirpath = base if fold is None else os.path.join(base, f"fold_{fold}")

    def reset_callbacks(self) -> None:
        # Back to the original dirpath first: ModelCheckpoint only restores its initial state for the same dirpath.
        self._use_fold_checkpoint_dirs(None)
        super().reset_callbacks()
        self._use_fold_checkpoint_dirs(self.current_fold)

    def _build_result(self) -> KFoldResult:
        folds = getattr(self._datamodule(), "folds", None) or []
        done = len(self._records)
        return KFoldResult(
            val_metrics=[r["val"] for r in self._records],
            test_metrics=[r["test"] for r in self._records],
            train_indices=[f.train_indices for f in folds[:done]] if len(folds) >= done else [],
            val_indices=[f.val_indices for f in folds[:done]] if len(folds) >= done else [],
            checkpoint_paths=[r["checkpoint"] for r in self._records],
            ensemble_metrics=self._ensemble_metrics,
            **oof_result_fields([r.get("oof") for r in self._records], folds),
        )

    def _write_result(self, result: KFoldResult) -> None:
        if self.trainer.is_global_zero:
            result.to_json(Path(self._export_dir) / RESULT_FILENAME)

    # ------------------------------------------------------------------------------------------------------------
    # checkpointing
    # ------------------------------------------------------------------------------------------------------------
    def on_save_checkpoint(self) -> dict:
        state = super().on_save_checkpoint()
        state["num_folds"] = self.num_folds
        return state

    def _saved_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """A finished fold's record as checkpoints keep it: its checkpoint file relative to the run folder."""
        return {
            "val": dict(record["val"]),
            "test": dict(record["test"]),
            "checkpoint": _relative_to(record["checkpoint"], self._export_dir),
            "checkpoint_at_save": os.path.abspath(record["checkpoint"]),
            "oof": record.get("oof"),
        }

    def on_load_checkpoint(self, state_dict: dict) -> None:
        # refused before anything is restored: a checkpoint of another run kind, of one parallel fold, other k
        self._check_checkpoint_kind(state_dict)
        if state_dict.get("parallel_fold") is not None:
            raise ValueError(
                f"the checkpoint was written by fold {state_dict['parallel_fold']}'s process of a "
                "kfold_fit(parallel=...) run and holds that fold only: resume it with "
                "kfold_fit(..., parallel=N, ckpt_path=<its run folder>)"
            )
        saved_folds = int(state_dict["num_folds"])
        if saved_folds != self.num_folds:
            raise ValueError(
                f"the checkpoint was written by a KFoldLoop with num_folds={saved_folds}, but this one has "
                f"num_folds={self.num_folds}: resume with the same number of folds"
            )
        super().on_load_checkpoint(state_dict)
        self._select_resumed_fold()

    def _select_resumed_fold(self) -> None:
        """Serve the resumed fold's data from now on: Lightning builds dataloaders (sanity check included) before
        this loop runs, and they must be the resumed fold's, not fold 0's (whose held-out part a later fold trains on).
        """
        trainer = self.__dict__.get("trainer")  # (not attached: nothing to select yet)
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        if not isinstance(datamodule, BaseKFoldDataModule) or getattr(datamodule, "folds", None) is None:
            return  # the datamodule computes its folds later; on_advance_start selects the fold
        if self.current_fold < min(self.num_folds, len(datamodule.folds)):
            datamodule.setup_fold_index(self.current_fold)


def run_folder(export_path: str | os.PathLike | None, root_dir: str | os.PathLike) -> str:
    """The folder of a k-fold run's files: ``export_path``, else ``<default_root_dir>/kfold``."""
    return os.fspath(export_path) if export_path else os.path.join(os.fspath(root_dir), "kfold")


def _relative_to(path: str, folder: str | None) -> str:
    """``path`` relative to ``folder`` when inside it, so a moved run folder still resumes; else unchanged."""
    if folder is None:
        return path
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    return path if relative.startswith(os.pardir) else relative


def resolve_fold_file(record: dict[str, Any], export_dir: str | os.PathLike) -> str:
    """The fold checkpoint a record of a checkpoint names: inside the run's current folder (a moved run folder),
    else where it was when the record was saved (a run resumed into another folder)."""
    path = record["checkpoint"]
    if os.path.isabs(path):
        return path
    inside = os.path.join(os.fspath(export_dir), path)
    at_save = record.get("checkpoint_at_save")
    if not os.path.isfile(inside) and isinstance(at_save, str) and os.path.isfile(at_save):
        return at_save
    return inside


def _fingerprint_of(datamodule: BaseKFoldDataModule) -> str | None:
    folds = getattr(datamodule, "folds", None)
    return folds_fingerprint(folds) if folds else None
