"""alkit.finetuning: each strategy freezes/unfreezes what it says, with a plain pytorch_lightning.Trainer."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from alkit.finetuning import FreezeUnfreeze, make_finetuning_callback
from alkit.lightning import pl
from alkit.vision import ImageClassificationData, ImageClassifier
from tests.vision.conftest import make_tree


class TinyNet(pl.LightningModule):
    """The finetuning protocol in its smallest form: a ``backbone`` (with BatchNorm) and a head."""

    def __init__(self, filter_frozen: bool = True) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 4, 3),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4, 2)
        self.filter_frozen = filter_frozen
        self.bn_training_per_epoch: dict[int, set[bool]] = {}

    def forward(self, x):
        return self.head(self.backbone(x))

    def training_step(self, batch, batch_idx):
        modes = {m.training for m in self.backbone.modules() if isinstance(m, nn.BatchNorm2d)}
        self.bn_training_per_epoch.setdefault(self.current_epoch, set()).update(modes)
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad] if self.filter_frozen else self.parameters()
        return torch.optim.SGD(params, lr=0.1)


def _loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 8, 8, generator=generator) * 2 + 1  # off-centre so BatchNorm statistics move
    y = torch.randint(0, 2, (16,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=4)


class Snapshots(pl.Callback):
    """The module's full state (parameters and BatchNorm buffers) at the end of every training epoch."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.states.append(copy.deepcopy(pl_module.state_dict()))


class RebuildOptimizers(pl.Callback):
    """What the k-fold and active-learning loops do between segments: rebuild the optimizers mid-fit."""

    def __init__(self, epochs: set[int]) -> None:
        self.epochs = epochs

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch in self.epochs:
            trainer.strategy.setup_optimizers(trainer)


def _fit(model, strategy, epochs: int, extra_callbacks=(), tmp_path: Path | None = None, ckpt_path=None):
    snapshots = Snapshots()
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=[*extra_callbacks, make_finetuning_callback(strategy), snapshots],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    initial = copy.deepcopy(model.state_dict())
    trainer.fit(model, _loader(), ckpt_path=ckpt_path)
    return trainer, initial, snapshots.states


def _same(a: dict, b: dict, prefix: str) -> bool:
    keys = [k for k in a if k.startswith(prefix)]
    assert keys
    return all(torch.equal(a[k], b[k]) for k in keys)


def _changed_keys(a: dict, b: dict, prefix: str) -> set[str]:
    return {k for k in a if k.startswith(prefix) and not torch.equal(a[k], b[k])}


@pytest.mark.parametrize("filter_frozen", [True, False])
def test_freeze_keeps_backbone_and_its_batchnorm_statistics_unchanged(tmp_path, filter_frozen):
    model = TinyNet(filter_frozen=filter_frozen)  # False: the optimizer holds frozen params, they get no gradient
    trainer, initial, states = _fit(model, "freeze", epochs=2, tmp_path=tmp_path)
    assert _same(initial, states[-1], "backbone.")  # weights AND running_mean/var/num_batches_tracked
    assert _changed_keys(initial, states[-1], "head.") == {"head.weight", "head.bias"}
    assert model.bn_training_per_epoch == {0: {False}, 1: {False}}  # BatchNorm normalised with pretrained stats
    if filter_frozen:
        optimized = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
        assert optimized == {id(p) for p in model.head.parameters()}


def test_no_freeze_trains_everything_even_after_an_earlier_freeze(tmp_path):
    model = TinyNet()
    _fit(model, "freeze", epochs=1, tmp_path=tmp_path)
    model.bn_training_per_epoch.clear()
    _, initial, states = _fit(model, "no_freeze", epochs=1, tmp_path=tmp_path)
    changed = _changed_keys(initial, states[-1], "backbone.")
    assert {"backbone.0.weight", "backbone.1.weight", "backbone.1.running_mean", "backbone.3.weight"} <= changed
    assert model.bn_training_per_epoch[0] == {True}


def test_freeze_unfreeze_starts_training_the_backbone_at_the_given_epoch(tmp_path):
    model = TinyNet()
    trainer, initial, states = _fit(model, ("freeze_unfreeze", 1), epochs=3, tmp_path=tmp_path)
    assert _same(initial, states[0], "backbone.")  # epoch 0: frozen
    assert _changed_keys(states[0], states[1], "backbone.") >= {"backbone.0.weight", "backbone.1.running_mean"}
    assert _changed_keys(states[1], states[2], "backbone.") >= {"backbone.0.weight"}
    groups = trainer.optimizers[0].param_groups
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(0.01)  # added with a tenth of the head's rate
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.backbone.parameters()}
    assert model.bn_training_per_epoch == {0: {False}, 1: {True}, 2: {True}}


def test_unfreeze_milestones_unfreeze_last_layers_then_all(tmp_path):
    model = TinyNet()
    _, initial, states = _fit(model, ("unfreeze_milestones", ((1, 2), 1)), epochs=3, tmp_path=tmp_path)
    assert _same(initial, states[0], "backbone.")
    # epoch 1: only the last parametrised layer (the second BatchNorm, backbone.4) trains
    assert {k.split(".")[1] for k in _changed_keys(states[0], states[1], "backbone.")} == {"4"}
    # epoch 2: everything
    assert {k.split(".")[1] for k in _changed_keys(states[1], states[2], "backbone.")} == {"0", "1", "3", "4"}


def test_frozen_backbone_stays_out_of_optimizers_rebuilt_mid_fit(tmp_path):
    model = TinyNet()
    trainer, initial, states = _fit(model, "freeze", epochs=3, extra_callbacks=[RebuildOptimizers({1, 2})])
    assert _same(initial, states[-1], "backbone.")
    optimized = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert optimized == {id(p) for p in model.head.parameters()}
    assert _changed_keys(states[1], states[2], "head.")  # the rebuilt optimizer does train the head


def test_unfrozen_backbone_keeps_training_with_a_rebuilt_optimizer(tmp_path):
    model = TinyNet()
    trainer, initial, states = _fit(model, ("freeze_unfreeze", 1), epochs=3, extra_callbacks=[RebuildOptimizers({2})])
    assert _same(initial, states[0], "backbone.")
    assert _changed_keys(states[1], states[2], "backbone.") >= {"backbone.0.weight"}
    optimized = [p for g in trainer.optimizers[0].param_groups for p in g["params"]]
    assert len(optimized) == len({id(p) for p in optimized}) == len(list(model.parameters()))  # each once


def test_resuming_past_the_unfreeze_epoch_keeps_the_backbone_training(tmp_path):
    model = TinyNet()
    trainer, _, _ = _fit(model, ("freeze_unfreeze", 1), epochs=2, tmp_path=tmp_path)
    checkpoint = tmp_path / "last.ckpt"
    trainer.save_checkpoint(checkpoint)
    saved = copy.deepcopy(model.state_dict())
    resumed = TinyNet()
    _, _, states = _fit(resumed, ("freeze_unfreeze", 1), epochs=3, tmp_path=tmp_path, ckpt_path=checkpoint)
    assert len(states) == 1  # only epoch 2 ran
    assert _changed_keys(saved, states[-1], "backbone.") >= {"backbone.0.weight"}


def test_image_classifier_freeze_trains_only_the_head(tmp_path):
    layout = {"a": [(f"a{i}.png", "RGB") for i in range(4)], "b": [(f"b{i}.png", "RGB") for i in range(4)]}
    dm = ImageClassificationData.from_folders(train_folder=make_tree(tmp_path / "train", layout), image_size=32)
    model = ImageClassifier("resnet18", pretrained=False)
    initial = copy.deepcopy(model.state_dict())
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[make_finetuning_callback("freeze")],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    after = model.state_dict()
    assert _same(initial, after, "backbone.")
    assert _changed_keys(initial, after, "head.") == {"head.1.weight", "head.1.bias"}


@pytest.mark.parametrize(
    ("strategy", "match"),
    [
        ("frozen", r"strategy='frozen' is not a finetuning strategy; accepted: \"freeze\", \"no_freeze\""),
        ("freeze_unfreeze", r"needs its schedule"),
        (("freeze_unfreeze", -1), "unfreeze epoch must be an integer >= 0, got -1"),
        (("freeze_unfreeze", 1.5), "unfreeze epoch must be an integer >= 0, got 1.5"),
        (("unfreeze_milestones", (3, 1)), r"expected \('unfreeze_milestones', \(\(e1, e2\), num_layers\)\)"),
        (("unfreeze_milestones", ((3, 1), 1)), "0 <= e1 <= e2"),
        (("unfreeze_milestones", ((1, 3), 0)), "num_layers must be >= 1"),
        (("freeze", 2), "takes no schedule"),
        (3, "is not a finetuning strategy"),
    ],
)
def test_bad_strategies_are_rejected_listing_accepted_values(strategy, match):
    with pytest.raises(ValueError, match=match):
        make_finetuning_callback(strategy)


def test_callback_instances_pass_through_and_lists_are_accepted():
    callback = FreezeUnfreeze(2)
    assert make_finetuning_callback(callback) is callback
    assert make_finetuning_callback(["freeze_unfreeze", 3]).unfreeze_epoch == 3


def test_model_without_backbone_is_a_clear_error(tmp_path):
    class NoBackbone(TinyNet):
        def __init__(self):
            super().__init__()
            self.features = self.backbone
            del self.backbone

        def forward(self, x):
            return self.head(self.features(x))

    with pytest.raises(AttributeError, match=r"need a model with a `backbone` submodule.*NoBackbone.backbone is None"):
        _fit(NoBackbone(), "freeze", epochs=1, tmp_path=tmp_path)
