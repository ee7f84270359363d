"""Record every hook Lightning calls, so two trainers can be compared call by call."""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from alkit.lightning import pl

CheckpointHooks = pl.core.hooks.CheckpointHooks
DataHooks = pl.core.hooks.DataHooks
ModelHooks = pl.core.hooks.ModelHooks

_BATCH_IDX_HOOKS = {
    "on_train_batch_start",
    "on_train_batch_end",
    "on_validation_batch_start",
    "on_validation_batch_end",
    "on_test_batch_start",
    "on_test_batch_end",
    "on_predict_batch_start",
    "on_predict_batch_end",
}
_SKIPPED = {"prepare_data", "on_load_checkpoint", "on_save_checkpoint"}


def _public_methods(cls: type) -> list[str]:
    return [n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")]


MODULE_HOOKS = sorted(
    (set(_public_methods(ModelHooks)) | set(_public_methods(DataHooks)) | set(_public_methods(CheckpointHooks)))
    - {"train_dataloader", "val_dataloader", "test_dataloader", "predict_dataloader", "transfer_batch_to_device"}
    | {
        "training_step",
        "validation_step",
        "test_step",
        "predict_step",
        "configure_optimizers",
        "optimizer_step",
        "optimizer_zero_grad",
        "lr_scheduler_step",
        "backward",
        "on_save_checkpoint",
        "on_load_checkpoint",
    }
)
CALLBACK_HOOKS = sorted(n for n in _public_methods(pl.Callback) if n.startswith("on_") or n in ("setup", "teardown"))


def _describe(name: str, args: tuple) -> tuple:
    if name in _BATCH_IDX_HOOKS:
        # (outputs,) batch, batch_idx[, dataloader_idx]
        ints = [a for a in args if isinstance(a, int) and not isinstance(a, bool)]
        return (name, tuple(ints))
    if name in ("training_step", "validation_step", "test_step", "predict_step"):
        return (name, tuple(a for a in args[1:] if isinstance(a, int)))
    if name == "optimizer_step":
        return (name, args[0], args[1])  # epoch, batch_idx
    if name in ("setup", "teardown"):
        return (name, args[-1] if args else None)
    return (name,)


def record_hooks(cls: type, names: list[str], calls: list, prefix: str) -> type:
    """A subclass of ``cls`` whose hooks in ``names`` append ``(prefix, name, ...)`` to ``calls``."""
    namespace: dict[str, Any] = {}
    for name in names:
        original = getattr(cls, name, None)
        if original is None or name in _SKIPPED and prefix == "cb":
            continue

        def make(name: str, original: Any) -> Any:
            @functools.wraps(original)
            def hooked(self: Any, *args: Any, **kwargs: Any) -> Any:
                calls.append((prefix, *_describe(name, args + tuple(kwargs.values()))))
                return original(self, *args, **kwargs)

            return hooked

        namespace[name] = make(name, original)
    return type(f"Recorded{cls.__name__}", (cls,), namespace)


class BoringModel(pl.LightningModule):
    """A tiny classifier with every step, logging on step and epoch, and an LR scheduler."""

    def __init__(self, manual: bool = False, scheduler: bool = True) -> None:
        super().__init__()
        self.layer = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.1), torch.nn.Linear(16, 3))
        self.automatic_optimization = not manual
        self.use_scheduler = scheduler

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def _loss(self, batch: Any) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        loss = self._loss(batch)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        if self.automatic_optimization:
            return loss
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch), on_epoch=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self.log("test_loss", self._loss(batch))

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self(batch[0])

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.2, momentum=0.9)
        if not self.use_scheduler:
            return optimizer
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)]


def make_data(n: int = 40, batch_size: int = 8, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


@dataclass
class Run:
    hooks: list = field(default_factory=list)
    weights: dict = field(default_factory=dict)
    logged: list = field(default_factory=list)
    callback_metrics: dict = field(default_factory=dict)
    checkpoints: list = field(default_factory=list)
    trainer: Any = None
    outputs: Any = None


def read_csv_logs(root: Path) -> list[dict]:
    rows = []
    for path in sorted(root.rglob("metrics.csv")):
        with path.open() as f:
            rows.extend(csv.DictReader(f))
    return rows


def run_trainer(
    trainer_cls: type,
    tmp_path: Path,
    *,
    manual: bool = False,
    scheduler: bool = True,
    callbacks: list | None = None,
    stages: tuple[str, ...] = ("fit",),
    ckpt_path: str | None = None,
    n: int = 40,
    **trainer_kwargs: Any,
) -> Run:
    """Train/evaluate a recorded BoringModel with ``trainer_cls`` and collect everything worth comparing."""
    from alkit.lightning import pl

    CSVLogger = pl.loggers.CSVLogger

    calls: list = []
    module_cls = record_hooks(BoringModel, MODULE_HOOKS, calls, "model")
    recorder = record_hooks(pl.Callback, CALLBACK_HOOKS, calls, "cb")()
    pl.seed_everything(7, verbose=False)
    model = module_cls(manual=manual, scheduler=scheduler)
    kwargs = dict(
        default_root_dir=tmp_path,
        logger=CSVLogger(tmp_path, name="logs", version=0),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
        max_epochs=2,
    )
    kwargs.update(trainer_kwargs)
    trainer = trainer_cls(callbacks=[recorder, *(callbacks or [])], **kwargs)
    outputs = {}
    for stage in stages:
        if stage == "fit":
            trainer.fit(model, make_data(n), make_data(16, seed=1), ckpt_path=ckpt_path)
        elif stage == "validate":
            outputs[stage] = trainer.validate(model, make_data(16, seed=1), verbose=False)
        elif stage == "test":
            outputs[stage] = trainer.test(model, make_data(16, seed=2), verbose=False)
        elif stage == "predict":
            outputs[stage] = trainer.predict(model, make_data(16, seed=3))
    trainer.logger.save()
    return Run(
        hooks=calls,
        weights={k: v.detach().clone() for k, v in model.state_dict().items()},
        logged=read_csv_logs(tmp_path / "logs"),
        callback_metrics={k: float(v) for k, v in trainer.callback_metrics.items()},
        checkpoints=sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.ckpt")),
        trainer=trainer,
        outputs=outputs,
    )
