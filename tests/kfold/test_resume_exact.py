"""A k-fold run resumed from any checkpoint it wrote gives exactly the uninterrupted run's folds, metrics and weights.

Both runs happen on the same machine in the same process, so results are compared with exact equality.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader

from alkit.kfold import kfold_fit
from tests.kfold._helpers import QUIET, BlobDataWithTest, Classifier

# 60 samples, k=3: 40 training samples per fold, batch 8 -> 5 steps per epoch, 2 epochs -> 10 steps per fold.
STEPS_PER_FOLD = 10


class _Killed(Exception):
    pass


class _KillAfterStep(Callback):
    """Stands for the process dying right after global step ``step`` (checkpoints written up to it are on disk)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise _Killed(f"killed after step {self.step}")


class _SeededLoaderData(BlobDataWithTest):
    """A training loader shuffled by its own seeded generator (the fold loaders get one per fold)."""

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(7)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=generator)


def _run(root, model, callbacks=(), every_n_train_steps=None, data=BlobDataWithTest, **kwargs):
    checkpoint = ModelCheckpoint(dirpath=root / "ckpts", save_last=True, every_n_train_steps=every_n_train_steps)
    settings = dict(QUIET, enable_checkpointing=True)
    return kfold_fit(
        model,
        data(),
        k=3,
        seed=1,
        max_epochs=2,
        callbacks=[checkpoint, *callbacks],
        default_root_dir=root,
        **settings,
        **kwargs,
    )


def _fold_weights(result):
    return [torch.load(path, weights_only=False)["state_dict"] for path in result.checkpoint_paths]


def _assert_same(a, b):
    da, db = a.to_dict(), b.to_dict()
    for key in ("val_metrics", "test_metrics", "train_indices", "val_indices", "ensemble_metrics", "oof_metrics"):
        assert da[key] == db[key], key
    assert a.oof_predictions is not None and not np.isnan(a.oof_predictions).any()
    np.testing.assert_array_equal(a.oof_predictions, b.oof_predictions)  # the finished folds' ones come from the file
    for wa, wb in zip(_fold_weights(a), _fold_weights(b), strict=True):
        assert wa.keys() == wb.keys()
        for name in wa:
            assert torch.equal(wa[name], wb[name]), name


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    model = Classifier()
    result = _run(root, model, every_n_train_steps=3)
    return model, result


@pytest.mark.parametrize(
    "kill_after, every_n_train_steps",
    [
        (13, 3),  # last.ckpt of step 12: inside the first epoch of fold 1
        (16, 5),  # last.ckpt of step 15: fold 1's first epoch ended, its second not started
        (19, 3),  # last.ckpt of step 18: inside fold 1's last epoch
    ],
)
def test_resume_from_a_mid_fold_last_ckpt_equals_the_uninterrupted_run(
    tmp_path, uninterrupted, kill_after, every_n_train_steps
):
    model, expected = uninterrupted
    root = tmp_path / "run"
    with pytest.raises(_Killed):
        _run(root, model, callbacks=[_KillAfterStep(kill_after)], every_n_train_steps=every_n_train_steps)
    last = root / "ckpts" / "fold_1" / "last.ckpt"
    assert last.is_file()
    assert STEPS_PER_FOLD <= torch.load(last, weights_only=False)["global_step"] < 2 * STEPS_PER_FOLD
    resumed = _run(root, model, every_n_train_steps=every_n_train_steps, ckpt_path=last)
    _assert_same(expected, resumed)


@pytest.mark.parametrize("fold_checkpoint", ["fold_0.ckpt", "fold_1.ckpt"])
def test_resume_from_a_fold_boundary_checkpoint_equals_the_uninterrupted_run(tmp_path, uninterrupted, fold_checkpoint):
    model, expected = uninterrupted
    root = tmp_path / "run"
    with pytest.raises(_Killed):
        _run(root, model, callbacks=[_KillAfterStep(2 * STEPS_PER_FOLD + 3)], every_n_train_steps=3)
    resumed = _run(root, model, every_n_train_steps=3, ckpt_path=root / "kfold" / fold_checkpoint)
    _assert_same(expected, resumed)


def test_mid_epoch_resume_with_a_seeded_training_loader_equals_the_uninterrupted_run(tmp_path):
    model = Classifier()
    expected = _run(tmp_path / "a", model, every_n_train_steps=3, data=_SeededLoaderData)
    with pytest.raises(_Killed):
        _run(tmp_path / "b", model, callbacks=[_KillAfterStep(13)], every_n_train_steps=3, data=_SeededLoaderData)
    resumed = _run(
        tmp_path / "b",
        model,
        every_n_train_steps=3,
        data=_SeededLoaderData,
        ckpt_path=tmp_path / "b" / "ckpts" / "fold_1" / "last.ckpt",
    )
    _assert_same(expected, resumed)
