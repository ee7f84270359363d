"""``ActiveLearningLoop``: rounds of "fit on the labelled set, evaluate, score the pool, label" in the FitLoop's place.

::

    initial = snapshot(model)
    for round in range(num_rounds):                     # ActiveLearningLoop.advance
        if round > 0 and should_reset_weights:
            restore(model, initial)                      # every round trains from the same start
        reseed(seed + round)                             # a resumed run repeats the same draws
        fit(label_epoch_frequency epochs)                # fresh optimizers, schedulers, callback state
        metrics = validate() | test()                    # logged once per round
        if last round, budget spent or pool empty:       # no scoring, no reset after the last round:
            break                                        #   the model keeps the weights of the final labelled set
        scores = score_pool(model, pool, heuristic, inference_iteration)   # MC dropout, whole pool, in order
        if stopping_criterion.should_stop(metrics, scores): break
        selection = select_from_pool(heuristic, scores, ...)   # once; diversity strategies: + embeddings, same pass
        datamodule.label(pool_indices[selection])        # label the picks, named by dataset index
        save pool indices, scores, selection order       # <export>/active_learning_history_scores/round_<r>.npz
        history.append(round record); save history and a resume checkpoint

Attach it as in Lightning Flash::

    loop = ActiveLearningLoop(label_epoch_frequency=1)
    loop.connect(trainer.fit_loop)
    trainer.fit_loop = loop
    trainer.fit(model, datamodule=ActiveLearningDataModule(...))   # or trainer.finetune(..., strategy="freeze")

``Trainer(max_epochs=R)`` is the number of rounds (Flash's convention) unless ``max_rounds`` is given. Rules this
loop keeps, each one Flash's ``ActiveLearningLoop`` broke: the model handed back is the one trained on
the final labelled set (Flash reset the weights after the last round and returned an untrained model), and the pool
is scored only when its labels will be trained on (Flash scored it after the last round for a label never used);
test metrics are logged once per round and the epoch counter keeps growing across rounds (Flash logged them twice
and restarted the counter every round).
"""

from __future__ import annotations

import numbers
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from alkit._io import save_checkpoint_atomic
from alkit._rng import global_seed, reseed
from alkit.active.datamodule import ActiveLearningDataModule
from alkit.active.diversity import DiversityStrategy
from alkit.active.embeddings import EmbeddingTap, compute_embeddings
from alkit.active.heuristics import requires_mc_samples
from alkit.active.history import ActiveLearningHistory, RoundRecord, RoundScores, save_round_scores
from alkit.active.oracle import ANSWERS_NAME
from alkit.active.scoring import PoolScores, dropout_modules, score_pool
from alkit.active.selection import select_from_pool
from alkit.lightning import pl
from alkit.loops.fit_wrapper import FitWrapperLoop, RunState

__all__ = ["ActiveLearningLoop"]

HISTORY_NAME = "active_learning_history"
RESUME_CHECKPOINT = "active_learning_last_round.ckpt"


def _check_optional_int(name: str, value: Any, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum} or None, got {value!r}.")


class ActiveLearningLoop(FitWrapperLoop):
    """Alternate fitting on the labelled data with labelling the most informative pool samples.

    Args:
        label_epoch_frequency: epochs trained per round.
        inference_iteration: MC-dropout forward passes per pool sample when scoring (BaaL's ``iterations``).
        should_reset_weights: train every round from the initial weights (as in Flash and Gal et al.); never after
            the last round, so the model ends with the weights trained on the final labelled set.
        max_rounds: number of rounds; default ``Trainer(max_epochs)`` (Flash's convention).
        budget: at most this many samples are labelled by the loop (on top of the initial labels); the last query
            is cut to fit.
        stopping_criterion: a BaaL ``StoppingCriterion`` (or any object with ``should_stop(metrics, uncertainty)``),
            asked every round after scoring, before labelling.
        seed: round ``r`` starts with the RNGs seeded ``seed + r`` so that a resumed run draws exactly what the
            uninterrupted one drew. ``None``: the ``seed_everything`` seed if any, else the RNG states saved in the
            checkpoint are restored.
        export_path: folder of the history files (``active_learning_history.csv/.json``), of each round's pool
            scores (``active_learning_history_scores/round_<r>.npz``, read with ``history.scores(r)``) and of the
            resume checkpoint written after every round; default: the logger's folder, else ``default_root_dir``.
        checkpoint_each_round: write ``active_learning_last_round.ckpt`` (full state, atomically replaced) after each
            round's labelling, so labels a person gave are never lost; resume with ``trainer.fit(..., ckpt_path=)``.

    After the run :attr:`history` holds one :class:`~alkit.active.RoundRecord` per round.
    """

    checkpoint_kind = "active-learning"
    #: the state of a run: reset when a new run starts, saved in and restored from every checkpoint
    run_state = {
        **FitWrapperLoop.run_state,
        "current_round": RunState(int, load=lambda loop, saved: int(saved)),
        "history": RunState(
            ActiveLearningHistory,
            save=lambda loop, history: history.state_dict(),
            load=lambda loop, saved: _history_from_state(saved),
        ),
        "_labels_added": RunState(int, load=lambda loop, saved: int(saved)),
        "_finished": RunState(bool, load=lambda loop, saved: bool(saved)),
        "_initial_weights": RunState(lambda: None),
        "_base_seed": RunState(lambda: None),
    }

    def __init__(
        self,
        label_epoch_frequency: int = 1,
        inference_iteration: int = 2,
        should_reset_weights: bool = True,
        max_rounds: int | None = None,
        budget: int | None = None,
        stopping_criterion: Any = None,
        seed: int | None = None,
        export_path: str | os.PathLike | None = None,
        checkpoint_each_round: bool = True,
    ) -> None:
        _check_optional_int("label_epoch_frequency", label_epoch_frequency, 1)
        _check_optional_int("inference_iteration", inference_iteration, 1)
        _check_optional_int("max_rounds", max_rounds, 1)
        _check_optional_int("budget", budget, 0)
        _check_optional_int("seed", seed, 0)
        if stopping_criterion is not None and not callable(getattr(stopping_criterion, "should_stop", None)):
            raise TypeError(
                "`stopping_criterion` must have a `should_stop(metrics, uncertainty)` method (e.g. a "
                f"`baal.active.stopping_criteria.StoppingCriterion`), got {stopping_criterion!r}."
            )
        super().__init__()
        # Every attribute is created here, so that reset, checkpoints and the stand-in names never meet a missing one.
        self.label_epoch_frequency = int(label_epoch_frequency)
        self.inference_iteration = int(inference_iteration)
        self.should_reset_weights = bool(should_reset_weights)
        self.max_rounds = max_rounds
        self.budget = budget
        self.stopping_criterion = stopping_criterion
        self.seed = seed
        self.export_path = None if export_path is None else str(export_path)
        self.checkpoint_each_round = bool(checkpoint_each_round)
        self._num_rounds: int | None = None
        self._trainer_max_epochs: int | None = None
        self._saved_fit_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------------------------------------------------
    # wiring
    # ------------------------------------------------------------------------------------------------------------
    def connect(self, fit_loop: Any) -> None:  # type: ignore[override]
        super().connect(fit_loop)
        self._trainer_max_epochs = fit_loop.max_epochs  # Trainer(max_epochs=R): R rounds, as in Flash

    @property
    def num_rounds(self) -> int:
        """Rounds to run: ``max_rounds`` if given, else ``Trainer(max_epochs)``."""
        rounds = self.max_rounds if self.max_rounds is not None else self._trainer_max_epochs
        if rounds is None or rounds < 1:
            raise ValueError(
                f"The number of rounds is `max_rounds={self.max_rounds}` / `Trainer(max_epochs={rounds})`; give "
                "`ActiveLearningLoop(max_rounds=...)` or `Trainer(max_epochs=...)` (one round per epoch, as in Flash)."
            )
        return int(rounds)

    @property
    def done(self) -> bool:
        return self._finished or self.current_round >= self.num_rounds

    def _datamodule(self) -> ActiveLearningDataModule:
        datamodule = self.trainer.datamodule
        if not isinstance(datamodule, ActiveLearningDataModule):
            raise TypeError(
                f"ActiveLearningLoop needs an ActiveLearningDataModule, got {type(datamodule).__name__}: wrap yours "
                "with `alkit.active.ActiveLearningDataModule(datamodule, ...)` and pass it as `datamodule=`."
            )
        return datamodule

    # ------------------------------------------------------------------------------------------------------------
    # the run
    # ------------------------------------------------------------------------------------------------------------
    def on_run_start(self, *args: Any, **kwargs: Any) -> None:
        super().on_run_start(*args, **kwargs)
        self._datamodule()
        self.refuse_max_steps("rounds", "max_epochs / max_rounds")
        self._num_rounds = self.num_rounds
        self._check_model_can_be_scored()
        datamodule = self._datamodule()
        if datamodule.oracle is not None and datamodule.answers_file is None:
            # a person's answers (the initial ones included) are on disk before the first round trains
            datamodule.set_answers_file(self._export_dir() / ANSWERS_NAME)
        if self._initial_weights is None:
            self._initial_weights = self.snapshot_weights()
        if self._base_seed is None:
            self._base_seed = self.seed if self.seed is not None else global_seed()
        if not self.resuming_segment:  # resumed at a round boundary: continue from the RNG state of the save
            self.restore_saved_rng()

    def on_advance_start(self, *args: Any, **kwargs: Any) -> None:
        if self.resuming_segment:  # resumed inside this round's training: weights and RNG are the saved ones
            return
        if self.current_round > 0 and self.should_reset_weights:
            self.restore_weights(self._initial_weights)
        if self._base_seed is not None:
            reseed(self._base_seed + self.current_round)

    def advance(self, *args: Any, **kwargs: Any) -> None:
        trainer, datamodule = self.trainer, self._datamodule()
        round_index = self.current_round
        self.show_progress("round", f"{round_index + 1}/{self._num_rounds}")
        pl.utilities.rank_zero_info(
            f"ActiveLearningLoop: round {round_index + 1}/{self._num_rounds}, {len(datamodule.train_indices)} "
            f"labelled training samples, {len(datamodule.pool_indices)} in the pool"
        )
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        num_trained = len(datamodule.train_indices)
        if self.resuming_segment and self.fit_loop.epoch_progress.current.processed < self._segment_end_epoch:
            self.restore_saved_rng()  # resumed inside the round's training: continue it with the saved draws
        if datamodule.has_labelled_data:
            self.run_fit(self.label_epoch_frequency)
            # Resumed after the round's training (saved at its last epoch end): Lightning's restart set-up in
            # run_fit drew random numbers the uninterrupted run did not, so the saved state takes over only now,
            # and the metrics logged by that last epoch come from the checkpoint.
            self.restore_saved_rng()
            metrics.update(self._saved_fit_metrics)
            metrics.update(_scalars(trainer.callback_metrics))
            if datamodule.has_validation:
                metrics.update(self.evaluate_quietly(self.run_validation))
            if datamodule.has_test:
                metrics.update(self.evaluate_quietly(self.run_test))
        self._saved_fit_metrics = {}
        train_time = time.perf_counter() - start

        start = time.perf_counter()
        added = np.zeros(0, dtype=np.int64)
        scores_file = None
        if self._should_label(round_index, datamodule):
            pool = self._score_pool(datamodule)
            pool_indices = datamodule.current_pool_indices
            if self.stopping_criterion is not None and self.stopping_criterion.should_stop(metrics, pool.scores):
                self._finished = True
                selection_scores = pool.scores
            else:
                count = datamodule.query_size
                if self.budget is not None:
                    count = min(count, self.budget - self._labels_added)
                selection = select_from_pool(
                    datamodule.heuristic,
                    pool.scores,
                    len(pool_indices),
                    count,
                    pool.embeddings,
                    self._labelled_embeddings(datamodule),
                    pool.mean_probabilities,
                    rng=datamodule.rng,
                    num_labelled=datamodule.num_labelled,
                )
                selection_scores = selection.scores
                added = datamodule.label(pool_indices[selection.positions])
                self._labels_added += len(added)
            scores_file = self._save_round_scores(round_index, pool_indices, selection_scores, added, pool)
        else:
            self._finished = True
        scoring_time = time.perf_counter() - start

        record = RoundRecord(round_index, num_trained, added.tolist(), metrics, train_time, scoring_time, scores_file)
        self.history.append(record)
        self.current_round = round_index + 1
        self._log_round(record)
        self._save_history()
        if self.checkpoint_each_round and not self.done:
            self._save_resume_checkpoint()

    def on_run_end(self) -> ActiveLearningHistory:
        self._save_history()
        return self.history

    # ------------------------------------------------------------------------------------------------------------
    # pieces
    # ------------------------------------------------------------------------------------------------------------
    def _should_label(self, round_index: int, datamodule: ActiveLearningDataModule) -> bool:
        """Score and label only when the labels will be trained on: not after the last round (unlike Flash)."""
        if round_index + 1 >= self._num_rounds or not datamodule.has_unlabelled_data:
            return False
        return self.budget is None or self._labels_added < self.budget

    def _check_model_can_be_scored(self) -> None:
        """Refuse a model without dropout for an MC heuristic before any training (not after the first round)."""
        heuristic, model = self._datamodule().heuristic, self.trainer.lightning_module
        if self.num_rounds > 1 and isinstance(heuristic, DiversityStrategy):
            EmbeddingTap(model)  # a model that cannot give embeddings is refused now, not after a round of training
        if self.num_rounds > 1 and requires_mc_samples(heuristic) and self.inference_iteration < 2:
            raise ValueError(
                f"`inference_iteration={self.inference_iteration}` is invalid with the heuristic "
                f"{type(heuristic).__name__}: it measures disagreement between Monte-Carlo dropout passes; accepted: "
                "an int >= 2, or heuristic='entropy', 'margin', 'certainty' or 'random' with one pass. Nothing was "
                "trained or labelled."
            )
        if self.num_rounds > 1 and requires_mc_samples(heuristic) and not dropout_modules(model):
            raise ValueError(
                f"The heuristic {type(heuristic).__name__} needs Monte-Carlo dropout samples, but the model "
                f"{type(model).__name__} has no dropout layer (torch.nn.Dropout* with p > 0). "
                "Add dropout to the model (e.g. `head=torch.nn.Sequential(torch.nn.Dropout(0.1), ...)`) or use "
                "heuristic='entropy', 'margin', 'certainty' or 'random'. Nothing was trained or labelled."
            )

    def _score_pool(self, datamodule: ActiveLearningDataModule) -> PoolScores:
        """This round's pool scores (and embeddings for a diversity strategy); under several processes each scores a
        shard and all get every row."""
        trainer = self.trainer
        model = trainer.lightning_module
        loader = datamodule.pool_dataloader()
        world_size, rank = trainer.world_size, trainer.global_rank
        if world_size <= 1:
            return score_pool(model, loader, datamodule.heuristic, self.inference_iteration)
        size = len(loader.dataset)
        positions = list(range(rank, size, world_size))
        shard = DataLoader(
            Subset(loader.dataset, positions),
            batch_size=loader.batch_size,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
        )
        local = score_pool(model, shard, datamodule.heuristic, self.inference_iteration)
        return PoolScores(
            self._gather_rows(local.scores, size),
            None,
            local.feature_cache,
            None if local.embeddings is None else self._gather_rows(local.embeddings, size),
            None if local.mean_probabilities is None else self._gather_rows(local.mean_probabilities, size),
        )

    def _gather_rows(self, local: np.ndarray, size: int) -> np.ndarray:
        """Every rank's rows of an array sharded round-robin (rank ``r`` has rows ``r, r + W, ...``), in pool order."""
        trainer = self.trainer
        world_size = trainer.world_size
        per_rank = -(-size // world_size)
        local = np.asarray(local)
        padded = torch.full(
            (per_rank, *local.shape[1:]), float("nan"), dtype=torch.float64, device=trainer.strategy.root_device
        )
        padded[: len(local)] = torch.as_tensor(local, dtype=torch.float64)
        gathered = trainer.strategy.all_gather(padded).reshape(world_size, per_rank, *local.shape[1:]).cpu().numpy()
        rows = np.empty((size, *local.shape[1:]), dtype=local.dtype if local.size else np.float64)
        for source in range(world_size):
            count = len(range(source, size, world_size))
            rows[source::world_size] = gathered[source, :count]
        return rows

    def _labelled_embeddings(self, datamodule: ActiveLearningDataModule) -> np.ndarray | None:
        """Embeddings of the labelled samples when the strategy starts from them (CoreSet's initial centres)."""
        heuristic = datamodule.heuristic
        if not isinstance(heuristic, DiversityStrategy) or not heuristic.needs_labelled_embeddings:
            return None
        if not datamodule.num_labelled:
            return None
        return compute_embeddings(self.trainer.lightning_module, datamodule.labelled_inference_dataloader())

    def _save_round_scores(
        self, round_index: int, pool_indices: np.ndarray, scores: np.ndarray, selected: np.ndarray, pool: PoolScores
    ) -> str:
        """Write the round's pool scores beside the history; return the file name relative to that folder."""
        name = f"{HISTORY_NAME}_scores/round_{round_index:04d}.npz"
        if self.trainer.is_global_zero:
            uncertainty = pool.scores if isinstance(self._datamodule().heuristic, DiversityStrategy) else None
            save_round_scores(self._export_dir() / name, RoundScores(pool_indices, scores, selected, uncertainty))
        return name

    def _log_round(self, record: RoundRecord) -> None:
        trainer = self.trainer
        values = {
            "al/round": float(record.round),
            "al/num_labelled": float(record.num_labelled),
            "al/num_added": float(len(record.indices_added)),
            "al/train_time_s": record.train_time_s,
            "al/scoring_time_s": record.scoring_time_s,
        }
        values.update({f"al/{name}": value for name, value in record.metrics.items()})
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(values, step=trainer.global_step)
                logger.save()

    def answers_path(self) -> Path:
        """Where a person's answers are kept when the datamodule was given no ``answers_file``.

        The datamodule takes it in ``setup``, before any data is read, so every answer – the initial labels
        included – is on disk before training starts, and a resumed run reads them instead of asking again.
        """
        return self._export_dir() / ANSWERS_NAME

    def _export_dir(self) -> Path:
        if self.export_path is not None:
            return Path(self.export_path)
        trainer = self.trainer
        log_dir = trainer.log_dir if trainer.loggers else None
        return Path(log_dir or trainer.default_root_dir)

    def _save_history(self) -> None:
        if self.trainer.is_global_zero and len(self.history):
            self.history.save(self._export_dir(), HISTORY_NAME)

    def _save_resume_checkpoint(self) -> None:
        """Full checkpoint after the round's labelling, written to a temporary file then atomically renamed."""
        save_checkpoint_atomic(self.trainer, self._export_dir() / RESUME_CHECKPOINT)

    # ------------------------------------------------------------------------------------------------------------
    # checkpointing
    # ------------------------------------------------------------------------------------------------------------
    def on_save_checkpoint(self) -> dict:
        state = super().on_save_checkpoint()
        state["fit_metrics"] = _scalars(self.trainer.callback_metrics) if self._segment_active else {}
        return state

    def on_load_checkpoint(self, state_dict: dict) -> None:
        super().on_load_checkpoint(state_dict)
        self._saved_fit_metrics = dict(state_dict.get("fit_metrics", {}))


def _history_from_state(state: dict) -> ActiveLearningHistory:
    history = ActiveLearningHistory()
    history.load_state_dict(state)
    return history


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            out[name] = float(value.item())
        elif isinstance(value, numbers.Real):
            out[name] = float(value)
    return out
