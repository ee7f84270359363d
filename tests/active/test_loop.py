"""ActiveLearningLoop: Flash's round semantics, final weights, one log per round, stopping, resume, DDP."""

from __future__ import annotations

import csv
import json
from typing import Any

import numpy as np
import pytest
import torch
from baal.active.stopping_criteria import LowAverageUncertaintyStoppingCriterion
from torch import nn

import alkit
import alkit.active.loop as loop_module
from alkit.active import ActiveLearningDataModule, ActiveLearningHistory
from alkit.active.loop import RESUME_CHECKPOINT, ActiveLearningLoop
from alkit.lightning import pl
from tests._versions import needs_exact_mid_epoch_resume
from tests.active.synthetic import TinyData
from tests.interrupt import KillAtEpoch, Killed

ModelCheckpoint = pl.callbacks.ModelCheckpoint
CSVLogger = pl.loggers.CSVLogger

QUIET = dict(enable_progress_bar=False, enable_model_summary=False)


class TinyClassifier(pl.LightningModule):
    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 16), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(16, 3)) if dropout else nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_acc", (self(x).argmax(-1) == y).float().mean())

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_acc", (self(x).argmax(-1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.9)


class Watch(pl.Callback):
    """Weights at the start and end of every fit segment, and the samples each segment trained on."""

    def __init__(self) -> None:
        self.starts: list[dict] = []
        self.ends: list[dict] = []
        self.trained_on: list[list[int]] = []

    def on_train_start(self, trainer, pl_module):
        self.starts.append({k: v.clone() for k, v in pl_module.state_dict().items()})
        self.trained_on.append(sorted(trainer.train_dataloader.dataset.indices))

    def on_train_end(self, trainer, pl_module):
        self.ends.append({k: v.clone() for k, v in pl_module.state_dict().items()})


def make_data(n=30, initial=6, query_size=2, with_test=True, seed=0, **kwargs) -> ActiveLearningDataModule:
    kwargs.setdefault("val_split", 0.33)
    return ActiveLearningDataModule(
        TinyData(n=n, with_test=with_test), initial_num_labels=initial, query_size=query_size, seed=seed, **kwargs
    )


def run(
    tmp_path,
    rounds=3,
    epochs=1,
    datamodule=None,
    model=None,
    callbacks=(),
    ckpt_path=None,
    trainer_kwargs=None,
    **loop_kwargs,
):
    torch.manual_seed(0)
    model = model or TinyClassifier()
    datamodule = datamodule or make_data()
    kwargs = dict(logger=False, enable_checkpointing=False, **QUIET)
    kwargs.update(trainer_kwargs or {})
    trainer = alkit.Trainer(max_epochs=rounds, default_root_dir=tmp_path, callbacks=list(callbacks), **kwargs)
    loop = ActiveLearningLoop(label_epoch_frequency=epochs, **loop_kwargs)
    loop.connect(trainer.fit_loop)
    trainer.fit_loop = loop
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer, loop, model, datamodule


def test_rounds_follow_flash_semantics(tmp_path):
    """max_epochs = rounds, label_epoch_frequency epochs each, counters keep growing (Flash restarted them)."""
    watch = Watch()
    trainer, loop, _, dm = run(tmp_path, rounds=3, epochs=2, callbacks=[watch])
    assert trainer.current_epoch == 6 and len(watch.starts) == 3
    assert [r.round for r in loop.history] == [0, 1, 2]
    assert [r.num_labelled for r in loop.history] == [4, 6, 8]  # 6 initial labels, 2 of them for validation
    assert [len(r.indices_added) for r in loop.history] == [2, 2, 0]
    assert dm.num_labelled == 6 + 4 and dm.val_indices.size == 2
    assert watch.trained_on[-1] == dm.train_indices.tolist()
    for record in loop.history:
        assert {"train_loss", "val_acc", "test_acc"} <= set(record.metrics)
        assert record.train_time_s > 0


def test_model_ends_with_weights_trained_on_the_final_labelled_set(tmp_path):
    """The model handed back is the trained one: Flash reset the weights after the last round."""
    watch = Watch()
    _, loop, model, dm = run(tmp_path, rounds=3, callbacks=[watch])
    final = model.state_dict()
    for name, value in watch.ends[-1].items():
        torch.testing.assert_close(final[name], value, rtol=0, atol=0)
    assert not torch.equal(final["head.1.weight"], watch.starts[0]["head.1.weight"])
    # every round started from the initial weights
    for start in watch.starts[1:]:
        torch.testing.assert_close(start["head.1.weight"], watch.starts[0]["head.1.weight"], rtol=0, atol=0)
    assert watch.trained_on[-1] == dm.train_indices.tolist() and loop.history[-1].indices_added == []


def test_weights_carry_over_without_reset(tmp_path):
    watch = Watch()
    run(tmp_path, rounds=2, callbacks=[watch], should_reset_weights=False)
    torch.testing.assert_close(watch.starts[1]["head.1.weight"], watch.ends[0]["head.1.weight"], rtol=0, atol=0)


def test_pool_is_not_scored_after_the_last_round(tmp_path, monkeypatch):
    calls = []
    original = loop_module.score_pool

    def counting(*args, **kwargs):
        calls.append(len(args[1].dataset))
        return original(*args, **kwargs)

    monkeypatch.setattr(loop_module, "score_pool", counting)
    _, loop, _, dm = run(tmp_path, rounds=4)
    assert len(calls) == 3  # rounds - 1
    assert calls[0] == 30 - 6  # the whole pool, every round
    assert dm.num_labelled == 6 + 3 * 2


def test_metrics_logged_once_per_round_and_history_saved_beside_the_logs(tmp_path):
    logger = CSVLogger(tmp_path, name="logs")
    run(tmp_path, rounds=3, trainer_kwargs={"logger": logger})
    with open(f"{logger.log_dir}/metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert "test_acc" not in rows[0]  # the per-round test pass is logged once, as al/test_acc
    assert sum(1 for row in rows if row.get("al/test_acc")) == 3
    assert [row["al/num_labelled"] for row in rows if row.get("al/round")] == ["4.0", "6.0", "8.0"]
    history = ActiveLearningHistory.load(f"{logger.log_dir}/active_learning_history.json")
    assert len(history) == 3
    assert ActiveLearningHistory.load(f"{logger.log_dir}/active_learning_history.csv") == history


def test_budget_limits_the_labels(tmp_path):
    _, loop, _, dm = run(tmp_path, rounds=6, budget=3)
    assert [len(r.indices_added) for r in loop.history] == [2, 1, 0]
    assert dm.num_labelled == 6 + 3


def test_max_rounds_overrides_max_epochs(tmp_path):
    trainer, loop, _, _ = run(tmp_path, rounds=1, max_rounds=2, epochs=2)
    assert len(loop.history) == 2 and trainer.current_epoch == 4


def test_stopping_criterion_stops_before_labelling(tmp_path):
    datamodule = make_data()
    criterion = LowAverageUncertaintyStoppingCriterion(datamodule.dataset, avg_uncertainty_thresh=1e9)
    watch = Watch()
    _, loop, model, dm = run(tmp_path, rounds=5, datamodule=datamodule, stopping_criterion=criterion, callbacks=[watch])
    assert len(loop.history) == 1 and loop.history[0].indices_added == [] and dm.num_labelled == 6
    torch.testing.assert_close(model.state_dict()["head.1.weight"], watch.ends[-1]["head.1.weight"], rtol=0, atol=0)


def test_empty_pool_ends_the_run(tmp_path):
    _, loop, _, dm = run(tmp_path, rounds=10, datamodule=make_data(n=10, initial=6, query_size=3))
    assert [len(r.indices_added) for r in loop.history] == [3, 1, 0]
    assert not dm.has_unlabelled_data


def test_model_without_dropout_is_refused_before_training(tmp_path):
    dm = make_data()
    before = dm.labelled_indices.copy()
    watch = Watch()
    with pytest.raises(ValueError, match="no dropout layer.*Nothing was trained"):
        run(tmp_path, model=TinyClassifier(dropout=0), datamodule=dm, callbacks=[watch])
    assert watch.starts == [] and np.array_equal(dm.labelled_indices, before)
    run(tmp_path, rounds=2, model=TinyClassifier(dropout=0), datamodule=make_data(heuristic="entropy"))


def test_wrong_datamodule_and_arguments_are_refused(tmp_path):
    with pytest.raises(TypeError, match="ActiveLearningDataModule"):
        run(tmp_path, datamodule=TinyData())
    for kwargs, name in [
        ({"label_epoch_frequency": 0}, "label_epoch_frequency"),
        ({"inference_iteration": 0}, "inference_iteration"),
        ({"max_rounds": 0}, "max_rounds"),
        ({"budget": -1}, "budget"),
    ]:
        with pytest.raises(ValueError, match=name):
            ActiveLearningLoop(**kwargs)
    with pytest.raises(TypeError, match="should_stop"):
        ActiveLearningLoop(stopping_criterion=object())


def comparable(history: ActiveLearningHistory) -> list[tuple]:
    return [(r.round, r.num_labelled, r.indices_added, r.metrics) for r in history]


@pytest.mark.parametrize(
    ("seed", "kill_epoch", "resume_from"),
    [
        (7, 4, "round"),
        (None, 4, "round"),
        pytest.param(7, 3, "last", marks=needs_exact_mid_epoch_resume),
        pytest.param(None, 3, "last", marks=needs_exact_mid_epoch_resume),
        (7, 4, "last"),
        (None, 4, "last"),
    ],
    ids=[
        "seed-round",
        "noseed-round",
        "seed-mid_training",
        "noseed-mid_training",
        "seed-end_training",
        "noseed-end_training",
    ],
)
def test_resumed_run_ends_like_an_uninterrupted_one(tmp_path, seed, kill_epoch, resume_from):
    """Interrupted (after a round or inside one) and resumed: same labelled set, history and final weights."""
    common = dict(rounds=4, epochs=2, seed=seed)
    _, reference_loop, reference_model, reference_dm = run(tmp_path / "ref", **common)

    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True, save_top_k=-1)
    with pytest.raises(Killed):
        run(
            tmp_path / "run",
            callbacks=[KillAtEpoch(kill_epoch), checkpoint],
            trainer_kwargs={"enable_checkpointing": True},
            **common,
        )
    path = tmp_path / "run" / RESUME_CHECKPOINT if resume_from == "round" else tmp_path / "ck" / "last.ckpt"
    trainer, loop, model, dm = run(tmp_path / "run", ckpt_path=path, **common)
    assert trainer.current_epoch == 8
    assert dm.labelled_indices.tolist() == reference_dm.labelled_indices.tolist()
    assert comparable(loop.history) == comparable(reference_loop.history)
    for name, value in reference_model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)


def test_resume_checkpoint_holds_labels_of_a_user_oracle(tmp_path):
    """Labels a person gave are in the per-round checkpoint; a checkpoint loads with weights_only=True."""
    dm = make_data(oracle=lambda indices, items: [1] * len(indices))
    run(tmp_path, rounds=2, datamodule=dm)
    checkpoint = torch.load(tmp_path / RESUME_CHECKPOINT, weights_only=True)
    (state,) = [v for k, v in checkpoint.items() if k.endswith("ActiveLearningDataModule")]
    assert set(state["label_overrides"].values()) == {1} and len(state["label_overrides"]) == 6 + 2


class RankRecorder(pl.Callback):
    """Writes each rank's labelled indices; perturbs each rank's RNG differently before scoring."""

    def __init__(self, folder) -> None:
        self.folder = folder

    def on_train_end(self, trainer, pl_module):
        torch.manual_seed(1000 + trainer.global_rank)  # ranks draw different dropout masks when scoring

    def on_fit_end(self, trainer, pl_module):
        labelled = trainer.datamodule.labelled_indices.tolist()
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(labelled))


def test_ddp_spawn_labels_the_same_samples_on_every_rank(tmp_path):
    dm = make_data(n=40, query_size=3, val_split=None, with_test=False)
    run(
        tmp_path,
        rounds=3,
        datamodule=dm,
        callbacks=[RankRecorder(tmp_path)],
        trainer_kwargs={"strategy": "ddp_spawn", "accelerator": "cpu", "devices": 2},
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1] and len(ranks[0]) == 6 + 2 * 3


def test_run_without_initial_labels_labels_before_training(tmp_path):
    with pytest.warns(UserWarning, match="No sample is labelled"):
        datamodule = ActiveLearningDataModule(TinyData(n=20, with_test=True), query_size=3, seed=0)
    watch = Watch()
    _, loop, _, _ = run(tmp_path, rounds=3, datamodule=datamodule, callbacks=[watch])
    assert [r.num_labelled for r in loop.history] == [0, 3, 6]
    assert len(watch.starts) == 2 and loop.history[0].metrics == {}  # nothing to train on in round 0
