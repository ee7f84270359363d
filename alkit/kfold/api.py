"""``kfold_fit``: k-fold cross-validation of a LightningModule in one call, returning plain data.

Meant to feel like scikit-learn's ``cross_validate`` to a scikit-learn user: any splitter object works, the model
passed in is not modified, and the result is a :class:`~alkit.kfold.KFoldResult` of per-fold numbers.
"""

from __future__ import annotations

import copy
import numbers
import os
from pathlib import Path
from typing import Any

from alkit._checkpoint import check_checkpoint
from alkit.kfold.datamodule import BaseKFoldDataModule, KFoldDataModule
from alkit.kfold.loop import RESULT_FILENAME, KFoldLoop, resolve_fold_file, run_folder
from alkit.kfold.parallel import (
    check_parallel,
    check_parallel_arguments,
    check_parallel_backend,
    fit_folds_in_parallel,
)
from alkit.kfold.result import KFoldResult
from alkit.kfold.splits import DEFAULT_K, resolve_cv
from alkit.lightning import check_namespace, pl
from alkit.loops.fit_wrapper import FitWrapperLoop

__all__ = ["kfold_fit"]


def kfold_fit(
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    k: int | None = None,
    *,
    cv: Any = None,
    splitter: Any = None,
    stratify: bool = False,
    groups: Any = None,
    trainer: pl.Trainer | None = None,
    export_path: str | os.PathLike | None = None,
    ensemble: bool = True,
    oof: bool = True,
    seed: int | None = None,
    ckpt_path: str | os.PathLike | None = None,
    parallel: int | None = None,
    parallel_backend: str = "processes",
    **trainer_kwargs: Any,
) -> KFoldResult:
    """Cross-validate ``model`` on ``datamodule``'s training set; test each fold model and their ensemble.

    Every fold trains a copy of ``model`` from the same initial weights with fresh optimizers, LR schedulers and
    callback state, validates on its held-out fold and tests on ``datamodule``'s test set (when it has one).

    Args:
        model: a ``LightningModule``; it is left exactly as given (folds train a copy).
        datamodule: any ``LightningDataModule`` with a training set (wrapped in a :class:`KFoldDataModule`), or a
            :class:`BaseKFoldDataModule` used as is.
        k: number of folds (default 5), as ``cv=<int>``; with a splitter, only checked against its ``get_n_splits``.
        cv: as scikit-learn's ``cv``: a number of folds, any scikit-learn splitter (``KFold``, ``StratifiedKFold``,
            ``GroupKFold``, ``ShuffleSplit``, ``RepeatedStratifiedKFold``, ...) or an iterable of ``(train,
            held_out)`` index pairs. The folds are computed once, checked, before anything trains.
        splitter: the older name of ``cv`` for a splitter object.
        stratify: keep class ratios in every fold (default splitter ``StratifiedKFold``).
        groups: one group id per training sample; groups never straddle folds.
        trainer: an :class:`alkit.Trainer` to use (``max_epochs`` = epochs per fold); else one is built from
            ``trainer_kwargs``.
        export_path: folder for fold checkpoints and ``kfold_result.json`` (default ``<default_root_dir>/kfold``).
        ensemble: also test the soft-voting ensemble of the fold models.
        oof: predict every held-out sample with the fold model that held it out (``result.oof_predictions``,
            written beside ``kfold_result.json``); one pass over each held-out fold.
        seed: seeds the folds and, through ``seed_everything`` and per-fold reseeding, training (same seed → same
            folds and same metrics on CPU). ``None``: folds from seed 0, training RNG left as it is.
        ckpt_path: resume an interrupted run from one of its checkpoints (a ``fold_<i>.ckpt`` or a
            ModelCheckpoint file): it continues at the right fold with the finished folds' results. With
            ``parallel``: the interrupted run's folder (or a file in it); finished folds are not recomputed.
        parallel: train up to this many folds at the same time, each in its own spawned process (one GPU each when
            several are visible); same per-fold metrics as ``None`` (one fold after the other, in this process).
            Needs a picklable model and datamodule and Trainer arguments instead of ``trainer=``.
        parallel_backend: what runs the folds of ``parallel``: ``"processes"`` (a process pool on this machine) or
            ``"ray"`` (Ray tasks over the machines of the Ray cluster this process is connected to, else a local
            one; ``pip install alkit[ray]``; the run folder on storage all machines share). Same files, resume and
            per-fold metrics either way.
        **trainer_kwargs: arguments for ``alkit.Trainer`` when ``trainer`` is not given.

    Returns:
        The :class:`KFoldResult` (per-fold val/test metrics, sizes, indices, checkpoints, ensemble metrics).
    """
    from alkit.trainer import Trainer

    check_namespace(model, "model")
    check_namespace(datamodule, "datamodule")
    if not isinstance(model, pl.LightningModule):
        raise TypeError(f"model={type(model).__name__} is invalid: expected a {pl.__name__}.LightningModule")
    resolved_cv = resolve_cv(cv, k, splitter=splitter)  # cv, k and splitter checked together, before any work
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"seed={seed!r} is invalid: expected an int or None")
    if trainer is not None and not isinstance(trainer, Trainer):
        raise TypeError(
            f"trainer={type(trainer).__name__} is invalid: kfold_fit needs an alkit.Trainer (its fit loop can be "
            "replaced); build it with alkit.Trainer(...) and the same arguments"
        )
    parallel = check_parallel(parallel)
    parallel_backend = check_parallel_backend(parallel_backend, parallel)
    if parallel is not None and trainer is not None:
        raise TypeError(
            f"trainer={type(trainer).__name__} cannot be combined with parallel={parallel}: every fold process builds "
            "its own Trainer; pass the Trainer arguments to kfold_fit instead (kfold_fit(..., max_epochs=...))"
        )
    if parallel is not None:
        check_parallel_arguments(model, datamodule, trainer_kwargs, parallel_backend)
    if trainer is not None and trainer_kwargs:
        raise ValueError(
            f"pass either trainer= or Trainer arguments, not both (got trainer and {sorted(trainer_kwargs)})"
        )

    if ckpt_path is not None and parallel is None:  # every file the resume needs, read safely before anything trains
        root = trainer.default_root_dir if trainer is not None else trainer_kwargs.get("default_root_dir")
        _check_resume_files(ckpt_path, run_folder(export_path, root or os.getcwd()))

    if isinstance(datamodule, BaseKFoldDataModule):
        if cv is not None or splitter is not None or stratify or groups is not None:
            raise ValueError(
                f"datamodule={type(datamodule).__name__} already defines its folds: cv, splitter, stratify and "
                "groups apply only to a plain LightningDataModule"
            )
        kfold_datamodule = datamodule
    else:
        kfold_datamodule = KFoldDataModule(
            datamodule, cv=resolved_cv, k=k, stratify=stratify, groups=groups, seed=0 if seed is None else seed
        )

    # Compute (and so check) the folds now, once, before anything trains; the loop and the result share them.
    kfold_datamodule.prepare_data()
    kfold_datamodule.setup("fit")
    if isinstance(kfold_datamodule, KFoldDataModule):
        kfold_datamodule.setup_folds(k)  # None: its cv decides; else checked against the folds it computed
    else:
        kfold_datamodule.setup_folds(DEFAULT_K if k is None else int(k))
    kfold_datamodule.setup_fold_index(0)  # what Lightning's sanity check validates on, before the loop starts
    num_folds = getattr(kfold_datamodule, "num_folds", None) or (DEFAULT_K if k is None else int(k))

    if parallel is not None:
        return fit_folds_in_parallel(
            model,
            kfold_datamodule,
            num_folds=num_folds,
            parallel=parallel,
            trainer_kwargs=trainer_kwargs,
            export_path=export_path,
            ensemble=ensemble,
            seed=seed,
            ckpt_path=ckpt_path,
            oof=oof,
            backend=parallel_backend,
        )
    if trainer is None:
        trainer = Trainer(**trainer_kwargs)
    if seed is not None:
        pl.seed_everything(seed, verbose=False)

    fit_loop = trainer.fit_loop
    if isinstance(fit_loop, FitWrapperLoop):  # a trainer reused from an earlier kfold_fit / research loop
        fit_loop = fit_loop.fit_loop
    loop = KFoldLoop(num_folds, export_path=export_path, ensemble=ensemble, seed=seed, oof=oof)
    loop.connect(fit_loop)
    trainer.fit_loop = loop

    result_file = Path(run_folder(export_path, trainer.default_root_dir)) / RESULT_FILENAME
    if ckpt_path is None and trainer.is_global_zero:
        result_file.unlink(missing_ok=True)  # never mistake an earlier run's result for this one's

    fold_model = copy.deepcopy(model)  # the user's model stays as given
    trainer.fit(fold_model, datamodule=kfold_datamodule, ckpt_path=None if ckpt_path is None else str(ckpt_path))

    if loop.result is not None:
        return loop.result
    # Spawned processes (ddp_spawn) ran the loop; rank 0 wrote the result next to the fold checkpoints.
    if not result_file.is_file():
        raise RuntimeError(f"k-fold run finished without a result: {result_file} was not written")
    return KFoldResult.from_json(result_file)


def _check_resume_files(ckpt_path: str | os.PathLike, export_dir: str | os.PathLike) -> None:
    """``ckpt_path`` and the fold checkpoints it records (the ensemble reads them at the end) load safely.

    Fold checkpoints are recorded relative to the run folder (``export_dir``), so a moved folder resumes.
    """
    checkpoint = check_checkpoint(ckpt_path, "ckpt_path")
    loop_state = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {})
    records = loop_state.get("records", []) if isinstance(loop_state, dict) else []
    for fold, record in enumerate(records):
        path = record.get("checkpoint") if isinstance(record, dict) else None
        if not isinstance(path, str):
            raise ValueError(
                f"ckpt_path={os.fspath(ckpt_path)!r} is not a k-fold checkpoint alkit can resume from: "
                f"fold {fold}'s record has no checkpoint path"
            )
        argument = f"fold {fold}'s checkpoint (recorded in ckpt_path={os.fspath(ckpt_path)!r})"
        path = resolve_fold_file(record, export_dir)
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"{argument} {path!r} does not exist: the file was deleted, or the run's folder was moved and "
                "default_root_dir/export_path do not point to its new place (the finished folds' checkpoints are "
                "needed for the ensemble)"
            )
        check_checkpoint(path, argument)
