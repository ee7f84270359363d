"""``alkit.Trainer.finetune``: Flash's transfer-learning entry point, built on Lightning's BaseFinetuning."""

from __future__ import annotations

import copy

import pytest
import torch

import alkit
from alkit.examples._toy import toy_dataloader
from alkit.lightning import pl


class BackboneHead(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU())
        self.head = torch.nn.Linear(16, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.head(self.backbone(x)), y)

    def configure_optimizers(self):
        return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.1)


def finetune(strategy, max_epochs=2):
    model = BackboneHead()
    before = copy.deepcopy(model.state_dict())
    trainer = alkit.Trainer(max_epochs=max_epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.finetune(model, toy_dataloader(), strategy=strategy)
    changed = {k: not torch.equal(v, model.state_dict()[k]) for k, v in before.items()}
    return trainer, changed


def test_freeze_trains_only_the_head():
    _, changed = finetune("freeze")
    assert changed["head.weight"]
    assert not changed["backbone.0.weight"]
    assert not changed["backbone.1.running_mean"]  # frozen BatchNorm statistics stay put


def test_no_freeze_trains_everything():
    _, changed = finetune("no_freeze")
    assert changed["head.weight"] and changed["backbone.0.weight"]


def test_freeze_unfreeze_trains_the_backbone_after_the_given_epoch():
    _, changed = finetune(("freeze_unfreeze", 1), max_epochs=2)
    assert changed["backbone.0.weight"] and changed["head.weight"]


def test_finetune_twice_keeps_a_single_finetuning_callback():
    trainer, _ = finetune("freeze")
    trainer.fit_loop.max_epochs = 3
    trainer.finetune(BackboneHead(), toy_dataloader(), strategy="no_freeze")
    from alkit.lightning import pl

    BaseFinetuning = pl.callbacks.BaseFinetuning

    assert sum(isinstance(c, BaseFinetuning) for c in trainer.callbacks) == 1


def test_unknown_strategy_is_a_clear_error_before_training():
    trainer = alkit.Trainer(max_epochs=1, logger=False, enable_checkpointing=False)
    with pytest.raises(ValueError, match="strategy"):
        trainer.finetune(BackboneHead(), toy_dataloader(), strategy="freez")
    assert trainer.global_step == 0
