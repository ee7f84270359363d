"""A research loop resumes only from a checkpoint of its own kind of run; anything else is refused before training.

Each research loop writes a kind marker (``"k-fold"``, ``"active-learning"``) into its checkpoint state. A k-fold
checkpoint handed to an active-learning run, an active-learning one handed to a k-fold run, or a plain Lightning
checkpoint (no research-loop state) handed to either is an error naming both kinds; a plain checkpoint's weights can
still be used by loading them into the model (``load_state_dict``) before ``fit`` without ``ckpt_path``.
"""

from __future__ import annotations

import pytest

import alkit
from alkit.active import ActiveLearningDataModule
from alkit.active.loop import RESUME_CHECKPOINT, ActiveLearningLoop
from alkit.kfold import kfold_fit
from alkit.lightning import pl
from tests.active.synthetic import TinyData
from tests.kfold._helpers import QUIET, BlobDataWithTest, Classifier


class _NoTraining(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        raise AssertionError("trained from a checkpoint of the wrong kind")


def _active_learning(root, ckpt_path=None, callbacks=()):
    trainer = alkit.Trainer(max_epochs=3, default_root_dir=root, callbacks=list(callbacks), **QUIET)
    loop = ActiveLearningLoop(label_epoch_frequency=1, seed=0, export_path=root)
    loop.connect(trainer.fit_loop)
    trainer.fit_loop = loop
    datamodule = ActiveLearningDataModule(TinyData(n=30), initial_num_labels=6, query_size=2, seed=0, val_split=0.33)
    trainer.fit(Classifier(), datamodule=datamodule, ckpt_path=ckpt_path)
    return loop


def _kfold(root, ckpt_path=None, callbacks=()):
    return kfold_fit(
        Classifier(),
        BlobDataWithTest(),
        k=2,
        seed=0,
        max_epochs=1,
        default_root_dir=root,
        callbacks=list(callbacks),
        ckpt_path=ckpt_path,
        **QUIET,
    )


def _plain(root):
    trainer = pl.Trainer(max_epochs=1, default_root_dir=root, **QUIET)
    trainer.fit(Classifier(), datamodule=BlobDataWithTest())
    path = root / "plain.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    _kfold(root / "kfold")
    _active_learning(root / "al")
    return {
        "k-fold": root / "kfold" / "kfold" / "fold_0.ckpt",
        "active-learning": root / "al" / RESUME_CHECKPOINT,
        "plain": _plain(root / "plain"),
    }


def test_a_k_fold_checkpoint_is_refused_by_an_active_learning_run(tmp_path, checkpoints):
    match = r"written by a k-fold run.*this is an active-learning run"
    with pytest.raises(ValueError, match=match):
        _active_learning(tmp_path, ckpt_path=checkpoints["k-fold"], callbacks=[_NoTraining()])


def test_an_active_learning_checkpoint_is_refused_by_a_k_fold_run(tmp_path, checkpoints):
    match = r"written by an active-learning run.*this is a k-fold run"
    with pytest.raises(ValueError, match=match):
        _kfold(tmp_path, ckpt_path=checkpoints["active-learning"], callbacks=[_NoTraining()])


@pytest.mark.parametrize("run, kind", [(_kfold, "a k-fold"), (_active_learning, "an active-learning")])
def test_a_plain_lightning_checkpoint_is_refused_by_a_research_loop(tmp_path, checkpoints, run, kind):
    match = rf"not {kind} checkpoint: it holds no research-loop state \(a plain Lightning fit's\)"
    with pytest.raises(ValueError, match=match):
        run(tmp_path, ckpt_path=checkpoints["plain"], callbacks=[_NoTraining()])


def test_checkpoints_of_the_same_kind_still_resume(tmp_path, checkpoints):
    assert _kfold(tmp_path / "k", ckpt_path=checkpoints["k-fold"]).num_folds == 2
    assert len(_active_learning(tmp_path / "a", ckpt_path=checkpoints["active-learning"]).history) == 3
