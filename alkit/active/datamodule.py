"""``ActiveLearningDataModule``: which training samples are labelled, which are scored, and how they are served.

It wraps a LightningDataModule that has a training set and splits that set, with a
:class:`~alkit.active.labelled_set.LabelledSet` keeping which samples are labelled, into

* a **validation** set drawn once from the initially labelled samples (``val_split``), never changed afterwards and
  never trained on (Flash redrew it every round over the grown labelled set and trained on former validation
  samples);
* the **training** set: every other labelled sample, served with the training transforms;
* the **pool**: the unlabelled samples (or a fresh random ``pool_size`` subset of them each round), served in a
  fixed order with the deterministic evaluation transforms (Flash scored it with random training augmentation, so
  a sample's uncertainty depended on the augmentation draw).

Every labelled sample is named by its *dataset index* (its position in the wrapped training set); the pool
dataloader's positions map back through :attr:`current_pool_indices`, in one place (confusing pool positions, subset
positions and dataset indices is the classic bug: BaaL's ``ActiveLearningExperiment`` labelled positions within a
random pool subset as if they were pool indices). Choosing what to label is not done here: the loop scores the pool,
selects (:mod:`alkit.active.selection`) and calls :meth:`ActiveLearningDataModule.label`.

What the wrapped datamodule must provide is described in :mod:`alkit.active._wrapped`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from baal.active import ActiveLearningDataset
from baal.active.dataset.pytorch_dataset import ActiveLearningPool
from baal.active.heuristics import AbstractHeuristic
from baal.utils.equality import deep_check
from torch.utils.data import DataLoader, Dataset, Subset

from alkit.active._wrapped import find_eval_dataset, find_num_classes, find_train_dataset
from alkit.active.diversity import DiversityStrategy, Selection
from alkit.active.heuristics import PicklableHeuristic, resolve_heuristic
from alkit.active.labelled_set import LabelledSet
from alkit.active.oracle import Oracle, OracleSession, TargetOverrideDataset, check_labels, reveal_labels
from alkit.active.selection import select_from_pool, typical_samples
from alkit.lightning import pl

__all__ = ["ActiveLearningDataModule"]

_STATE_FORMAT = "alkit.active.datamodule/1"

#: How :class:`ActiveLearningDataModule` chooses the ``initial_num_labels`` samples.
INITIAL_STRATEGIES = ("random", "typiclust")


class _BaalView(ActiveLearningDataset):
    """BaaL's ``ActiveLearningDataset`` over the datamodule's own labelled map, for code written for BaaL (e.g. its
    stopping criteria): the ``labelled_map`` is the :class:`LabelledSet`'s step array itself, not a copy, so both
    always agree, and the pool is served from the evaluation-transform view without BaaL's deep copy."""

    def __init__(self, dataset: Dataset, eval_dataset: Dataset, steps: np.ndarray) -> None:
        self._eval_dataset = eval_dataset
        with warnings.catch_warnings():  # the datamodule already warned about a stochastic pool, in its own words
            warnings.simplefilter("ignore", UserWarning)
            super().__init__(dataset, labelled=steps)
        self.labelled_map = steps

    @property
    def pool(self) -> ActiveLearningPool:
        return ActiveLearningPool(Subset(self._eval_dataset, np.flatnonzero(self.labelled_map == 0).tolist()))


def _check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        accepted = f"an integer >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"`{name}` must be {accepted}, got {value!r}.")


class ActiveLearningDataModule(pl.LightningDataModule):
    """Labelled / validation / pool split of a datamodule's training set for active learning.

    Args:
        labelled: the LightningDataModule whose training set is to be labelled (its labels are revealed by the
            default oracle: simulation). Kept as ``self.labelled`` as in Lightning Flash.
        heuristic: a BaaL heuristic, a diversity strategy (:mod:`alkit.active.diversity`) or a name (``"bald"``,
            ``"entropy"``, ``"coreset"``, ``"badge"``, ``"typiclust"``, ...; see
            :data:`alkit.active.heuristics.HEURISTIC_NAMES`). A strategy instance is seeded with ``seed``.
        map_dataset_to_labelled: ``f(train_dataset) -> mask`` of samples labelled from the start (non-zero = yes).
        filter_unlabelled_data: ``f(pool_dataset) -> dataset`` restricting what is scored; it must return the
            dataset itself or a ``torch.utils.data.Subset`` of it (so positions map back to dataset indices).
        initial_num_labels: samples labelled before the first round, chosen by ``initial_strategy``.
        initial_strategy: ``"random"`` (seeded draw, the default) or ``"typiclust"``: a cold start, the most typical
            sample of each of ``initial_num_labels`` k-means clusters of the unlabelled data (Hacohen et al. 2022),
            which beats a random draw when labels are very few. Clustered on the embeddings of
            ``initial_embedding_model`` (see :mod:`alkit.active.embeddings`, e.g. a pretrained backbone) or, without
            one, on the flattened inputs of the evaluation view.
        initial_embedding_model: the model whose embeddings the ``"typiclust"`` cold start clusters (optional).
        query_size: samples labelled per round.
        val_split: fraction of the *initially* labelled samples held out for validation, once. ``ceil(val_split *
            n)`` samples; at least one training sample must remain; fewer than 2 validation samples draws a warning
            (a metric on one sample is 0 or 1). Must be None when ``labelled`` has its own validation set.
        pool_size: score only a random subset of this many pool samples each round (Gal et al.'s protocol).
        seed: seeds every random choice here (initial labels, validation split, pool subsets, stochastic
            heuristics, the "random" heuristic), so a run is reproducible.
        oracle: ``oracle(dataset_indices, items) -> labels``; None reveals the labels already in the data.
        pool_batch_size: batch size for scoring the pool (default: ``labelled.batch_size``); inference needs no
            gradients, so a larger batch is usually faster.
        answers_file: with a user ``oracle``, the file that keeps every answer (see
            :class:`alkit.active.oracle.OracleAnswers`): written atomically after each answer, before it is used,
            and read first, so indices already answered are never asked again (a resume re-asks nothing). Default:
            ``ActiveLearningLoop`` uses ``<run folder>/oracle_answers.json`` from the start of ``fit``; pass that
            path here so that the *initial* labels are also read from it when the datamodule is rebuilt to resume.

    Raises:
        ValueError / TypeError: on any bad argument, before any sample is labelled.
    """

    def __init__(
        self,
        labelled: pl.LightningDataModule,
        heuristic: str | AbstractHeuristic = "bald",
        map_dataset_to_labelled: Callable[[Dataset], Any] | None = None,
        filter_unlabelled_data: Callable[[Dataset], Dataset] | None = None,
        initial_num_labels: int | None = None,
        query_size: int = 1,
        val_split: float | None = None,
        pool_size: int | None = None,
        seed: int | None = None,
        oracle: Oracle | None = None,
        pool_batch_size: int | None = None,
        answers_file: str | os.PathLike | None = None,
        initial_strategy: str = "random",
        initial_embedding_model: Any = None,
    ) -> None:
        super().__init__()
        # ---- arguments, all checked before anything is labelled ------------------------------------------------
        if labelled is None:
            raise ValueError("`labelled` must be a LightningDataModule with a training set, got None.")
        _check_int("query_size", query_size, 1)
        _check_int("initial_num_labels", initial_num_labels, 0, allow_none=True)
        _check_int("pool_size", pool_size, 1, allow_none=True)
        _check_int("pool_batch_size", pool_batch_size, 1, allow_none=True)
        _check_int("seed", seed, 0, allow_none=True)
        if not isinstance(initial_strategy, str) or initial_strategy not in INITIAL_STRATEGIES:
            raise ValueError(
                f"`initial_strategy={initial_strategy!r}` is not one of the accepted values: "
                f"{', '.join(repr(name) for name in INITIAL_STRATEGIES)}."
            )
        if initial_embedding_model is not None and not callable(initial_embedding_model):
            raise TypeError(
                f"`initial_embedding_model` must be a torch.nn.Module or None, got {initial_embedding_model!r}."
            )
        if val_split is not None and (
            isinstance(val_split, bool) or not isinstance(val_split, (int, float)) or not 0.0 <= val_split < 1.0
        ):
            raise ValueError(f"`val_split` must be a float in [0, 1) or None, got {val_split!r}.")
        if oracle is not None and not callable(oracle):
            raise TypeError(
                f"`oracle` must be a callable `(dataset_indices, items) -> labels` or None, got {oracle!r}."
            )
        for name, fn in (
            ("map_dataset_to_labelled", map_dataset_to_labelled),
            ("filter_unlabelled_data", filter_unlabelled_data),
        ):
            if fn is not None and not callable(fn):
                raise TypeError(f"`{name}` must be callable or None, got {fn!r}.")
        self.query_size = int(query_size)
        self.heuristic = resolve_heuristic(heuristic, query_size=self.query_size, seed=seed)
        if isinstance(heuristic, DiversityStrategy) and seed is not None:
            self.heuristic.seed(seed)
        self.initial_strategy = initial_strategy
        self.labelled = labelled
        self.seed = seed
        self.val_split = float(val_split) if val_split else None
        self.pool_size = pool_size
        self.initial_num_labels = initial_num_labels
        self.map_dataset_to_labelled = map_dataset_to_labelled
        self.filter_unlabelled_data = filter_unlabelled_data
        self.pool_batch_size = pool_batch_size

        # ---- the data --------------------------------------------------------------------------------------------
        train_dataset = find_train_dataset(labelled)
        size = len(train_dataset)
        self._has_own_val = getattr(labelled, "val_dataset", None) is not None
        if self._has_own_val and self.val_split is not None:
            raise ValueError(
                f"`val_split={val_split}` but `labelled` already has a validation set; use one or the other "
                "(val_split=None to validate on the datamodule's own validation set)."
            )
        self.num_classes = find_num_classes(labelled, train_dataset)
        classes = getattr(labelled, "classes", None)
        self.classes: list[str] | None = list(classes) if classes is not None else None
        self.image_size = getattr(labelled, "image_size", None)  # read by alkit.vision.ImageClassifier.setup
        self._train_source = train_dataset
        eval_dataset = find_eval_dataset(labelled, train_dataset)
        self._oracle = OracleSession(oracle, eval_dataset, self.num_classes, self.classes, answers_file)
        self._train_view = TargetOverrideDataset(train_dataset, self._oracle.overrides)
        self._eval_view = TargetOverrideDataset(eval_dataset, self._oracle.overrides)

        mask = np.zeros(size, dtype=int)
        if map_dataset_to_labelled is not None:
            given = np.asarray(map_dataset_to_labelled(train_dataset)).reshape(-1)
            if given.shape[0] != size:
                raise ValueError(
                    f"`map_dataset_to_labelled` returned a mask of length {given.shape[0]} for a training set "
                    f"of {size}."
                )
            mask = (given != 0).astype(int)
        available = size - int(mask.sum())
        if initial_num_labels is not None and initial_num_labels > available:
            raise ValueError(
                f"`initial_num_labels={initial_num_labels}` exceeds the {available} unlabelled samples of the training "
                f"set (size {size}); accepted: 0..{available}."
            )
        initially = int(mask.sum()) + (initial_num_labels or 0)
        pool_at_start = size - initially
        if pool_size is not None:
            pool_at_start = min(pool_at_start, pool_size)
        if 0 < pool_at_start < self.query_size:
            raise ValueError(
                f"`query_size={query_size}` exceeds the {pool_at_start} samples the first round scores (training set "
                f"of {size}, {initially} labelled at the start"
                + (f", pool_size={pool_size}" if pool_size is not None else "")
                + f"): every round would label its whole pool, whatever the heuristic; accepted: 1..{pool_at_start}."
            )
        num_val = math.ceil(round(self.val_split * initially, 9)) if self.val_split else 0  # 0.1 * 30 -> 3
        if self.val_split is not None and initially == 0:
            raise ValueError(
                f"`val_split={val_split}` draws the validation set from the initially labelled samples, but none is "
                "labelled at the start; set `initial_num_labels` (or `map_dataset_to_labelled`)."
            )
        if self.val_split is not None and num_val >= initially:
            raise ValueError(
                f"`val_split={val_split}` holds out {num_val} of the {initially} initially labelled samples, leaving "
                "none to train on; label more samples at the start (`initial_num_labels`) or lower `val_split`."
            )

        # ---- initial state -----------------------------------------------------------------------------------------
        self._rng = np.random.default_rng(seed)
        self._round = 0
        self._pool_subset: np.ndarray | None = None
        self._pool_subset_key: tuple[int, int] | None = None
        self._labels = LabelledSet(size, mask)
        self._baal_view: _BaalView | None = None
        self._warn_if_eval_view_is_random()
        if initial_num_labels:
            unlabelled = self._labels.unlabelled_indices()
            if initial_strategy == "typiclust":
                chosen = typical_samples(
                    self._eval_view,
                    np.flatnonzero(self._labels.steps),
                    unlabelled,
                    initial_num_labels,
                    initial_embedding_model,
                    lambda dataset: self._loader(dataset, shuffle=False, batch_size=self.pool_batch_size or 256),
                    seed=int(self._rng.integers(0, 2**31 - 1)),
                )
            else:
                chosen = self._rng.choice(unlabelled, size=initial_num_labels, replace=False)
            chosen = np.sort(chosen).astype(np.int64)
            if oracle is not None and self._oracle.answers.path is None:
                self._oracle.defer(chosen)  # asked once the answers file is known (see OracleSession)
            elif oracle is not None:
                self._oracle.keep(chosen, self._oracle.ask(chosen, self._round))
            self._labels.label(chosen)
        labelled_now = np.flatnonzero(self._labels.steps)
        if num_val:
            self._labels.hold_out(self._rng.choice(labelled_now, size=num_val, replace=False))
            if num_val < 2:
                warnings.warn(
                    f"The validation set has {num_val} sample ({val_split} of {initially} labelled samples): a metric "
                    "on one sample is 0 or 1. Use at least 2 validation samples (more initial labels or a larger "
                    "val_split) for model selection to mean anything.",
                    UserWarning,
                    stacklevel=2,
                )
        if labelled_now.size == 0:
            warnings.warn(
                "No sample is labelled at the start (`initial_num_labels` not set): the first round trains on "
                "nothing and the first uncertainty estimates are those of an untrained model.",
                UserWarning,
                stacklevel=2,
            )

    def _warn_if_eval_view_is_random(self) -> None:
        """Scoring must be deterministic: warn when the evaluation view gives two values for one sample."""
        unlabelled = self._labels.unlabelled_indices()
        if unlabelled.size and not deep_check(self._eval_view[int(unlabelled[0])], self._eval_view[int(unlabelled[0])]):
            warnings.warn(
                "The pool dataset returns different values for the same sample: its transforms are random. "
                "Scoring must be deterministic; give the wrapped datamodule a `train_dataset_for_inference()` that "
                "serves the training set with evaluation transforms.",
                UserWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------------------------------------------------
    # what is where (dataset indices)
    # ------------------------------------------------------------------------------------------------------------
    @property
    def labelled_set(self) -> LabelledSet:
        """Which samples are labelled, when, and which validate (dataset indices); changed only by :meth:`label`."""
        return self._labels

    @property
    def dataset(self) -> ActiveLearningDataset:
        """The labelled set as a BaaL ``ActiveLearningDataset`` (validation samples count as labelled), for code
        written for BaaL such as its stopping criteria; its ``labelled_map`` is :attr:`labelled_set`'s own array."""
        if self._baal_view is None:
            self._baal_view = _BaalView(self._train_view, self._eval_view, self._labels.steps)
        return self._baal_view

    @property
    def rng(self) -> np.random.Generator:
        """The generator of every random choice on this data (initial labels, validation, pool subsets, stochastic
        selection); its state is part of :meth:`state_dict`, so a resumed run draws what the original drew."""
        return self._rng

    @property
    def round(self) -> int:
        """Number of labelling steps made since the initial labels."""
        return self._round

    @property
    def labelled_indices(self) -> np.ndarray:
        """Dataset indices of every labelled sample, training and validation."""
        return np.flatnonzero(self._labels.steps).astype(np.int64)

    @property
    def val_indices(self) -> np.ndarray:
        """Dataset indices of the validation samples (fixed after construction)."""
        return self._labels.val_indices()

    @property
    def train_indices(self) -> np.ndarray:
        """Dataset indices the model trains on: labelled and not in validation."""
        return self._labels.train_indices()

    @property
    def pool_indices(self) -> np.ndarray:
        """Dataset indices of every unlabelled sample."""
        return self._labels.unlabelled_indices()

    @property
    def num_labelled(self) -> int:
        return int(np.count_nonzero(self._labels.steps))

    @property
    def has_labelled_data(self) -> bool:
        return self.train_indices.size > 0

    @property
    def has_unlabelled_data(self) -> bool:
        return bool((self._labels.steps == 0).any())

    @property
    def has_validation(self) -> bool:
        return self._has_own_val or self._labels.val_indices().size > 0

    @property
    def has_test(self) -> bool:
        return getattr(self.labelled, "test_dataset", None) is not None

    @property
    def labelled_dataset(self) -> Dataset:
        """The training samples (labelled minus validation) with training transforms and the oracle's labels."""
        self._oracle.answer_pending(self._round)
        return Subset(self._train_view, self.train_indices.tolist())

    @property
    def val_dataset(self) -> Dataset | None:
        self._oracle.answer_pending(self._round)
        if self._has_own_val:
            return self.labelled.val_dataset
        val_indices = self._labels.val_indices()
        return Subset(self._eval_view, val_indices.tolist()) if val_indices.size else None

    @property
    def pool(self) -> ActiveLearningPool:
        """The whole unlabelled pool (BaaL's ``ActiveLearningPool``) with evaluation transforms, in index order."""
        return ActiveLearningPool(Subset(self._eval_view, self.pool_indices.tolist()))

    @property
    def current_pool_indices(self) -> np.ndarray:
        """Dataset index of each position of :meth:`pool_dataloader` this round (filtered, maybe a random subset).

        The subset is drawn once per labelling step and kept until the next one, so scores computed on the pool
        dataloader always map back through this array.
        """
        key = (self._round, self.num_labelled)
        if self._pool_subset is None or self._pool_subset_key != key:
            candidates = self._filtered_pool_indices()
            if self.pool_size is not None and self.pool_size < candidates.size:
                candidates = np.sort(self._rng.choice(candidates, size=self.pool_size, replace=False))
            self._pool_subset, self._pool_subset_key = candidates.astype(np.int64), key
        return self._pool_subset.copy()

    def _filtered_pool_indices(self) -> np.ndarray:
        pool_indices = self.pool_indices
        if self.filter_unlabelled_data is None:
            return pool_indices
        pool_dataset = Subset(self._eval_view, pool_indices.tolist())
        kept = self.filter_unlabelled_data(pool_dataset)
        if kept is pool_dataset:
            return pool_indices
        if isinstance(kept, Subset) and kept.dataset is pool_dataset:
            return pool_indices[np.asarray(kept.indices, dtype=np.int64)]
        raise ValueError(
            "`filter_unlabelled_data` must return the pool dataset it was given or a `torch.utils.data.Subset` of it "
            f"(so that scored positions map back to dataset indices), got {type(kept).__name__}."
        )

    # ------------------------------------------------------------------------------------------------------------
    # Lightning dataloaders
    # ------------------------------------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, shuffle: bool, batch_size: int | None = None) -> DataLoader:
        make = getattr(self.labelled, "make_dataloader", None)
        if batch_size is None and callable(make):
            return make(dataset, shuffle=shuffle)
        return DataLoader(
            dataset,
            batch_size=batch_size or getattr(self.labelled, "batch_size", None) or 1,
            shuffle=shuffle,
            num_workers=getattr(self.labelled, "num_workers", 0) or 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Labelled training samples (validation excluded), shuffled, with training transforms."""
        return self._loader(self.labelled_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """The fixed validation set with evaluation transforms (or the wrapped datamodule's own); ``[]`` if none."""
        if self._has_own_val:
            return self.labelled.val_dataloader()
        dataset = self.val_dataset
        return self._loader(dataset, shuffle=False) if dataset is not None else []

    def test_dataloader(self) -> DataLoader | list:
        """The wrapped datamodule's test set; ``[]`` if it has none."""
        return self.labelled.test_dataloader() if self.has_test else []

    def pool_dataloader(self) -> DataLoader:
        """This round's pool (see :attr:`current_pool_indices`) in a fixed order with evaluation transforms."""
        dataset = Subset(self._eval_view, self.current_pool_indices.tolist())
        batch_size = self.pool_batch_size or getattr(self.labelled, "batch_size", None) or 1
        return self._loader(dataset, shuffle=False, batch_size=batch_size)

    def labelled_inference_dataloader(self) -> DataLoader:
        """Every labelled sample (training and validation) in index order, with evaluation transforms.

        Diversity strategies read the embeddings of the labelled set through it (CoreSet's initial centres).
        """
        dataset = Subset(self._eval_view, self.labelled_indices.tolist())
        batch_size = self.pool_batch_size or getattr(self.labelled, "batch_size", None) or 1
        return self._loader(dataset, shuffle=False, batch_size=batch_size)

    def predict_dataloader(self) -> DataLoader:
        """Alias of :meth:`pool_dataloader` (Flash scored the pool through the predict loop)."""
        return self.pool_dataloader()

    # ------------------------------------------------------------------------------------------------------------
    # labelling
    # ------------------------------------------------------------------------------------------------------------
    def query(
        self,
        scores: Sequence[float] | np.ndarray,
        query_size: int | None = None,
        embeddings: np.ndarray | None = None,
        labelled_embeddings: np.ndarray | None = None,
        probabilities: np.ndarray | None = None,
    ) -> np.ndarray:
        """Select once with :meth:`select`, then :meth:`label` the picks; return their dataset indices.

        ``scores[k]`` is the heuristic's score of the ``k``-th sample of :meth:`pool_dataloader` (as returned by
        :func:`alkit.active.scoring.score_pool`). ``query_size`` overrides :attr:`query_size` for this call (e.g. to
        stay within a labelling budget); 0 labels nothing.
        """
        selection = self.select(scores, query_size, embeddings, labelled_embeddings, probabilities)
        return self.label(self.current_pool_indices[selection.positions])

    def select(
        self,
        scores: Sequence[float] | np.ndarray,
        query_size: int | None = None,
        embeddings: np.ndarray | None = None,
        labelled_embeddings: np.ndarray | None = None,
        probabilities: np.ndarray | None = None,
    ) -> Selection:
        """Which positions of this round's pool :attr:`heuristic` picks, in its order, with its score of each.

        Nothing is labelled. See :func:`alkit.active.selection.select_from_pool`: a diversity strategy also needs
        the pool's ``embeddings``, the ``labelled_embeddings`` (of :meth:`labelled_inference_dataloader`) and, for
        BADGE, the mean ``probabilities``; it returns its own scores (e.g. CoreSet's distance to the labelled set).
        """
        return select_from_pool(
            self.heuristic,
            scores,
            len(self.current_pool_indices),
            self.query_size if query_size is None else query_size,
            embeddings,
            labelled_embeddings,
            probabilities,
            rng=self._rng,
            num_labelled=self.num_labelled,
        )

    def label(self, indices: Sequence[int] | np.ndarray | int, labels: Sequence[Any] | None = None) -> np.ndarray:
        """Label samples given by *dataset* index; ``labels`` (a person's answer) or else the oracle provides them.

        Every check runs before anything changes: indices must be distinct, in range and unlabelled; labels must be
        one per index and each a known class (index or name). Returns the labelled dataset indices.
        """
        indices = self._labels.check_new(indices)
        if indices.size == 0:
            return indices
        self._oracle.answer_pending(self._round)
        if labels is not None:
            checked = check_labels(labels, indices, self.num_classes, self.classes, source="`labels` argument")
        elif self.oracle is not None:
            checked = self._oracle.ask(indices, self._round)
        else:
            checked = None  # simulation: the labels already in the data are used as they are
            check_labels(reveal_labels(self._train_source, indices), indices, self.num_classes, self.classes, "data")
        self._labels.label(indices)
        if checked is not None:
            self._oracle.keep(indices, checked)
        self._round += 1
        return indices

    @property
    def oracle(self) -> Oracle | None:
        """``oracle(dataset_indices, items) -> labels`` that labels the samples; None: the data's own labels."""
        return self._oracle.oracle

    @oracle.setter
    def oracle(self, oracle: Oracle | None) -> None:
        if oracle is not None and not callable(oracle):
            raise TypeError(
                f"`oracle` must be a callable `(dataset_indices, items) -> labels` or None, got {oracle!r}."
            )
        self._oracle.oracle = oracle

    @property
    def answers_file(self) -> os.PathLike | None:
        """The file that keeps every answer of the user oracle (None until one is set)."""
        return self._oracle.answers.path

    def set_answers_file(self, path: str | os.PathLike) -> None:
        """Keep the oracle's answers in ``path`` from now on: answers in it are read, those given so far written.

        Initial labels not answered yet are asked for now, answers already in the file excepted.
        """
        self._oracle.attach(path, self._round)

    def setup(self, stage: str) -> None:
        """Before a fit reads any data: take the answers file the trainer's active-learning loop names, if any."""
        answers_path = getattr(getattr(self.trainer, "fit_loop", None), "answers_path", None)
        if self.oracle is not None and self.answers_file is None and callable(answers_path):
            self.set_answers_file(answers_path())

    # ------------------------------------------------------------------------------------------------------------
    # checkpointing (Lightning saves a datamodule's state_dict in every checkpoint)
    # ------------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The labelled set's state (step of each sample, validation), user labels, RNG states, round.

        Only plain Python types, so the checkpoint loads with ``torch.load(weights_only=True)``. The keys are those
        of every alkit release since the format was introduced, so older checkpoints load unchanged.
        """
        self._oracle.answer_pending(self._round)
        heuristic_rng = getattr(self.heuristic, "rng", None)
        subset = self._pool_subset if self.pool_size is not None else None
        return {
            "format": _STATE_FORMAT,
            **self._labels.state_dict(),  # dataset_size, labelled_map, val_indices
            "label_overrides": {int(k): int(v) for k, v in self._oracle.overrides.items()},
            "round": int(self._round),
            "rng_state": _plain(self._rng.bit_generator.state),
            # the drawn subset is state only when it is random (pool_size); otherwise it is recomputed identically
            "pool_subset": None if subset is None else [int(i) for i in subset],
            "pool_subset_key": None if subset is None else list(self._pool_subset_key),
            "heuristic_rng_state": _plain(heuristic_rng.get_state())
            if isinstance(heuristic_rng, np.random.RandomState)
            else None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a checkpoint of another dataset is refused and nothing changes."""
        if not isinstance(state_dict, dict) or state_dict.get("format") != _STATE_FORMAT:
            raise ValueError(
                f"Not an ActiveLearningDataModule state (expected format {_STATE_FORMAT!r}, got "
                f"{state_dict.get('format') if isinstance(state_dict, dict) else type(state_dict).__name__!r})."
            )
        LabelledSet(self._labels.size).load_state_dict(state_dict)  # every check first: nothing changes on error
        overrides = {int(k): int(v) for k, v in state_dict["label_overrides"].items()}
        size = self._labels.size
        if any(not 0 <= k < size or not 0 <= v < self.num_classes for k, v in overrides.items()):
            raise ValueError("The checkpoint's user labels do not fit this dataset (index or class out of range).")

        self._labels.load_state_dict(state_dict)
        self._oracle.overrides.clear()
        self._oracle.overrides.update(overrides)
        self._round = int(state_dict["round"])
        self._rng.bit_generator.state = state_dict["rng_state"]
        subset = state_dict.get("pool_subset")
        key = state_dict.get("pool_subset_key")
        self._pool_subset = None if subset is None else np.asarray(subset, dtype=np.int64)
        self._pool_subset_key = None if key is None else (int(key[0]), int(key[1]))
        heuristic_state = state_dict.get("heuristic_rng_state")
        heuristic_rng = getattr(self.heuristic, "rng", None)
        if heuristic_state is not None and isinstance(heuristic_rng, np.random.RandomState):
            name, keys, pos, has_gauss, cached = heuristic_state
            heuristic_rng.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))

    def __getstate__(self) -> dict[str, Any]:
        # BaaL heuristics hold lambdas; ddp_spawn pickles the datamodule to start its processes
        self._oracle.answer_pending(self._round)
        state = dict(self.__dict__)
        state["heuristic"] = PicklableHeuristic(self.heuristic)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if isinstance(state.get("heuristic"), PicklableHeuristic):
            state["heuristic"] = state["heuristic"].restore()
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(labelled={self.num_labelled} (val {self.val_indices.size}), "
            f"pool={self.pool_indices.size}, query_size={self.query_size}, "
            f"heuristic={type(self.heuristic).__name__})"
        )


def _plain(value: Any) -> Any:
    """NumPy containers and scalars -> plain Python (lists, ints, floats), recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
