"""Evaluation and prediction run their epoch loop once per dataloader, as Lightning 1.x did.

``EvaluationLoop``/``PredictionLoop`` are the 1.x dataloader loops (``dataloader_progress``); their ``epoch_loop``
runs once per dataloader with that dataloader's index and number of batches, and its ``batch_progress`` counts the
dataloader's batches. Everything Lightning 2 records (hooks, metrics keyed ``/dataloader_idx_N``, predictions,
checkpoints) stays identical to ``pytorch_lightning.Trainer``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

import alkit
from alkit import loops
from alkit.lightning import pl
from tests.loops._recording import (
    CALLBACK_HOOKS,
    MODULE_HOOKS,
    BoringModel,
    Run,
    make_data,
    read_csv_logs,
    record_hooks,
)
from tests.loops.test_parity import assert_same_loop_state, assert_same_run

CSVLogger = pl.loggers.CSVLogger


class MultiLoaderModel(BoringModel):
    """BoringModel whose evaluation and prediction steps take a ``dataloader_idx``; can checkpoint mid-validation."""

    save_mid_validation: Path | None = None  # checkpoint path, written in epoch 1, dataloader 1, batch 1

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if (
            self.save_mid_validation is not None
            and not self.trainer.sanity_checking
            and (self.current_epoch, dataloader_idx, batch_idx) == (1, 1, 1)
        ):
            self.trainer.save_checkpoint(self.save_mid_validation)
        self.log("val_loss", self._loss(batch), on_epoch=True)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.log("test_loss", self._loss(batch))

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self(batch[0])


class IteratorStepModel(BoringModel):
    """Evaluation with the iterator-style step (``validation_step(dataloader_iter)``)."""

    def validation_step(self, dataloader_iter: Any) -> None:
        batch, _, _ = next(dataloader_iter)
        self.log("val_loss", self._loss(batch))


class CombinedBatchModel(BoringModel):
    """Evaluation on a ``CombinedLoader`` in ``"max_size_cycle"`` mode: one batch holds every dataloader's."""

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log("val_loss", sum(self._loss(b) for b in batch.values()))


class Unsized(IterableDataset):
    """Batches of a sized loader without a length: the loop learns the dataloader's end only by fetching past it."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def __iter__(self):
        yield from self.loader


def loaders(sizes: tuple[int, ...], seed: int, unsized: tuple[int, ...] = (), mode: str | None = None) -> Any:
    """One loader per size (batches of 8); those whose index is in ``unsized`` have no length; ``mode``: combined."""
    out = []
    for i, n in enumerate(sizes):
        loader = make_data(n, seed=seed + i)
        out.append(DataLoader(Unsized(loader), batch_size=None) if i in unsized else loader)
    if mode is not None:
        return pl.utilities.combined_loader.CombinedLoader(dict(enumerate(out)), mode)
    return out


def run(
    trainer_cls: type,
    root: Path,
    *,
    module: type = MultiLoaderModel,
    stages: tuple[str, ...] = ("fit",),
    val: tuple[int, ...] = (24, 40),
    unsized: tuple[int, ...] = (),
    mode: str | None = None,
    save_mid_validation: Path | None = None,
    ckpt_path: str | None = None,
    configure: Any = None,
    **trainer_kwargs: Any,
) -> Run:
    """Run ``stages`` with a recorded ``module`` and several evaluation/predict dataloaders; collect everything."""
    calls: list = []
    module_cls = record_hooks(module, MODULE_HOOKS, calls, "model")
    recorder = record_hooks(pl.Callback, CALLBACK_HOOKS, calls, "cb")()
    pl.seed_everything(7, verbose=False)
    model = module_cls()
    model.save_mid_validation = save_mid_validation
    kwargs = dict(
        default_root_dir=root,
        logger=CSVLogger(root, name="logs", version=0),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
        max_epochs=2,
    )
    kwargs.update(trainer_kwargs)
    trainer = trainer_cls(callbacks=[recorder], **kwargs)
    if configure is not None:
        configure(trainer)
    outputs: dict[str, Any] = {}
    for stage in stages:
        if stage == "fit":
            trainer.fit(model, make_data(40), loaders(val, 1, unsized, mode), ckpt_path=ckpt_path)
        elif stage == "validate":
            outputs[stage] = trainer.validate(model, loaders(val, 1, unsized, mode), verbose=False)
        elif stage == "test":
            outputs[stage] = trainer.test(model, loaders(val[::-1], seed=5), verbose=False)
        elif stage == "predict":
            outputs[stage] = trainer.predict(model, loaders(val, seed=9))
    trainer.logger.save()
    return Run(
        hooks=calls,
        weights={k: v.detach().clone() for k, v in model.state_dict().items()},
        logged=read_csv_logs(root / "logs"),
        callback_metrics={k: float(v) for k, v in trainer.callback_metrics.items()},
        checkpoints=[],
        trainer=trainer,
        outputs=outputs,
    )


def assert_same_outputs(reference: Run, ours: Run) -> None:
    assert_same_run(reference, ours)
    for stage in ("validate", "test"):
        assert ours.outputs.get(stage) == reference.outputs.get(stage), stage
    for a, b in zip(reference.outputs.get("predict", []), ours.outputs.get("predict", []), strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)


class RecordingEvaluationEpochLoop(loops.EvaluationEpochLoop):
    """A 1.x-style epoch loop subclass: sees each dataloader's index and length, and its own batch counts."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[dict] = []

    def on_run_start(self, data_fetcher: Any, dl_max_batches: Any, kwargs: Any) -> None:
        super().on_run_start(data_fetcher, dl_max_batches, kwargs)
        self.runs.append(
            dict(kwargs=dict(kwargs), dataloader_idx=self.dataloader_idx, dl_max_batches=dl_max_batches, steps=[])
        )

    def advance(self, data_fetcher: Any, dl_max_batches: Any, kwargs: Any) -> None:
        super().advance(data_fetcher, dl_max_batches, kwargs)
        progress = self.batch_progress
        self.runs[-1]["steps"].append((kwargs.get("dataloader_idx", 0), progress.current.completed))
        self.runs[-1].setdefault("last", []).append(progress.is_last_batch)

    def on_run_end(self) -> None:
        progress = self.batch_progress
        self.runs[-1].update(current=progress.current.completed, total=progress.total.completed)
        super().on_run_end()


# ----------------------------------------------------------------------------------------------------------------------
# one epoch-loop run per dataloader, with the dataloader's index and progress
# ----------------------------------------------------------------------------------------------------------------------
def test_two_val_dataloaders_run_the_epoch_loop_once_each(tmp_path):
    def configure(trainer):
        trainer.validate_loop.connect(epoch_loop=RecordingEvaluationEpochLoop())

    ours = run(alkit.Trainer, tmp_path, stages=("validate",), val=(24, 40), configure=configure)
    loop = ours.trainer.validate_loop
    runs = loop.epoch_loop.runs
    assert [r["dataloader_idx"] for r in runs] == [0, 1]
    assert [r["kwargs"] for r in runs] == [{"dataloader_idx": 0}, {"dataloader_idx": 1}]
    assert [r["dl_max_batches"] for r in runs] == [3, 5]
    # each run evaluates its own dataloader's batches, counted from zero
    assert runs[0]["steps"] == [(0, 1), (0, 2), (0, 3)]
    assert runs[1]["steps"] == [(1, 1), (1, 2), (1, 3), (1, 4), (1, 5)]
    assert [(r["current"], r["total"]) for r in runs] == [(3, 3), (5, 8)]
    # `is_last_batch`: the last batch of each dataloader (1.x), while Lightning's own flag marks the run's last
    assert [r["last"] for r in runs] == [[False, False, True], [False] * 4 + [True]]
    assert loop.dataloader_progress.state_dict() == {
        "total": {"ready": 2, "completed": 2},
        "current": {"ready": 2, "completed": 2},
    }
    # Lightning 2's own counters (read by its trainer and callbacks) count every dataloader's batches
    assert loop.batch_progress.current.completed == loop.batch_progress.total.completed == 8
    # the step saw each batch under its dataloader's index
    steps = [h[1:] for h in ours.hooks if h[:2] == ("model", "validation_step")]
    assert steps == [("validation_step", (i, 0)) for i in range(3)] + [("validation_step", (i, 1)) for i in range(5)]


def test_fit_validation_progress_counts_as_in_lightning_1(tmp_path):
    """The counts Lightning 1.9's own test (``test_fit_can_fail_during_validation``) expects after a full fit."""
    n_batches, n_dataloaders, val_per_epoch = 4, 2, 2
    ours = run(
        alkit.Trainer,
        tmp_path,
        val=(8 * n_batches,) * n_dataloaders,
        max_epochs=1,
        val_check_interval=0.5,
        num_sanity_val_steps=0,
    )
    val_loop = ours.trainer.fit_loop.epoch_loop.val_loop
    assert val_loop.dataloader_progress.state_dict() == {
        "total": {"ready": n_dataloaders * val_per_epoch, "completed": n_dataloaders * val_per_epoch},
        "current": {"ready": n_dataloaders, "completed": n_dataloaders},
    }
    total = n_dataloaders * val_per_epoch * n_batches
    assert val_loop.epoch_loop.batch_progress.state_dict() == {
        "total": {"ready": total, "started": total, "processed": total, "completed": total},
        "current": {"ready": n_batches, "started": n_batches, "processed": n_batches, "completed": n_batches},
        "is_last_batch": True,
    }
    # the training epoch loop resets the total at every epoch start: it counts this epoch's validation batches
    assert val_loop.epoch_loop.batch_progress.total is val_loop.batch_progress.total


def test_sanity_check_runs_each_dataloader_and_leaves_no_progress_behind(tmp_path):
    def configure(trainer):
        trainer.fit_loop.epoch_loop.val_loop.connect(epoch_loop=RecordingEvaluationEpochLoop())

    ours = run(alkit.Trainer, tmp_path, val=(24, 40), max_epochs=1, num_sanity_val_steps=2, configure=configure)
    val_loop = ours.trainer.fit_loop.epoch_loop.val_loop
    runs = val_loop.epoch_loop.runs
    # sanity check: 2 batches of each dataloader; then the epoch's validation
    assert [(r["dataloader_idx"], r["dl_max_batches"], r["current"]) for r in runs] == [
        (0, 2, 2),
        (1, 2, 2),
        (0, 3, 3),
        (1, 5, 5),
    ]
    assert val_loop.dataloader_progress.total.completed == 2  # the sanity check's were reset, as in 1.x
    assert val_loop.epoch_loop.batch_progress.total.completed == 8


def test_prediction_runs_the_epoch_loop_once_per_dataloader(tmp_path):
    class RecordingPredictionEpochLoop(loops.PredictionEpochLoop):
        def __init__(self) -> None:
            super().__init__()
            self.runs: list[tuple] = []

        def on_run_start(self, data_fetcher, dataloader_idx, dl_max_batches, num_dataloaders) -> None:
            super().on_run_start(data_fetcher, dataloader_idx, dl_max_batches, num_dataloaders)
            self.runs.append((dataloader_idx, dl_max_batches, num_dataloaders))

        def on_run_end(self) -> None:
            self.runs[-1] += (self.batch_progress.current.completed, self.batch_progress.total.completed)
            super().on_run_end()

    def configure(trainer):
        trainer.predict_loop.connect(epoch_loop=RecordingPredictionEpochLoop())

    reference = run(pl.Trainer, tmp_path / "pl", stages=("predict",), val=(24, 40))
    ours = run(alkit.Trainer, tmp_path / "alkit", stages=("predict",), val=(24, 40), configure=configure)
    assert_same_outputs(reference, ours)
    assert [len(p) for p in ours.outputs["predict"]] == [3, 5]
    loop = ours.trainer.predict_loop
    assert loop.epoch_loop.runs == [(0, 3, 2, 3, 3), (1, 5, 2, 5, 8)]
    assert loop.dataloader_progress.current.completed == loop.dataloader_progress.total.completed == 2
    assert loop.batch_progress.current.completed == 8


def test_replaced_epoch_loop_keeps_counting_on_the_evaluation_loop(tmp_path):
    def configure(trainer):
        trainer.test_loop.replace(epoch_loop=RecordingEvaluationEpochLoop)

    ours = run(alkit.Trainer, tmp_path, stages=("test",), val=(24, 40), configure=configure)
    loop = ours.trainer.test_loop
    assert isinstance(loop.epoch_loop, RecordingEvaluationEpochLoop)
    # test dataloaders are the validation sizes reversed: 5 batches, then 3
    assert [(r["dataloader_idx"], r["current"], r["total"]) for r in loop.epoch_loop.runs] == [(0, 5, 5), (1, 3, 8)]
    assert loop.batch_progress.total.completed == 8


# ----------------------------------------------------------------------------------------------------------------------
# identical to pytorch_lightning.Trainer: hooks, metrics per dataloader, outputs, weights
# ----------------------------------------------------------------------------------------------------------------------
SCENARIOS = {
    "fit_validate_test_predict": dict(stages=("fit", "validate", "test", "predict")),
    "three_dataloaders": dict(stages=("fit", "validate"), val=(16, 40, 8)),
    "empty_first_dataloader": dict(stages=("validate", "test"), val=(0, 24, 16)),
    "empty_middle_dataloader": dict(stages=("validate", "test"), val=(24, 0, 16)),
    "sanity_check_and_val_check_interval": dict(num_sanity_val_steps=4, val_check_interval=0.5),
    "limit_val_batches": dict(stages=("fit", "validate"), val=(24, 40), limit_val_batches=2),
    # Lightning's progress bar reads the evaluation loop's counters and dataloader lengths
    "progress_bar": dict(stages=("fit", "validate", "test", "predict"), enable_progress_bar=True),
    "unsized_first_dataloader": dict(stages=("fit", "validate"), val=(24, 40), unsized=(0,)),
    "unsized_dataloaders": dict(stages=("validate",), val=(16, 24, 8), unsized=(0, 1, 2)),
    "iterator_step": dict(stages=("fit", "validate"), module=IteratorStepModel, val=(24, 40)),
    "combined_max_size_cycle": dict(stages=("fit", "validate"), module=CombinedBatchModel, mode="max_size_cycle"),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_several_dataloaders_parity(name, tmp_path):
    kwargs = SCENARIOS[name]
    reference = run(pl.Trainer, tmp_path / "pl", **kwargs)
    ours = run(alkit.Trainer, tmp_path / "alkit", **kwargs)
    assert len(reference.hooks) > 40  # the recording really recorded
    assert_same_outputs(reference, ours)
    if "validate" in kwargs.get("stages", ()) and 0 not in kwargs.get("val", ()) and "module" not in kwargs:
        # one result per dataloader, each keyed with its dataloader's index (Lightning 2 drops the empty ones)
        suffixes = [sorted(r) for r in ours.outputs["validate"]]
        assert all(all(k.endswith(f"/dataloader_idx_{i}") for k in keys) for i, keys in enumerate(suffixes) if keys)


# ----------------------------------------------------------------------------------------------------------------------
# checkpoints written in the middle of validation: Lightning 2's layout, and a resume identical to Lightning's
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("trainer_for_first_half", [pl.Trainer, alkit.Trainer], ids=["from_pl_ckpt", "from_alkit"])
def test_resume_mid_validation_parity(tmp_path, trainer_for_first_half):
    ckpt = tmp_path / "mid_validation.ckpt"
    first = run(trainer_for_first_half, tmp_path / "first", save_mid_validation=ckpt, max_epochs=1 + 1)
    assert ckpt.exists()
    if trainer_for_first_half is alkit.Trainer:
        # the checkpoint alkit wrote mid-validation has Lightning's keys and values
        lightning_run = run(pl.Trainer, tmp_path / "first_pl", save_mid_validation=tmp_path / "pl.ckpt", max_epochs=2)
        a = torch.load(tmp_path / "pl.ckpt", weights_only=False)
        b = torch.load(ckpt, weights_only=False)
        assert_same_loop_state(a["loops"], b["loops"])
        assert_same_run(lightning_run, first)
    loops_state = torch.load(ckpt, weights_only=False)["loops"]["fit_loop"]
    assert loops_state["epoch_loop.val_loop.batch_progress"]["current"] == {
        "ready": 5,  # dataloader 0's 3 batches, then dataloader 1's second, in its step
        "started": 5,
        "processed": 4,
        "completed": 4,
    }
    reference = run(pl.Trainer, tmp_path / "pl", ckpt_path=str(ckpt), max_epochs=3)
    ours = run(alkit.Trainer, tmp_path / "alkit", ckpt_path=str(ckpt), max_epochs=3)
    assert_same_outputs(reference, ours)
    assert ours.trainer.global_step == reference.trainer.global_step == 15
    val_loop = ours.trainer.fit_loop.epoch_loop.val_loop
    assert val_loop.dataloader_progress.current.completed == 2
    assert val_loop.epoch_loop.batch_progress.current.completed == 5
