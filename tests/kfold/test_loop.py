"""KFoldLoop / kfold_fit: every fold really starts over, every fold is reported, runs are reproducible and resumable."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

import alkit
from alkit.kfold import BaseKFoldDataModule, KFoldDataModule, KFoldLoop, KFoldResult, kfold_fit
from alkit.lightning import pl
from tests.kfold._helpers import QUIET, BlobData, BlobDataWithTest, Classifier

Callback = pl.callbacks.Callback
EarlyStopping = pl.callbacks.EarlyStopping
ModelCheckpoint = pl.callbacks.ModelCheckpoint
CSVLogger = pl.loggers.CSVLogger


def _quiet(tmp_path, **overrides):
    return {**QUIET, "default_root_dir": tmp_path, **overrides}


def _run_loop(tmp_path, model, datamodule, num_folds=3, max_epochs=2, callbacks=(), **trainer_kwargs):
    """The Lightning-example way: attach the loop to a trainer by hand."""
    trainer = alkit.Trainer(max_epochs=max_epochs, callbacks=list(callbacks), **_quiet(tmp_path, **trainer_kwargs))
    loop = KFoldLoop(num_folds, export_path=tmp_path / "folds", seed=0)
    loop.connect(trainer.fit_loop)
    trainer.fit_loop = loop
    trainer.fit(model, datamodule=datamodule)
    return trainer, loop


def _fold_starts(model, epochs_per_fold):
    return [s for s in model.starts if s["batch_idx"] == 0 and s["epoch"] % epochs_per_fold == 0]


# ---------------------------------------------------------------------------------------------- fresh folds
def test_every_fold_starts_from_the_initial_weights_with_a_fresh_optimizer_and_the_initial_lr(tmp_path):
    model = Classifier(lr=0.5, gamma=0.5, record=True)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    _run_loop(tmp_path, model, KFoldDataModule(BlobDataWithTest()), num_folds=3, max_epochs=2)

    starts = _fold_starts(model, 2)
    assert [s["fold"] for s in starts] == [0, 1, 2]
    for start in starts:
        for name, value in initial.items():
            torch.testing.assert_close(start["weights"][name], value, rtol=0, atol=0)
        assert start["lr"] == 0.5  # Lightning's example: 1.0, 0.028, 8e-4, ... (scheduler carried across folds)
        assert start["optimizer_state_size"] == 0  # no momentum buffers from the previous fold
    assert len({s["optimizer_id"] for s in starts}) == 3
    # the resets were needed: within a fold the scheduler decays the LR and training moves the weights
    second_epoch = [s for s in model.starts if s["epoch"] == 1 and s["batch_idx"] == 0][0]
    assert second_epoch["lr"] == 0.25
    assert not torch.equal(second_epoch["weights"]["net.0.weight"], initial["net.0.weight"])
    # the fold models live in their checkpoints; the module is handed back with its initial weights
    for name, value in initial.items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)


def test_kfold_fit_reports_every_fold_not_only_the_ensemble(tmp_path):
    # well-separated blobs and a moderate LR: every fold reaches >= 0.9 (val and test) over 80 seeds, so the 0.6
    # threshold below holds on any CPU; with the default blobs and LR 0.5 a 20-sample fold scored as low as 0.4
    data = BlobDataWithTest(spread=4.0)
    result = kfold_fit(Classifier(lr=0.1), data, k=3, seed=0, max_epochs=3, **_quiet(tmp_path))
    assert isinstance(result, KFoldResult)
    assert result.num_folds == 3
    assert result.fold_sizes == [(40, 20)] * 3
    assert set(result.metric_names) == {"val_loss", "val_acc", "test_acc"}
    # every fold learned (chance is 1/3) and is reported; that each fold starts with a fresh optimizer and the
    # initial LR is asserted directly in test_every_fold_starts_from_the_initial_weights_...
    assert all(m["val_acc"] > 0.6 for m in result.val_metrics), result.val_metrics
    assert all(m["test_acc"] > 0.6 for m in result.test_metrics), result.test_metrics
    assert set(result.ensemble_metrics) == {"test_acc", "test_loss"}
    assert result.ensemble_metrics["test_acc"] > 0.6
    held_out = np.sort(np.concatenate(result.val_indices))
    np.testing.assert_array_equal(held_out, np.arange(60))
    for path in result.checkpoint_paths:
        assert torch.load(path, weights_only=False)["state_dict"]
    saved = json.loads((tmp_path / "kfold" / "kfold_result.json").read_text())
    assert saved.pop("oof_file") == "kfold_result.oof.npz"  # the out-of-fold predictions, beside it
    assert saved == json.loads(json.dumps(result.to_dict()))


@pytest.mark.parametrize("trainer_kwargs", [{}, {"check_val_every_n_epoch": 2}], ids=["reused", "recomputed"])
def test_fold_val_metrics_are_those_of_the_final_fold_model(tmp_path, trainer_kwargs):
    """Taken from fit's last validation when it ran after the last step, else from a fresh validation pass."""
    data = BlobDataWithTest()
    result = kfold_fit(Classifier(), data, k=2, seed=0, max_epochs=3, **_quiet(tmp_path), **trainer_kwargs)
    data.setup("fit")
    for fold, path in enumerate(result.checkpoint_paths):
        model = Classifier()
        model.load_state_dict(torch.load(path, weights_only=False)["state_dict"])
        held_out = torch.utils.data.Subset(data.train_set, result.val_indices[fold].tolist())
        (expected,) = pl.Trainer(**_quiet(tmp_path)).validate(
            model, torch.utils.data.DataLoader(held_out, batch_size=8), verbose=False
        )
        assert result.val_metrics[fold] == pytest.approx(expected, abs=1e-6)


def test_the_model_passed_to_kfold_fit_is_left_unchanged(tmp_path):
    model = Classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kfold_fit(model, BlobDataWithTest(), k=2, max_epochs=1, **_quiet(tmp_path))
    for name, value in before.items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)
    assert model._trainer is None


def test_same_seed_gives_the_same_folds_and_the_same_metrics(tmp_path):
    model = Classifier()  # kfold_fit leaves it untouched, so both runs start from the same weights
    runs = [
        kfold_fit(model, BlobDataWithTest(), k=3, seed=7, max_epochs=2, **_quiet(tmp_path / str(i))) for i in range(2)
    ]
    other = kfold_fit(model, BlobDataWithTest(), k=3, seed=8, max_epochs=1, **_quiet(tmp_path / "other"))
    a, b = (r.to_dict() for r in runs)
    for key in ("val_metrics", "test_metrics", "val_indices", "train_indices", "ensemble_metrics"):
        assert a[key] == b[key], key
    assert a["val_indices"] != other.to_dict()["val_indices"]


def test_without_test_data_folds_are_validated_and_no_ensemble_is_built(tmp_path):
    result = kfold_fit(Classifier(), BlobData(), k=2, max_epochs=1, **_quiet(tmp_path))
    assert result.test_metrics == [{}, {}]
    assert all("val_acc" in m for m in result.val_metrics)
    assert result.ensemble_metrics is None


def test_ensemble_can_be_switched_off(tmp_path):
    result = kfold_fit(Classifier(), BlobDataWithTest(), k=2, max_epochs=1, ensemble=False, **_quiet(tmp_path))
    assert result.ensemble_metrics is None
    assert all("test_acc" in m for m in result.test_metrics)


class _EvenOddFolds(BaseKFoldDataModule):
    """A user's own fold logic through the two-method protocol: fold i holds out the samples with index % k == i."""

    def setup(self, stage):
        self.data = BlobDataWithTest()
        self.data.setup(stage)

    def setup_folds(self, num_folds):
        self.num_folds = num_folds

    def setup_fold_index(self, fold_index):
        n = len(self.data.train_set)
        self.train_part = Subset(self.data.train_set, [i for i in range(n) if i % self.num_folds != fold_index])
        self.val_part = Subset(self.data.train_set, [i for i in range(n) if i % self.num_folds == fold_index])

    def train_dataloader(self):
        return DataLoader(self.train_part, batch_size=8, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_part, batch_size=8)

    def test_dataloader(self):
        return DataLoader(self.data.test_set, batch_size=8)


def test_a_user_defined_fold_datamodule_works_through_the_protocol(tmp_path):
    result = kfold_fit(Classifier(), _EvenOddFolds(), k=2, seed=0, max_epochs=1, **_quiet(tmp_path))
    assert result.num_folds == 2
    assert all("val_acc" in m for m in result.val_metrics) and all("test_acc" in m for m in result.test_metrics)
    assert result.ensemble_metrics is not None
    with pytest.raises(ValueError, match="already defines its folds"):
        kfold_fit(Classifier(), _EvenOddFolds(), k=2, stratify=True, **_quiet(tmp_path))


# ---------------------------------------------------------------------------------------------- callbacks, logs
class _CallbackStateRecorder(Callback):
    def __init__(self):
        self.fold_starts = []
        self.epochs_per_fold = {}

    def on_train_start(self, trainer, pl_module):
        early, checkpoint = trainer.early_stopping_callback, trainer.checkpoint_callback
        self.fold_starts.append(
            {
                "fold": trainer.fit_loop.current_fold,
                "early_best": float(early.best_score),
                "early_wait": early.wait_count,
                "checkpoint_best": checkpoint.best_model_score,
                "checkpoint_dir": checkpoint.dirpath,
                "progress": trainer.progress_bar_metrics.get("fold"),
            }
        )

    def on_train_epoch_start(self, trainer, pl_module):
        fold = trainer.fit_loop.current_fold
        self.epochs_per_fold[fold] = self.epochs_per_fold.get(fold, 0) + 1


def test_stateful_callbacks_start_fresh_and_each_fold_has_its_own_checkpoint_dir(tmp_path):
    recorder = _CallbackStateRecorder()
    # stops at the 2nd validation of a fold; state leaked from the previous fold would stop it after the 1st
    early = EarlyStopping(monitor="val_loss", patience=0, min_delta=10.0)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_acc", mode="max", save_top_k=1)
    _run_loop(
        tmp_path,
        Classifier(),
        KFoldDataModule(BlobDataWithTest()),
        num_folds=3,
        max_epochs=4,
        callbacks=[recorder, early, checkpoint],
        enable_checkpointing=True,
    )
    assert recorder.epochs_per_fold == {0: 2, 1: 2, 2: 2}
    for fold, start in enumerate(recorder.fold_starts):
        assert start["fold"] == fold
        assert start["early_best"] == float("inf") and start["early_wait"] == 0
        assert start["checkpoint_best"] is None
        assert start["checkpoint_dir"] == str(tmp_path / "ckpts" / f"fold_{fold}")
        assert start["progress"] == f"{fold + 1}/3"
        assert len(list((tmp_path / "ckpts" / f"fold_{fold}").glob("*.ckpt"))) == 1
    assert sorted(p.name for p in (tmp_path / "folds").glob("*.ckpt")) == ["fold_0.ckpt", "fold_1.ckpt", "fold_2.ckpt"]


def test_metrics_are_logged_per_fold_once_and_steps_keep_increasing(tmp_path):
    logger = CSVLogger(tmp_path, name="logs")
    kfold_fit(
        Classifier(),
        BlobDataWithTest(),
        k=2,
        max_epochs=2,
        logger=logger,
        log_every_n_steps=1,
        **{k: v for k, v in _quiet(tmp_path).items() if k != "logger"},
    )
    import pandas as pd

    frame = pd.read_csv(next((tmp_path / "logs").rglob("metrics.csv")))
    for fold in range(2):
        for name in ("val_acc", "val_loss", "test_acc"):
            assert frame[f"fold_{fold}/{name}"].notna().sum() == 1, (fold, name)
    assert frame["ensemble/test_acc"].notna().sum() == 1
    assert "test_acc" not in frame.columns  # the per-fold test passes are logged under their fold only
    val_steps = frame.loc[frame["val_acc"].notna(), "step"].tolist()
    assert len(val_steps) == 4 and val_steps == sorted(val_steps) and len(set(val_steps)) == 4


# ---------------------------------------------------------------------------------------------- resume
class _Interrupt(Exception):
    pass


class _InterruptAt(Callback):
    def __init__(self, fold, epoch_in_fold=0, epochs_per_fold=2):
        self.fold, self.epoch_in_fold, self.epochs_per_fold = fold, epoch_in_fold, epochs_per_fold

    def on_train_epoch_start(self, trainer, pl_module):
        loop = trainer.fit_loop
        if loop.current_fold == self.fold and trainer.current_epoch % self.epochs_per_fold == self.epoch_in_fold:
            raise _Interrupt(f"interrupted in fold {self.fold}")


class _EpochCounter(Callback):
    def __init__(self):
        self.folds = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.folds.append(trainer.fit_loop.current_fold)


def test_resume_from_a_fold_checkpoint_continues_at_the_next_fold_with_identical_results(tmp_path):
    model = Classifier()

    def run(root, **kwargs):
        return kfold_fit(model, BlobDataWithTest(), k=3, seed=1, max_epochs=2, **_quiet(root), **kwargs)

    uninterrupted = run(tmp_path / "a")
    with pytest.raises(_Interrupt):
        run(tmp_path / "b", callbacks=[_InterruptAt(fold=2)])
    counter = _EpochCounter()
    resumed = run(tmp_path / "b", callbacks=[counter], ckpt_path=tmp_path / "b" / "kfold" / "fold_1.ckpt")

    assert counter.folds == [2, 2]  # folds 0 and 1 were not trained again
    a, b = uninterrupted.to_dict(), resumed.to_dict()
    for key in ("val_metrics", "test_metrics", "val_indices", "ensemble_metrics"):
        assert a[key] == b[key], key


def test_resume_from_a_mid_fold_checkpoint_finishes_that_fold_then_the_rest(tmp_path):
    def run(**kwargs):
        checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True)
        callbacks = [checkpoint, *kwargs.pop("callbacks", [])]
        return kfold_fit(
            Classifier(),
            BlobDataWithTest(),
            k=3,
            seed=1,
            max_epochs=2,
            callbacks=callbacks,
            **_quiet(tmp_path, enable_checkpointing=True),
            **kwargs,
        )

    with pytest.raises(_Interrupt):
        run(callbacks=[_InterruptAt(fold=1, epoch_in_fold=1)])
    last = tmp_path / "ckpts" / "fold_1" / "last.ckpt"
    assert last.is_file()
    saved = torch.load(tmp_path / "kfold" / "fold_0.ckpt", weights_only=False)["loops"]["fit_loop"]["state_dict"]
    first_fold = [record["val"] for record in saved["records"]]
    counter = _EpochCounter()
    result = run(callbacks=[counter], ckpt_path=last)
    assert counter.folds == [1, 2, 2]  # the second epoch of fold 1, then fold 2
    assert result.num_folds == 3
    assert result.val_metrics[0] == pytest.approx(first_fold[0])
    assert all("test_acc" in m for m in result.test_metrics)


def test_resuming_with_other_folds_is_refused(tmp_path):
    kfold_fit(Classifier(), BlobDataWithTest(), k=3, seed=1, max_epochs=1, **_quiet(tmp_path))
    checkpoint = tmp_path / "kfold" / "fold_0.ckpt"
    with pytest.raises(RuntimeError, match="different folds than the interrupted one"):
        kfold_fit(Classifier(), BlobDataWithTest(), k=3, seed=2, max_epochs=1, ckpt_path=checkpoint, **_quiet(tmp_path))
    with pytest.raises(ValueError, match="num_folds=3, but this one has num_folds=2"):
        kfold_fit(Classifier(), BlobDataWithTest(), k=2, seed=1, max_epochs=1, ckpt_path=checkpoint, **_quiet(tmp_path))


# ---------------------------------------------------------------------------------------------- bad input
class _NoTrainingData(pl.LightningDataModule):
    pass


class _Untouchable(Classifier):
    def training_step(self, batch, batch_idx):
        raise AssertionError("no training may happen for bad input")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 1}, ValueError, r"k=1 is invalid"),
        ({"k": 61}, ValueError, r"k=61 is larger than the number of training samples \(60\)"),
        ({"k": 21, "stratify": True}, ValueError, r"k=21 is larger than the smallest class"),
        ({"k": 2, "groups": [0, 1, 2]}, ValueError, r"groups has length 3 but the training set has 60 samples"),
        ({"splitter": "kfold"}, TypeError, r"splitter='kfold' is invalid: it has no split"),
        ({"max_steps": 10}, ValueError, r"max_steps=10\) is not supported by KFoldLoop"),
    ],
)
def test_bad_input_is_rejected_before_any_training(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        kfold_fit(_Untouchable(), BlobDataWithTest(), **{"max_epochs": 1, **kwargs}, **_quiet(tmp_path))


def test_a_datamodule_without_training_data_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="has no training data"):
        kfold_fit(_Untouchable(), _NoTrainingData(), k=2, **_quiet(tmp_path))


def test_a_plain_lightning_trainer_is_rejected():
    with pytest.raises(TypeError, match=r"trainer=Trainer is invalid: kfold_fit needs an alkit.Trainer"):
        kfold_fit(_Untouchable(), BlobDataWithTest(), trainer=pl.Trainer(logger=False))


def test_trainer_and_trainer_arguments_together_are_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"pass either trainer= or Trainer arguments, not both \(got trainer and"):
        kfold_fit(_Untouchable(), BlobDataWithTest(), trainer=alkit.Trainer(logger=False), max_epochs=2)


def test_the_loop_needs_a_kfold_datamodule(tmp_path):
    with pytest.raises(TypeError, match="KFoldLoop needs a BaseKFoldDataModule, got BlobDataWithTest"):
        _run_loop(tmp_path, _Untouchable(), BlobDataWithTest(), num_sanity_val_steps=0)


def test_num_folds_must_be_at_least_two():
    with pytest.raises(ValueError, match="num_folds=1 is invalid"):
        KFoldLoop(1)
