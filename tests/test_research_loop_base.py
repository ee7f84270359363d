"""What both research loops get from their one base: the same refusal of a step limit before any work, and
segment metrics recorded once (not also logged by Lightning's own evaluation pass)."""

from __future__ import annotations

import pytest

import alkit
from alkit.active.loop import ActiveLearningLoop
from alkit.kfold import kfold_fit
from alkit.lightning import pl
from tests.active.test_loop import TinyClassifier, make_data
from tests.kfold._helpers import BlobDataWithTest, Classifier


class NoTraining(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        raise AssertionError("training started before the bad setting was refused")


def test_active_learning_refuses_max_steps_before_any_work(tmp_path):
    trainer = alkit.Trainer(
        max_epochs=2,
        max_steps=5,
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[NoTraining()],
    )
    loop = ActiveLearningLoop()
    loop.connect(trainer.fit_loop)
    trainer.fit_loop = loop
    with pytest.raises(ValueError, match=r"max_steps=5\) is not supported by ActiveLearningLoop.*across rounds"):
        trainer.fit(TinyClassifier(), datamodule=make_data())


def test_kfold_refuses_max_steps_with_the_same_rule(tmp_path):
    with pytest.raises(ValueError, match=r"max_steps=7\) is not supported by KFoldLoop.*across folds"):
        kfold_fit(
            Classifier(),
            BlobDataWithTest(),
            k=2,
            max_epochs=1,
            max_steps=7,
            default_root_dir=tmp_path,
            callbacks=[NoTraining()],
            enable_progress_bar=False,
        )


class MetricLog(pl.loggers.Logger):
    """Every metrics dict logged, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.logged: list[dict] = []

    @property
    def name(self):
        return "memory"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.logged.append(dict(metrics))


def test_kfold_fold_metrics_are_logged_once_under_the_fold_name(tmp_path):
    logger = MetricLog()
    kfold_fit(
        Classifier(),
        BlobDataWithTest(),
        k=2,
        max_epochs=1,
        default_root_dir=tmp_path,
        logger=logger,
        enable_progress_bar=False,
        ensemble=False,
    )
    keys = [key for metrics in logger.logged for key in metrics]
    for fold in (0, 1):
        assert keys.count(f"fold_{fold}/test_acc") == 1
    assert "test_acc" not in keys  # the quiet test pass logged nothing of its own
