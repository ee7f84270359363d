"""EnsembleVotingModel: soft vote of the fold checkpoints, and test metrics computed from that vote."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from alkit.kfold import EnsembleVotingModel
from alkit.lightning import pl


class _Linear(pl.LightningModule):
    def __init__(self, num_features=4, num_classes=3):
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(num_features, num_classes)

    def forward(self, x):
        return self.layer(x)


def _checkpoints(tmp_path, n=3):
    paths, models = [], []
    for i in range(n):
        torch.manual_seed(i)
        model = _Linear()
        path = tmp_path / f"fold_{i}.ckpt"
        checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
        torch.save({**checkpoint, "pytorch-lightning_version": pl.__version__}, path)
        paths.append(path)
        models.append(model)
    return paths, models


@pytest.mark.parametrize("as_class", [False, True])
def test_forward_is_the_mean_of_the_fold_models_softmax(tmp_path, as_class):
    paths, models = _checkpoints(tmp_path)
    template = _Linear()
    ensemble = EnsembleVotingModel(_Linear if as_class else template, paths)
    x = torch.randn(5, 4)
    expected = torch.stack([F.softmax(m(x), dim=-1) for m in models]).mean(0)
    torch.testing.assert_close(ensemble(x), expected)
    assert ensemble.models[0] is not template  # the template is never modified
    assert not torch.equal(template.layer.weight, models[0].layer.weight)


def test_test_step_logs_accuracy_and_nll_of_the_vote(tmp_path):
    paths, models = _checkpoints(tmp_path)
    ensemble = EnsembleVotingModel(_Linear(), paths)
    x = torch.randn(23, 4)
    y = torch.randint(0, 3, (23,))
    trainer = pl.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )  # fmt: skip
    (metrics,) = trainer.test(ensemble, DataLoader(TensorDataset(x, y), batch_size=5), verbose=False)
    probs = torch.stack([F.softmax(m(x), dim=-1) for m in models]).mean(0)
    assert metrics["test_acc"] == pytest.approx((probs.argmax(-1) == y).float().mean().item(), abs=1e-6)
    assert metrics["test_loss"] == pytest.approx(F.nll_loss(probs.log(), y).item(), abs=1e-5)


def test_dict_batches_are_understood(tmp_path):
    paths, _ = _checkpoints(tmp_path, n=1)
    ensemble = EnsembleVotingModel(_Linear(), paths)
    x, y = ensemble.unpack_batch({"input": torch.ones(2, 4), "target": torch.tensor([0, 1])})
    assert x.shape == (2, 4) and y.tolist() == [0, 1]
    with pytest.raises(ValueError, match="cannot find inputs/targets"):
        ensemble.unpack_batch({"image": torch.ones(1)})


def test_bad_input_is_rejected(tmp_path):
    paths, _ = _checkpoints(tmp_path, n=1)
    with pytest.raises(ValueError, match=r"checkpoint_paths=\[\] is invalid"):
        EnsembleVotingModel(_Linear(), [])
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        EnsembleVotingModel(_Linear(), [tmp_path / "missing.ckpt"])
    with pytest.raises(TypeError, match=r"model=.* expected a LightningModule instance"):
        EnsembleVotingModel(nn.Linear(4, 3), paths)
