"""Out-of-fold predictions: every sample predicted once per repeat, by the one fold model that never trained on it."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import RepeatedKFold
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from alkit.kfold import KFoldDataModule, KFoldResult, kfold_fit
from alkit.lightning import pl
from tests.kfold._helpers import QUIET, BlobData, Classifier

N = 24


class _Indexed(pl.LightningDataModule):
    """Sample ``i`` is the input ``[i]`` with a float target: the model can see which samples it trained on."""

    def setup(self, stage: str) -> None:
        x = torch.arange(N, dtype=torch.float32).unsqueeze(1)
        self.train_set = TensorDataset(x, (torch.arange(N) % 2).float())

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=5, shuffle=True)


class _Memoriser(pl.LightningModule):
    """Remembers the samples it trained on; its output says whether it saw the input and which training set it had.

    Output per sample: ``[trained on this sample, number of training samples, sum of their indices]``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.register_buffer("seen", torch.zeros(N))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = x[:, 0].long()
        rows = len(index)
        summary = torch.stack([self.seen.sum(), (self.seen * torch.arange(N, dtype=torch.float32)).sum()])
        return torch.cat([self.seen[index].unsqueeze(1), summary.expand(rows, 2)], dim=1) + 0 * self.w

    def training_step(self, batch, batch_idx):
        x, _ = batch
        self.seen[x[:, 0].long()] = 1.0
        return (self.w**2).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val_seen", self(batch[0])[:, 0].mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_every_sample_is_predicted_once_per_repeat_by_the_model_that_held_it_out(tmp_path):
    result = kfold_fit(
        _Memoriser(),
        _Indexed(),
        cv=RepeatedKFold(n_splits=3, n_repeats=2, random_state=0),
        max_epochs=1,
        ensemble=False,
        default_root_dir=tmp_path,
        **QUIET,
    )
    assert result.num_folds == 6 and result.n_repeats == 2 and result.oof_task == "regression"
    predictions = result.oof_predictions
    assert predictions.shape == (2, N, 3)  # one prediction per repeat, aligned with the dataset indices
    assert not np.isnan(predictions).any()  # every sample held out (so predicted) in every repeat
    np.testing.assert_array_equal(predictions[..., 0], 0.0)  # no prediction comes from a model trained on it
    for fold, (train, held_out) in enumerate(zip(result.train_indices, result.val_indices)):
        repeat = result.fold_repeats[fold]
        # exactly the fold model whose training set is fold's (same size, same indices) predicted its held-out part
        np.testing.assert_array_equal(predictions[repeat, held_out, 1], len(train))
        np.testing.assert_array_equal(predictions[repeat, held_out, 2], train.sum())
    np.testing.assert_array_equal(result.oof_targets, np.arange(N) % 2)


def test_classifier_oof_are_probabilities_whose_accuracy_is_the_folds_held_out_accuracy(tmp_path):
    datamodule = KFoldDataModule(BlobData(n=60, with_test=False), cv=3, stratify=True, seed=0)
    result = kfold_fit(Classifier(), datamodule, seed=0, max_epochs=2, default_root_dir=tmp_path, **QUIET)

    for fold, shared in zip(range(result.num_folds), datamodule.folds):  # one Folds object, not copies
        assert result.val_indices[fold] is shared.val_indices
    assert result.fingerprint == datamodule.folds.fingerprint
    probabilities = result.oof_predictions
    assert result.oof_task == "classification" and probabilities.shape == (60, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    # the same fold models on the same held-out samples: equal-sized folds make the OOF accuracy their mean
    assert result.oof_metrics["accuracy"] == pytest.approx(result.mean("val_acc"), abs=1e-6)
    assert "out-of-fold: accuracy=" in str(result)

    saved = tmp_path / "kfold" / "kfold_result.oof.npz"
    with np.load(saved, allow_pickle=False) as data:  # plain arrays: loading runs no code
        np.testing.assert_array_equal(data["predictions"][0], probabilities)
    loaded = KFoldResult.from_json(tmp_path / "kfold" / "kfold_result.json")
    np.testing.assert_array_equal(loaded.oof_predictions, probabilities)
    assert loaded.oof_metrics == result.oof_metrics


def test_oof_false_skips_the_predictions(tmp_path):
    result = kfold_fit(
        Classifier(), BlobData(n=30, with_test=False), k=2, oof=False, max_epochs=1, default_root_dir=tmp_path, **QUIET
    )
    assert result.oof_predictions is None and result.oof_metrics == {}
    assert not (tmp_path / "kfold" / "kfold_result.oof.npz").exists()
    with pytest.raises(TypeError, match="oof='yes' is invalid: expected True or False"):
        kfold_fit(Classifier(), BlobData(n=30, with_test=False), k=2, oof="yes", default_root_dir=tmp_path, **QUIET)


def test_predicting_changes_nothing_that_follows(tmp_path):
    """No seed: later folds train on torch's global RNG stream, which the prediction pass leaves untouched."""
    runs = {}
    for oof in (True, False):
        torch.manual_seed(0)
        runs[oof] = kfold_fit(
            Classifier(),
            BlobData(n=30, with_test=False),
            k=3,
            oof=oof,
            max_epochs=1,
            default_root_dir=tmp_path,
            **QUIET,
        )
    assert runs[True].val_metrics == runs[False].val_metrics


class _TupleOutput(Classifier):
    """A model whose forward returns (logits, features): out-of-fold predictions cannot use that as it is."""

    def forward(self, x):
        return self.net(x), x

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self(x)[0].argmax(-1) == y).float().mean())

    def training_step(self, batch, batch_idx):
        raise AssertionError("refused only after a fold trained")


def test_a_model_whose_output_cannot_be_placed_is_refused_before_any_training(tmp_path):
    with pytest.raises(
        TypeError, match=r"the fold model returned tuple .* need a tensor with one row per sample.*oof="
    ):
        kfold_fit(
            _TupleOutput(), BlobData(n=30, with_test=False), k=2, max_epochs=1, default_root_dir=tmp_path, **QUIET
        )
