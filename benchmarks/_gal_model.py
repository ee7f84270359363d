"""Gal, Islam & Ghahramani (2017)'s MNIST Bayesian CNN as a LightningModule, and its per-round model selection.

The network is ``conv(32, 4x4) - ReLU - conv(32, 4x4) - ReLU - max-pool 2x2 - dropout 0.25 - dense 128 - ReLU -
dropout 0.5 - dense 10``. Everything up to the pooling is deterministic, so it is the ``backbone`` and all of the
dropout sits in the ``head``: alkit's pool scorer then runs the convolutions once per pool image and only the head
``T`` times (its feature-cache path), which is what makes ``T = 100`` affordable on a CPU.

Initialisation follows the authors' Keras code: Keras' default ``glorot_uniform`` for every convolution kernel and
dense weight (uniform in ``+- sqrt(6 / (fan_in + fan_out))``, the fans of a kernel counting its receptive field) and
zero biases, rather than PyTorch's default (Kaiming-uniform with ``a = sqrt(5)``, non-zero biases).
:meth:`GalCNN.initialize` draws them from a given generator, so a run can start every round from a fresh
initialisation that depends on (seed, round) only.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from alkit.active.dropout_masks import dropout_mask
from alkit.lightning import pl

Callback = pl.callbacks.Callback
TrainerFn = pl.trainer.states.TrainerFn

__all__ = ["INITS", "ByteDropout", "GalCNN", "ValidationModelSelection", "glorot_uniform_"]

#: Weight initialisations :meth:`GalCNN.initialize` knows.
INITS = ("glorot_uniform", "torch_default")


class ByteDropout(nn.Dropout):
    """Exact Bernoulli dropout whose mask comes from random *bytes*: about 3x cheaper on a CPU than ``nn.Dropout``.

    ``torch.nn.functional.dropout`` draws one float per element; on a CPU that draw dominates the MC-dropout head
    (2,000 pool images x T = 100 passes x 3,872 features per round). When ``p * 256`` is an integer (0.25 -> 64,
    0.5 -> 128) an element is dropped when a uniform random byte is below ``p * 256``: the same Bernoulli(p)
    mask, the same ``1 / (1 - p)`` scaling, eight elements per 64-bit draw of torch's generator (so it is
    reproducible with ``torch.manual_seed``). Other ``p`` and small inputs use ``nn.Dropout``'s own path.
    It stays an ``nn.Dropout`` so alkit's ``mc_dropout`` switches it on for scoring like any dropout layer. The mask
    is :func:`alkit.active.dropout_masks.dropout_mask`'s byte path; this layer uses it in training too, where
    alkit's scorer serves plain ``nn.Dropout`` layers that way only while it scores.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        threshold = self.p * 256
        if not self.training or self.p == 0 or threshold != int(threshold) or x.numel() < 4096 or self.p >= 1:
            return super().forward(x)
        return x.mul(dropout_mask(x.shape, self.p, x.device)).mul_(1.0 / (1.0 - self.p))  # the byte path there


def glorot_uniform_(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """Keras ``glorot_uniform`` kernels and zero biases for every ``Conv2d`` / ``Linear`` of ``module``, in place.

    Keras computes the fans of a conv kernel ``(out, in, kh, kw)`` as ``in * kh * kw`` and ``out * kh * kw``, as
    PyTorch's ``xavier_uniform_`` does, so that function with gain 1 is Keras' ``glorot_uniform``: uniform in
    ``+- sqrt(6 / (fan_in + fan_out))``. Drawn with ``generator`` (reproducible without touching the global RNG the
    run's other draws come from).
    """
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(layer.weight, generator=generator)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)


class GalCNN(pl.LightningModule):
    """The paper's MNIST classifier, trained with Adam and a weight decay that shrinks as labels are added.

    Args:
        lr: Adam learning rate (Keras' default, as the authors used).
        weight_decay_c: the L2 penalty is ``c / N`` (N = labelled training samples this round, read from the
            datamodule whenever the optimizer is rebuilt, i.e. every round): the authors used ``c = 3.5``.
        weight_decay_scope: ``"dense"`` regularises the dense-128 weights only (the authors' Keras model put its
            ``l2`` regulariser there), ``"all"`` every weight matrix/kernel.
        fast_dropout: use :class:`ByteDropout` (same distribution, cheaper mask draws).
        init: ``"glorot_uniform"`` (the authors' Keras default, zero biases) or ``"torch_default"`` (PyTorch's
            ``reset_parameters``); applied at construction and by :meth:`initialize`.

    The penalty follows Keras' ``l2(lam)`` (``lam * ||W||^2`` added to the loss), i.e. Adam's ``weight_decay =
    2 * lam`` on those parameters. Logs ``train_loss``, ``val_loss``/``val_acc``, ``test_acc``/``test_loss`` and the
    timings ``fit_time_s``/``epochs`` (per round: wall time of the fit segment, validation included, and epochs run)
    and ``test_time_s``.
    """

    def __init__(
        self,
        lr: float = 1e-3,
        weight_decay_c: float = 3.5,
        weight_decay_scope: str = "dense",
        fast_dropout: bool = True,
        init: str = "glorot_uniform",
    ) -> None:
        super().__init__()
        if weight_decay_scope not in ("dense", "all"):
            raise ValueError(f"`weight_decay_scope` must be 'dense' or 'all', got {weight_decay_scope!r}.")
        if init not in INITS:
            raise ValueError(f"`init` must be one of {', '.join(INITS)}, got {init!r}.")
        self.save_hyperparameters()
        dropout = ByteDropout if fast_dropout else nn.Dropout
        self.backbone = nn.Sequential(
            nn.Conv2d(1, 32, 4), nn.ReLU(), nn.Conv2d(32, 32, 4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()
        )
        self.head = nn.Sequential(
            dropout(0.25), nn.Linear(32 * 11 * 11, 128), nn.ReLU(), dropout(0.5), nn.Linear(128, 10)
        )
        self._fit_started = 0.0
        self._epochs = 0
        self._test_started = 0.0
        self.initialize()

    def initialize(self, generator: torch.Generator | None = None) -> None:
        """(Re-)initialise every weight in place with the model's ``init`` (``generator``: None = the global RNG).

        In place, so optimizers and the loop's references stay valid; a fresh model of the authors' code per round
        is this call at the start of the round.
        """
        if self.hparams.init == "glorot_uniform":
            glorot_uniform_(self, generator)
            return
        if generator is not None:  # PyTorch's reset_parameters only draws from the global RNG
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
                self._reset_torch_default()
        else:
            self._reset_torch_default()

    def _reset_torch_default(self) -> None:
        for layer in self.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                layer.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    # -- training ------------------------------------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        datamodule = getattr(self.trainer, "datamodule", None)
        count = len(datamodule.train_indices) if hasattr(datamodule, "train_indices") else 1
        lam = self.hparams.weight_decay_c / max(count, 1)
        if self.hparams.weight_decay_scope == "dense":
            decayed = [self.head[1].weight]
        else:
            decayed = [p for name, p in self.named_parameters() if name.endswith("weight")]
        ids = {id(p) for p in decayed}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return torch.optim.Adam(
            [{"params": decayed, "weight_decay": 2 * lam}, {"params": rest, "weight_decay": 0.0}], lr=self.hparams.lr
        )

    def on_train_start(self) -> None:
        self._fit_started = time.perf_counter()
        self._epochs = 0

    def on_train_epoch_end(self) -> None:
        self._epochs += 1
        self.log("fit_time_s", time.perf_counter() - self._fit_started)
        self.log("epochs", float(self._epochs))

    # -- evaluation ----------------------------------------------------------------------------------------------------
    def _evaluate(self, batch: Any, stage: str) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{stage}_loss", F.cross_entropy(logits, y), batch_size=len(y))
        self.log(f"{stage}_acc", (logits.argmax(1) == y).float().mean(), batch_size=len(y))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_test_epoch_start(self) -> None:
        self._test_started = time.perf_counter()

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.log("test_time_s", time.perf_counter() - self._test_started)


class ValidationModelSelection(Callback):
    """Per round: keep the weights of the best validation epoch, stop early, and end the round with those weights.

    Lightning's ``EarlyStopping`` counts ``min_epochs`` over the whole fit, but an active-learning run is many fit
    segments (one per round) whose epoch counter keeps growing, and it does not restore the best weights. This
    callback starts over at every segment (``on_train_start``): best = highest ``val_acc`` (ties: lower ``val_loss``),
    ``trainer.should_stop`` after ``patience`` validated epochs without improvement once ``min_epochs`` epochs of the
    round have run (``patience=0``: never stops early), and the best weights are loaded back at the end of the round
    when ``restore_best`` (so the round's validation and test metrics are those of the selected model).
    """

    def __init__(self, patience: int = 0, min_epochs: int = 0, restore_best: bool = True) -> None:
        self.patience = patience
        self.min_epochs = min_epochs
        self.restore_best = restore_best
        self._reset()

    def _reset(self) -> None:
        self.best: tuple[float, float] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.epochs = 0
        self.since_best = 0
        self._validated = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs += 1
        if not self._validated:
            return
        self._validated = False
        metrics = trainer.callback_metrics
        score = (float(metrics["val_acc"]), -float(metrics["val_loss"]))
        if self.best is None or score > self.best:
            self.best, self.since_best = score, 0
            if self.restore_best:
                self.best_state = copy.deepcopy(pl_module.state_dict())
        else:
            self.since_best += 1
        if self.patience and self.epochs >= self.min_epochs and self.since_best >= self.patience:
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.restore_best and self.best_state is not None:
            pl_module.load_state_dict(self.best_state)
        self.best_state = None

    def state_dict(self) -> dict[str, Any]:
        return {}  # nothing outlives a round: a resumed run restarts rounds from their beginning
