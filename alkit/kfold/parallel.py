"""Folds in parallel: ``kfold_fit(..., parallel=N)`` trains up to ``N`` folds at once, one process per fold.

Why processes and a pool: a fold is a whole Lightning ``fit``; two of them cannot share one Trainer, one process's
global RNGs or (under the GIL) one interpreter's CPU time. The pool is the standard library's
``concurrent.futures.ProcessPoolExecutor`` with the *spawn* start method (safe with CUDA and with Lightning's
threads), so scheduling, worker reuse and error propagation are the library's, not alkit's.

Every fold process runs exactly what the sequential :class:`~alkit.kfold.KFoldLoop` runs for that fold (same initial
weights, the same per-fold reseed ``seed + fold``, fresh optimizers), so its metrics are the sequential run's. All
processes write into one run folder:

- ``fold_<i>.ckpt``: the fold model (the ensemble and :class:`~alkit.kfold.KFoldResult` point at it);
- ``fold_<i>.oof.npz``: the fold model's predictions of its held-out samples (with ``oof=True``);
- ``fold_<i>.json``: the fold's record, written atomically *after* the files above. It is what makes a fold
  "finished": a resumed run (``ckpt_path=<run folder>``) never recomputes a fold that has one, and reruns any fold
  killed before writing it;
- ``kfold_result.json``: the whole result, written by the parent once every fold is finished.

When several GPUs are visible, process ``j`` of the pool uses GPU ``j % device_count`` (unless ``devices=`` was given).

``parallel_backend="ray"`` hands the same fold tasks to Ray instead (``pip install alkit[ray]``), to spread them over
the machines of a Ray cluster: the folds are Ray tasks (``ray.remote``), at most ``parallel`` of them submitted at a
time (``ray.wait``), each with one GPU when the cluster has GPUs (Ray assigns it), so Ray, not alkit, places them.
Every fold still runs :func:`_fit_one_fold` and writes the files above, so a Ray run resumes like a process-pool run
(and either resumes the other's folder). The run folder must be on storage every machine sees.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import json
import multiprocessing
import numbers
import os
import pickle
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from alkit._io import write_text_atomic
from alkit.kfold.datamodule import BaseKFoldDataModule, folds_fingerprint
from alkit.kfold.ensemble import EnsembleVotingModel
from alkit.kfold.loop import RESULT_FILENAME, KFoldLoop
from alkit.kfold.oof import load_oof, oof_result_fields, save_oof
from alkit.kfold.result import KFoldResult
from alkit.lightning import ENVIRONMENT_VARIABLE, NAMESPACE, pl

__all__ = [
    "PARALLEL_BACKENDS",
    "check_parallel",
    "check_parallel_arguments",
    "check_parallel_backend",
    "fit_folds_in_parallel",
    "fold_record_path",
]

#: strategies that start processes of their own: one fold per process cannot nest them
_MULTI_PROCESS_STRATEGIES = ("ddp", "fsdp", "deepspeed")

#: ``parallel_backend`` values: what runs the fold tasks
PARALLEL_BACKENDS = ("processes", "ray")


def check_parallel(parallel: Any) -> int | None:
    """``None`` (folds one after the other, in this process) or the number of fold processes, an int >= 1."""
    if parallel is None:
        return None
    if isinstance(parallel, bool) or not isinstance(parallel, numbers.Integral) or parallel < 1:
        raise ValueError(
            f"parallel={parallel!r} is invalid: expected None (folds one after the other in this process) or an int "
            ">= 1 (the number of folds trained at the same time, each in its own process)"
        )
    return int(parallel)


def check_parallel_backend(backend: Any, parallel: int | None) -> str:
    """``"processes"`` (a process pool on this machine) or ``"ray"`` (Ray tasks, on a cluster's machines).

    Checked before any work, Ray's presence included: a missing optional dependency is named with its install command
    rather than failing once the folds are computed.
    """
    if not isinstance(backend, str) or backend not in PARALLEL_BACKENDS:
        raise ValueError(
            f"parallel_backend={backend!r} is invalid: expected 'processes' (a process pool on this machine, the "
            "default) or 'ray' (Ray tasks, on the machines of a Ray cluster)"
        )
    if backend != "processes" and parallel is None:
        raise ValueError(
            f"parallel_backend={backend!r} needs parallel=N (the number of folds trained at the same time); with "
            "parallel=None the folds run one after the other in this process"
        )
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise ImportError(
            "parallel_backend='ray' needs Ray, which is not installed: pip install alkit[ray] (or pip install ray), "
            "or use parallel_backend='processes'"
        )
    return backend


def check_parallel_arguments(
    model: Any, datamodule: Any, trainer_kwargs: dict[str, Any], backend: str = "processes"
) -> None:
    """What the fold processes need, checked before any work: picklable arguments, one device per process."""
    for argument, value in (("model", model), ("datamodule", datamodule), ("**trainer_kwargs", trainer_kwargs)):
        _check_picklable(value, argument)
    strategy = trainer_kwargs.get("strategy")
    if isinstance(strategy, str) and strategy.startswith(_MULTI_PROCESS_STRATEGIES):
        raise ValueError(
            f"strategy={strategy!r} cannot be combined with parallel=: parallel runs every fold in a process of its "
            "own on one device; use parallel=None for a multi-process strategy"
        )
    devices = trainer_kwargs.get("devices", "auto")
    if backend == "ray" and devices not in ("auto", 1, "1"):
        raise ValueError(
            f"devices={devices!r} cannot be combined with parallel_backend='ray': Ray gives every fold task its "
            "device (one GPU when the cluster has GPUs); accepted: devices='auto' (the default) or 1"
        )


def fold_record_path(export_dir: str | os.PathLike, fold: int) -> Path:
    """Where a fold process records that fold ``fold`` finished (written after its checkpoint)."""
    return Path(export_dir) / f"fold_{fold}.json"


def fit_folds_in_parallel(
    model: pl.LightningModule,
    datamodule: BaseKFoldDataModule,
    *,
    num_folds: int,
    parallel: int,
    trainer_kwargs: dict[str, Any],
    export_path: str | os.PathLike | None,
    ensemble: bool,
    seed: int | None,
    ckpt_path: str | os.PathLike | None,
    oof: bool = True,
    backend: str = "processes",
) -> KFoldResult:
    """Train the unfinished folds ``parallel`` at a time (a process pool, or Ray tasks), then test the ensemble here.

    ``datamodule`` has its folds computed already (``setup_folds``): they are checked, fingerprinted and shipped to
    every process with it. ``ckpt_path`` (resume) is the interrupted run's folder or a file in it.
    """
    folds = getattr(datamodule, "folds", None)
    fingerprint = folds_fingerprint(folds) if folds else None

    root = os.path.normpath(os.fspath(trainer_kwargs.get("default_root_dir") or os.getcwd()))
    export_dir = Path(export_path) if export_path is not None else Path(root) / "kfold"
    if ckpt_path is not None:
        export_dir = _resume_folder(ckpt_path, export_path)
    export_dir.mkdir(parents=True, exist_ok=True)
    identity = {"num_folds": num_folds, "fingerprint": fingerprint, "seed": seed, "oof": oof}

    records: dict[int, dict[str, Any]] = {}
    if ckpt_path is None:  # a new run: nothing in the folder belongs to it yet
        (export_dir / RESULT_FILENAME).unlink(missing_ok=True)
        for fold in range(num_folds):
            fold_record_path(export_dir, fold).unlink(missing_ok=True)
    else:
        records = _finished_folds(export_dir, identity)

    pending = [fold for fold in range(num_folds) if fold not in records]
    if pending:
        task = {
            "model": model,
            "datamodule": datamodule,
            "trainer_kwargs": trainer_kwargs,
            "num_folds": num_folds,
            "export_dir": str(export_dir),
            "seed": seed,
            "identity": identity,
            "oof": oof,
        }
        # Pickled here, once, as bytes: handed to the pool as objects, tensors would travel through torch's shared
        # memory and every fold process would train the *same* parameters (and the caller's model) at once.
        try:
            payload = pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            check_parallel_arguments(model, datamodule, trainer_kwargs)  # names the argument (set up, it holds more)
            raise
        workers = min(parallel, len(pending))
        if backend == "ray":
            _fit_folds_on_ray(payload, pending, workers, trainer_kwargs, records)
        else:
            _fit_folds_in_pool(payload, pending, workers, records)

    ordered = [records[fold] for fold in range(num_folds)]
    ensemble_metrics = None
    if ensemble and datamodule.has_test_data:
        ensemble_metrics = _test_ensemble(model, datamodule, [r["checkpoint"] for r in ordered], trainer_kwargs)
    folds = folds or []
    result = KFoldResult(
        val_metrics=[r["val"] for r in ordered],
        test_metrics=[r["test"] for r in ordered],
        train_indices=[f.train_indices for f in folds[:num_folds]],
        val_indices=[f.val_indices for f in folds[:num_folds]],
        checkpoint_paths=[r["checkpoint"] for r in ordered],
        ensemble_metrics=ensemble_metrics,
        **oof_result_fields([r.get("oof") for r in ordered], folds),
    )
    result.to_json(export_dir / RESULT_FILENAME)
    return result


# ----------------------------------------------------------------------------------------------------------------
# the parent's side
# ----------------------------------------------------------------------------------------------------------------
def _check_picklable(obj: Any, argument: str) -> None:
    """Refuse, before any work, what cannot travel to a spawned process (and say which argument it was)."""
    objects = [obj]
    if isinstance(obj, BaseKFoldDataModule) and hasattr(obj, "datamodule"):
        objects.append(obj.datamodule)  # the user's datamodule inside the KFoldDataModule wrapper
    for item in objects:
        cls = type(item)
        main = sys.modules.get("__main__")
        if cls.__module__ == "__main__" and not getattr(main, "__file__", None):
            raise TypeError(
                f"{argument}={cls.__name__} cannot be sent to the fold processes of parallel=: its class is defined in "
                "an interactive session (__main__ without a file), which a spawned process cannot import; define it "
                "in a module (a .py file) or use parallel=None"
            )
    try:
        pickle.dumps(obj)
    except Exception as err:
        raise TypeError(
            f"{argument}={type(obj).__name__} cannot be sent to the fold processes of parallel= (it must be "
            f"picklable): {type(err).__name__}: {err}; make it picklable (no lambdas, open files or local classes) "
            "or use parallel=None"
        ) from err


def _resume_folder(ckpt_path: str | os.PathLike, export_path: str | os.PathLike | None) -> Path:
    path = Path(ckpt_path)
    if not path.exists():
        raise FileNotFoundError(
            f"ckpt_path={os.fspath(ckpt_path)!r} does not exist: with parallel=, resume from the interrupted run's "
            "folder (its export_path) or a file in it"
        )
    folder = path if path.is_dir() else path.parent
    if export_path is not None and Path(export_path).resolve() != folder.resolve():
        raise ValueError(
            f"ckpt_path={os.fspath(ckpt_path)!r} and export_path={os.fspath(export_path)!r} name different run "
            "folders: a parallel run resumes in its own folder; pass one of them"
        )
    return folder


def _finished_folds(export_dir: Path, identity: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Folds the interrupted run finished: a record written after its checkpoint, for the same folds and seed."""
    finished: dict[int, dict[str, Any]] = {}
    for fold in range(identity["num_folds"]):
        path = fold_record_path(export_dir, fold)
        if not path.is_file():
            continue
        saved = json.loads(path.read_text(encoding="utf-8"))
        for key, value in identity.items():
            if saved.get(key) != value:
                raise RuntimeError(
                    f"{path} was written by a run with {key}={saved.get(key)!r}, but this run has {key}={value!r}: "
                    "resume with the same data, splitter, groups, seed and number of folds, or start a new run "
                    "(no ckpt_path)"
                )
        record = saved["record"]
        oof_file = record.pop("oof_file", None)
        if not Path(record["checkpoint"]).is_file() or (oof_file and not (export_dir / oof_file).is_file()):
            continue  # a file of the fold is gone: it runs again
        record["oof"] = None
        if oof_file:
            predictions, targets = load_oof(export_dir / oof_file)
            record["oof"] = {"predictions": predictions, "targets": targets, "task": record.pop("oof_task")}
        finished[fold] = record
    return finished


@contextlib.contextmanager
def _namespace_for_children() -> Iterator[None]:
    """Spawned processes bind alkit to this process's Lightning namespace (they inherit the environment)."""
    previous = os.environ.get(ENVIRONMENT_VARIABLE)
    os.environ[ENVIRONMENT_VARIABLE] = NAMESPACE
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENVIRONMENT_VARIABLE, None)
        else:
            os.environ[ENVIRONMENT_VARIABLE] = previous


def _fit_folds_in_pool(payload: bytes, pending: list[int], workers: int, records: dict[int, dict[str, Any]]) -> None:
    with _namespace_for_children(), _pool(workers) as pool:
        futures = {fold: pool.submit(_fit_one_fold, payload, fold) for fold in pending}
        try:
            for fold, future in futures.items():
                records[fold] = future.result()  # a fold's exception is raised here, with its traceback
        except BaseException:
            pool.shutdown(cancel_futures=True)  # folds already running finish (and are kept for a resume)
            raise


def _fit_folds_on_ray(
    payload: bytes,
    pending: list[int],
    workers: int,
    trainer_kwargs: dict[str, Any],
    records: dict[int, dict[str, Any]],
) -> None:
    """The folds as Ray tasks, at most ``workers`` submitted at a time; fills ``records`` as they finish.

    Uses the Ray cluster this process is connected to (``ray.init(address=...)`` beforehand); else Ray's own
    ``ray.init()`` (which joins a cluster named by ``RAY_ADDRESS`` or started on this machine, or starts a local one),
    shut down again at the end.
    """
    ray = importlib.import_module("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False)
    try:
        accelerator = trainer_kwargs.get("accelerator", "auto")
        has_gpus = ray.cluster_resources().get("GPU", 0) >= 1
        gpus = 1 if accelerator in ("gpu", "cuda") or (accelerator == "auto" and has_gpus) else 0
        task = ray.remote(_fit_one_fold).options(
            num_cpus=1,
            num_gpus=gpus,
            runtime_env={"env_vars": {ENVIRONMENT_VARIABLE: NAMESPACE}},  # the fold binds to this Lightning namespace
        )
        shared = ray.put(payload)  # stored once in Ray's object store, not once per task
        queue, running = list(pending), {}
        try:
            while queue or running:
                while queue and len(running) < workers:
                    fold = queue.pop(0)
                    running[task.remote(shared, fold)] = fold
                (done,), _ = ray.wait(list(running), num_returns=1)
                fold = running.pop(done)
                record = ray.get(done)  # a fold's exception is raised here, with its traceback
                if not Path(record["checkpoint"]).is_file():
                    raise RuntimeError(
                        f"fold {fold}'s checkpoint {record['checkpoint']!r}, written by a Ray worker, is not visible "
                        "on this machine: with parallel_backend='ray' on several machines, export_path (or "
                        "default_root_dir) must be on storage every machine shares"
                    )
                records[fold] = record
        except BaseException:
            if running:  # folds already running finish (and are kept for a resume); none is started any more
                ray.wait(list(running), num_returns=len(running))
            raise
    finally:
        if started:
            ray.shutdown()


def _pool(workers: int) -> ProcessPoolExecutor:
    context = multiprocessing.get_context("spawn")
    slots = context.Queue()
    for slot in range(workers):
        slots.put(slot)
    threads = max(1, torch.get_num_threads() // workers)  # the processes share the cores instead of oversubscribing
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(slots, threads))


def _test_ensemble(
    model: pl.LightningModule,
    datamodule: BaseKFoldDataModule,
    checkpoints: list[str],
    trainer_kwargs: dict[str, Any],
) -> dict[str, float]:
    from alkit.trainer import Trainer

    voting = EnsembleVotingModel(copy.deepcopy(model), checkpoints, map_location="cpu")
    trainer = Trainer(**{**trainer_kwargs, "logger": False})
    (metrics,) = trainer.test(voting, datamodule=datamodule, verbose=False)
    return {name: float(value) for name, value in metrics.items()}


# ----------------------------------------------------------------------------------------------------------------
# the fold processes' side
# ----------------------------------------------------------------------------------------------------------------
_SLOT: int | None = None


def _start_worker(slots: Any, threads: int) -> None:
    global _SLOT
    _SLOT = slots.get()
    torch.set_num_threads(threads)


class _OneFoldLoop(KFoldLoop):
    """The sequential loop's fold ``fold`` and nothing else: no ensemble, no result file (the parent writes those)."""

    def __init__(self, num_folds: int, fold: int, export_path: str, seed: int | None, oof: bool) -> None:
        super().__init__(num_folds, export_path, ensemble=False, seed=seed, oof=oof)
        self.fold = fold

    @property
    def done(self) -> bool:
        return self.current_fold > self.fold

    def reset(self) -> None:
        super().reset()
        self.current_fold = self.fold

    def on_advance_start(self, *args: Any, **kwargs: Any) -> None:
        super().on_advance_start(*args, **kwargs)
        # The epoch counter starts where the sequential run's fold would start (epochs keep counting across folds
        # there). Lightning takes a different path for a first epoch (epoch 0 creates its data iterator once, later
        # epochs twice, one more draw from the RNGs): without this, fold i > 0 would not be the sequential fold i.
        start = self.fold * self._epochs_per_fold
        progress = self.fit_loop.epoch_progress
        for counter in (progress.total, progress.current):
            counter.ready = counter.started = counter.processed = counter.completed = start

    def on_run_end(self) -> KFoldResult:  # type: ignore[override]
        self.restore_weights(self._initial_weights)
        self.result = self._build_result()
        return self.result

    def _build_result(self) -> KFoldResult:
        record = self._records[-1]
        return KFoldResult(val_metrics=[record["val"]], test_metrics=[record["test"]])

    def on_save_checkpoint(self) -> dict:
        state = super().on_save_checkpoint()
        state["parallel_fold"] = self.fold  # not a sequential run's checkpoint: its records hold this fold only
        return state


def _fit_one_fold(payload: bytes, fold: int) -> dict[str, Any]:
    from alkit.trainer import Trainer

    task = pickle.loads(payload)  # this fold's own copy of the model, datamodule and Trainer arguments
    datamodule: BaseKFoldDataModule = task["datamodule"]
    datamodule.setup_fold_index(fold)  # what Lightning's sanity check validates on
    trainer = Trainer(**_worker_trainer_kwargs(task["trainer_kwargs"], fold))
    if task["seed"] is not None:
        pl.seed_everything(task["seed"], verbose=False)
    loop = _OneFoldLoop(task["num_folds"], fold, task["export_dir"], task["seed"], task["oof"])
    loop.connect(trainer.fit_loop)
    trainer.fit_loop = loop
    trainer.fit(task["model"], datamodule=datamodule)
    done = loop._records[-1]
    record: dict[str, Any] = {"val": dict(done["val"]), "test": dict(done["test"]), "checkpoint": done["checkpoint"]}
    saved = dict(record)
    oof = done.get("oof")  # tensors: saved beside the record, returned as arrays
    if oof is not None:
        predictions, targets = _numpy(oof["predictions"]), _numpy(oof.get("targets"))
        oof_path = fold_record_path(task["export_dir"], fold).with_suffix(".oof.npz")
        save_oof(oof_path, predictions, targets)
        saved.update(oof_file=oof_path.name, oof_task=oof["task"])
        record["oof"] = {"predictions": predictions, "targets": targets, "task": oof["task"]}
    else:
        record["oof"] = None
    payload = {**task["identity"], "fold": fold, "record": saved}
    write_text_atomic(fold_record_path(task["export_dir"], fold), json.dumps(payload, indent=2, allow_nan=True))
    return record


def _numpy(value: Any) -> Any:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


def _worker_trainer_kwargs(trainer_kwargs: dict[str, Any], fold: int) -> dict[str, Any]:
    kwargs = dict(trainer_kwargs)
    accelerator = kwargs.get("accelerator", "auto")
    gpus = torch.cuda.device_count() if accelerator in ("auto", "gpu", "cuda") else 0
    if gpus > 1 and kwargs.get("devices", "auto") == "auto":
        kwargs["devices"] = [(_SLOT or 0) % gpus]  # one GPU per process: folds never share a device while any is free
    if kwargs.get("logger", True) is True:  # the default logger, one version per fold (no race on version numbers)
        kwargs["logger"] = _default_logger(kwargs.get("default_root_dir"), fold)
    return kwargs


def _default_logger(default_root_dir: Any, fold: int) -> Any:
    save_dir = os.fspath(default_root_dir or os.getcwd())
    has_tensorboard = any(importlib.util.find_spec(name) for name in ("tensorboard", "tensorboardX"))
    logger_class = pl.loggers.TensorBoardLogger if has_tensorboard else pl.loggers.CSVLogger
    return logger_class(save_dir, name="lightning_logs", version=f"kfold_fold_{fold}")
