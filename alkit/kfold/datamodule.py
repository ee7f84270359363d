"""Fold-aware datamodules: the small protocol ``KFoldLoop`` talks to, and a wrapper that gives it to any datamodule.

``KFoldLoop`` only ever calls two methods on its datamodule – ``setup_folds(num_folds)`` once, then
``setup_fold_index(i)`` before fold ``i`` – so a user can bring their own fold logic by subclassing
:class:`BaseKFoldDataModule`. :class:`KFoldDataModule` implements the protocol for any ``LightningDataModule`` that
has a training set, using scikit-learn's splitters (see :mod:`alkit.kfold.splits`).

Optional protocol for deterministic held-out folds: a wrapped datamodule may define a method
``train_dataset_for_inference()`` (the name :class:`alkit.vision.ImageClassificationData` and the active-learning
datamodule use; ``train_dataset_for_evaluation()`` is accepted too) returning the *same samples in the same order* as
its training set but with evaluation (deterministic) transforms. When present, the held-out fold of every split is
drawn from it, so validation does not see random crops/flips; otherwise the training dataset is used as is (with a
warning when it carries a ``transform``).
"""

from __future__ import annotations

import inspect
import numbers
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler, Sampler, Subset

from alkit._seam import overridden_batch_transfer_hooks
from alkit.kfold.folds import Fold, Folds, folds_fingerprint
from alkit.kfold.splits import DEFAULT_K, make_folds, read_targets, resolve_cv, splitter_needs_targets
from alkit.lightning import check_namespace, pl

__all__ = ["BaseKFoldDataModule", "KFoldDataModule", "EVAL_DATASET_HOOKS", "folds_fingerprint"]

#: Names (in order of preference) of the optional method of a wrapped datamodule returning its training set with
#: evaluation transforms.
EVAL_DATASET_HOOKS = ("train_dataset_for_inference", "train_dataset_for_evaluation")

_MISSING = object()

# DataLoader settings carried over from the wrapped datamodule's train_dataloader() to the fold loaders.
_LOADER_SETTINGS = (
    "batch_size",
    "num_workers",
    "collate_fn",
    "pin_memory",
    "drop_last",
    "timeout",
    "worker_init_fn",
    "multiprocessing_context",
    "generator",
    "prefetch_factor",
    "persistent_workers",
    "pin_memory_device",
    "in_order",
)


class BaseKFoldDataModule(pl.LightningDataModule, ABC):
    """What ``KFoldLoop`` needs from a datamodule: compute the folds once, then switch to one fold at a time.

    After ``setup_fold_index(i)``, ``train_dataloader()`` must serve fold ``i``'s training part and
    ``val_dataloader()`` its held-out part. ``test_dataloader()`` (optional) serves data shared by all folds.
    """

    @abstractmethod
    def setup_folds(self, num_folds: int) -> None:
        """Compute ``num_folds`` folds. Must be deterministic: it runs on every process under ``ddp_spawn``."""

    @abstractmethod
    def setup_fold_index(self, fold_index: int) -> None:
        """Make fold ``fold_index`` the current one for the train/val dataloaders."""

    @property
    def has_test_data(self) -> bool:
        """Whether ``test_dataloader()`` serves data (the loop tests each fold and the ensemble only then)."""
        return pl.utilities.model_helpers.is_overridden("test_dataloader", self, pl.LightningDataModule)


class KFoldDataModule(BaseKFoldDataModule):
    """Turn any ``LightningDataModule`` with a training set into a k-fold one.

    Fold ``i`` trains on the other folds' samples and validates on its held-out samples; testing uses the wrapped
    datamodule's test set (when it has one). Batch size, workers, ``collate_fn`` and the other ``DataLoader``
    settings come from the wrapped datamodule's ``train_dataloader()``; transforms come with its datasets.

    Args:
        datamodule: the datamodule to cross-validate. Its training set is its ``train_dataloader()``'s dataset, or
            its ``train_dataset`` attribute when it has no ``train_dataloader``.
        splitter: the older name of ``cv`` for a splitter object.
        cv: as scikit-learn's ``cv``: a number of folds (a shuffled, seeded ``KFold``; ``StratifiedKFold`` with
            ``stratify=True``, ``GroupKFold`` with ``groups``), any scikit-learn splitter (``KFold``,
            ``StratifiedKFold``, ``GroupKFold``, ``ShuffleSplit``, ``RepeatedStratifiedKFold``, ...) or an iterable
            of ``(train, held_out)`` index pairs. ``None`` (and no ``k``): 5 folds, or as many as
            ``setup_folds(num_folds)`` asks for.
        k: the number of folds, as ``cv=<int>``; with a splitter it must equal the splitter's ``get_n_splits``.
        stratify: keep class ratios in every fold; targets are read from the training set's ``targets``.
        groups: one group id per training sample; a group never straddles train and held-out parts.
        seed: seeds the default splitter and any splitter left with ``random_state=None``; folds are a pure function
            of the data and the seed, hence identical on every ``ddp_spawn`` rank and after a resume.

    :attr:`folds` (a read-only :class:`~alkit.kfold.Folds`, computed once at ``setup("fit")`` or the first
    ``setup_folds``) holds positions in the training set; the loop and the result share that same object.
    """

    def __init__(
        self,
        datamodule: pl.LightningDataModule,
        splitter: Any = None,
        stratify: bool = False,
        groups: Any = None,
        seed: int = 0,
        *,
        cv: Any = None,
        k: int | None = None,
    ) -> None:
        super().__init__()
        check_namespace(datamodule, "datamodule")
        if not isinstance(datamodule, pl.LightningDataModule):
            raise TypeError(
                f"datamodule={datamodule!r} is invalid: expected a {pl.__name__}.LightningDataModule "
                "(build one with LightningDataModule.from_datasets(train_dataset=...) for plain datasets)"
            )
        resolved = resolve_cv(cv, k, splitter=splitter)  # every bad cv/k/splitter refused here, before any work
        if not isinstance(stratify, bool):
            raise TypeError(f"stratify={stratify!r} is invalid: expected True or False")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed={seed!r} is invalid: expected an int")
        self.datamodule = datamodule
        self.cv: int | Any | None = resolved
        self.k = None if k is None else int(k)  # with a splitter cv: the count it must produce
        self.splitter = None if resolved is None or isinstance(resolved, int) else resolved
        self.stratify = stratify
        self.groups = groups
        self.seed = int(seed)
        self.folds: Folds | None = None
        self.fold_index: int | None = None
        self._setup_stages: set[str] = set()
        self._train_dataset: Dataset | None = None
        self._eval_dataset: Dataset | None = None
        self._loader_settings: dict[str, Any] | None = None
        self._train_fold: Dataset | None = None
        self._val_fold: Dataset | None = None
        self._has_test_data: bool | None = None
        self._forward_batch_transfer_hooks()

    # ------------------------------------------------------------------ Lightning hooks, forwarded
    @property
    def trainer(self) -> Any:
        return self.__dict__.get("_trainer")

    @trainer.setter
    def trainer(self, trainer: Any) -> None:
        # The wrapped datamodule's hooks (and anything else it does with ``self.trainer``) run under the same
        # trainer as the folds it serves.
        self.__dict__["_trainer"] = trainer
        if "datamodule" in self.__dict__:
            self.datamodule.trainer = trainer

    def _forward_batch_transfer_hooks(self) -> None:
        """Hand Lightning the wrapped datamodule's batch-transfer hooks, exactly those it overrides.

        Lightning calls a datamodule's ``on_before_batch_transfer`` / ``transfer_batch_to_device`` /
        ``on_after_batch_transfer`` (GPU augmentation, custom batch types) only when they are overridden; without
        this a user's hooks would be silently skipped under k-fold. Binding only the overridden ones keeps the
        others Lightning's defaults, so a datamodule without such hooks costs nothing more per batch.
        """
        for name in overridden_batch_transfer_hooks(self.datamodule):
            setattr(self, name, getattr(self.datamodule, name))

    def prepare_data(self) -> None:
        self.datamodule.prepare_data()

    def setup(self, stage: str) -> None:
        # Once per stage: a wrapped setup() that redraws a random split would silently change the samples the
        # already computed fold indices point to.
        self._setup_wrapped(stage)
        if stage == "fit":
            self._select_first_fold_for_sanity_check()

    def _setup_wrapped(self, stage: str) -> None:
        if stage not in self._setup_stages:
            self._setup_stages.add(stage)
            self.datamodule.setup(stage)

    def _select_first_fold_for_sanity_check(self) -> None:
        """Serve fold 0 from the start of ``trainer.fit``.

        Lightning's sanity check asks for ``val_dataloader()`` before the fit loop (``KFoldLoop``) runs and selects
        a fold. The folds come from this datamodule's own ``cv`` (never from the trainer): one source of truth.
        """
        if self.folds is None:
            self.setup_folds(None)
        if self.fold_index is None:
            self.setup_fold_index(0)

    def teardown(self, stage: str) -> None:
        self.datamodule.teardown(stage)

    # ------------------------------------------------------------------ the k-fold protocol
    def setup_folds(self, num_folds: int | None = None) -> None:
        """Compute the folds once; ``num_folds`` (``None``: this datamodule's ``cv`` decides) is checked against them.

        Computed once (kfold_fit checks them before training, Lightning's sanity check and the loop ask again):
        reading targets may mean iterating the whole training set. Only a datamodule built without ``cv``/``k``
        recomputes, when a loop asks for another count than the default it used.
        """
        if num_folds is None:
            num_folds = self.k
        if self.folds is not None and (num_folds is None or len(self.folds) == num_folds):
            self.fold_index = None
            return
        if isinstance(self.cv, int) and num_folds is not None and num_folds != self.cv:
            raise ValueError(
                f"num_folds={num_folds} does not match this KFoldDataModule's cv={self.cv}: build the loop with "
                f"KFoldLoop({self.cv}) or the datamodule with cv={num_folds}"
            )
        cv = self.cv if self.cv is not None else (num_folds or DEFAULT_K)
        dataset = self.train_dataset
        targets = None
        if self.stratify or (self.splitter is not None and splitter_needs_targets(self.splitter)):
            targets = read_targets(dataset)
        self.folds = None
        self.folds = make_folds(
            len(dataset),
            None if isinstance(cv, int) else num_folds,
            cv=cv,
            targets=targets,
            stratify=self.stratify,
            groups=self.groups,
            seed=self.seed,
        )
        self.fold_index = None

    def setup_fold_index(self, fold_index: int) -> None:
        folds = self._require_folds()
        if isinstance(fold_index, bool) or not isinstance(fold_index, numbers.Integral):
            raise TypeError(f"fold_index={fold_index!r} is invalid: expected an int in [0, {len(folds) - 1}]")
        if not 0 <= fold_index < len(folds):
            raise IndexError(f"fold_index={fold_index} is out of range: accepted is 0 <= fold_index < {len(folds)}")
        fold = folds[fold_index]
        self.fold_index = int(fold_index)
        self._train_fold = Subset(self.train_dataset, fold.train_indices.tolist())
        self._val_fold = Subset(self.eval_dataset, fold.val_indices.tolist())

    # ------------------------------------------------------------------ dataloaders
    def train_dataloader(self) -> DataLoader:
        settings = self.loader_settings
        kwargs = dict(settings["kwargs"])
        generator = kwargs.get("generator")
        if isinstance(generator, torch.Generator) and self.fold_index is not None:
            # A seeded loader of the wrapped datamodule: a fresh generator per fold, so a fold's data order does not
            # depend on the folds before it (nor on a resume).
            generator = kwargs["generator"] = torch.Generator().manual_seed(generator.initial_seed() + self.fold_index)
        dataset = self._require_fold()[0]
        sampler_type = _ResumableRandomSampler if settings["shuffle"] else _ResumableSampler
        sampler = sampler_type(dataset, shuffle=settings["shuffle"], generator=generator)
        return _FoldTrainLoader(dataset, sampler=sampler, progress=self._batches_done_in_epoch, **kwargs)

    def _batches_done_in_epoch(self) -> int | None:
        """Training batches of the current epoch already done (read when a checkpoint is saved)."""
        trainer = self.trainer
        progress = getattr(getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None), "batch_progress", None)
        ready = getattr(getattr(progress, "current", None), "ready", None)
        return ready if isinstance(ready, int) else None

    def val_dataloader(self) -> DataLoader:
        kwargs = dict(self.loader_settings["kwargs"], drop_last=False)  # every held-out sample is evaluated
        return DataLoader(self._require_fold()[1], shuffle=False, **kwargs)

    def test_dataloader(self) -> Any:
        if not self.has_test_data:
            raise RuntimeError(
                f"the wrapped datamodule {type(self.datamodule).__name__} has no test_dataloader(); "
                "k-fold testing needs one (check KFoldDataModule.has_test_data first)"
            )
        self._setup_wrapped("test")
        return self.datamodule.test_dataloader()

    @property
    def has_test_data(self) -> bool:
        """Whether the wrapped datamodule serves test batches (asked once: it may set up its test stage)."""
        if self._has_test_data is None:
            self._has_test_data = self._probe_test_data()
        return self._has_test_data

    def _probe_test_data(self) -> bool:
        dm = self.datamodule
        if not pl.utilities.model_helpers.is_overridden("test_dataloader", dm, pl.LightningDataModule):
            return False
        if getattr(dm, "test_dataset", _MISSING) is None:
            return False  # e.g. ImageClassificationData without a test folder
        self._setup_wrapped("test")
        try:
            loader = dm.test_dataloader()
        except (pl.utilities.exceptions.MisconfigurationException, NotImplementedError, RuntimeError) as err:
            pl.utilities.rank_zero_warn(
                f"{type(dm).__name__}.test_dataloader() raised {type(err).__name__}: {err}; the folds are not tested"
            )
            return False
        return not (isinstance(loader, (list, tuple, dict)) and len(loader) == 0)

    # ------------------------------------------------------------------ fold inspection
    @property
    def num_folds(self) -> int:
        return len(self._require_folds())

    @property
    def fold_sizes(self) -> list[tuple[int, int]]:
        """``(n_train, n_held_out)`` per fold."""
        return self._require_folds().fold_sizes

    def fold_indices(self, fold_index: int) -> Fold:
        """Positions (in the training set) of fold ``fold_index``'s training and held-out samples."""
        return self._require_folds()[fold_index]

    def folds_fingerprint(self) -> str:
        """A short hash of all fold indices: lets a resumed run check it sees the same folds as before."""
        return self._require_folds().fingerprint

    # ------------------------------------------------------------------ the wrapped training set
    @property
    def train_dataset(self) -> Dataset:
        """The wrapped datamodule's training set (the one the fold indices point into)."""
        if self._train_dataset is None:
            self._resolve_training_set()
        return self._train_dataset

    @property
    def eval_dataset(self) -> Dataset:
        """The training set with evaluation transforms if the wrapped datamodule offers it, else the training set."""
        if self._eval_dataset is None:
            self._resolve_eval_dataset()
        return self._eval_dataset

    @property
    def loader_settings(self) -> dict[str, Any]:
        if self._loader_settings is None:
            self._resolve_training_set()
        return self._loader_settings

    def _resolve_training_set(self) -> None:
        self._setup_wrapped("fit")
        dm = self.datamodule
        loader = None
        if pl.utilities.model_helpers.is_overridden("train_dataloader", dm, pl.LightningDataModule):
            try:
                loader = dm.train_dataloader()
            except ValueError as err:  # e.g. torch's RandomSampler refusing an empty dataset
                raise ValueError(
                    f"datamodule={type(dm).__name__} has no usable training data: its train_dataloader() raised "
                    f"{type(err).__name__}: {err}"
                ) from err
            if not isinstance(loader, DataLoader):
                raise TypeError(
                    f"{type(dm).__name__}.train_dataloader() returned a {type(loader).__name__}: k-fold needs a "
                    "single torch DataLoader over a map-style dataset (or a `train_dataset` attribute)"
                )
            dataset = loader.dataset
        elif getattr(dm, "train_dataset", None) is not None:
            dataset = dm.train_dataset
        else:
            raise ValueError(
                f"datamodule={type(dm).__name__} has no training data: it defines neither train_dataloader() nor a "
                "`train_dataset` attribute after setup('fit'); k-fold cross-validation splits that training set"
            )
        if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
            raise TypeError(
                f"the training set of {type(dm).__name__} is a {type(dataset).__name__} without random access/len: "
                "k-fold needs a map-style dataset (with __len__ and __getitem__)"
            )
        self._train_dataset = dataset
        self._loader_settings = _loader_settings(loader, dm)

    def _resolve_eval_dataset(self) -> None:
        dataset = self.train_dataset
        name = next((n for n in EVAL_DATASET_HOOKS if callable(getattr(self.datamodule, n, None))), None)
        if name is not None:
            eval_dataset = getattr(self.datamodule, name)()
            if eval_dataset is None:
                eval_dataset = dataset
            elif len(eval_dataset) != len(dataset):
                raise ValueError(
                    f"{type(self.datamodule).__name__}.{name}() returned {len(eval_dataset)} samples but the training "
                    f"set has {len(dataset)}: it must be the same samples in the same order"
                )
        else:
            eval_dataset = dataset
            if getattr(dataset, "transform", None) is not None:
                pl.utilities.rank_zero_warn(
                    f"The held-out folds use the training set's transforms ({type(self.datamodule).__name__} has no "
                    f"`{EVAL_DATASET_HOOKS[0]}()`); if they are random, validation metrics are noisy."
                )
        self._eval_dataset = eval_dataset

    def _require_folds(self) -> Folds:
        if self.folds is None:
            raise RuntimeError("no folds yet: call setup_folds(num_folds) first (KFoldLoop does it on its first run)")
        return self.folds

    def _require_fold(self) -> tuple[Dataset, Dataset]:
        if self._train_fold is None or self._val_fold is None:
            raise RuntimeError("no current fold: call setup_folds(num_folds) then setup_fold_index(i) first")
        return self._train_fold, self._val_fold


def _loader_settings(loader: DataLoader | None, datamodule: pl.LightningDataModule) -> dict[str, Any]:
    """DataLoader keyword arguments for the fold loaders, copied from the wrapped training loader."""
    if loader is None:
        batch_size = getattr(datamodule, "batch_size", None) or 1
        num_workers = getattr(datamodule, "num_workers", None) or 0
        return {"shuffle": True, "kwargs": {"batch_size": int(batch_size), "num_workers": int(num_workers)}}
    kwargs: dict[str, Any] = {}
    accepted = inspect.signature(DataLoader.__init__).parameters
    for name in _LOADER_SETTINGS:
        if name in accepted and hasattr(loader, name):
            kwargs[name] = getattr(loader, name)
    if kwargs.get("batch_size") is None:  # a custom batch_sampler: keep at least its batch size
        kwargs["batch_size"] = getattr(loader.batch_sampler, "batch_size", None) or 1
        kwargs["drop_last"] = bool(getattr(loader.batch_sampler, "drop_last", False))
    if not kwargs.get("num_workers"):
        kwargs.pop("prefetch_factor", None)
        kwargs["persistent_workers"] = False
    return {"shuffle": isinstance(loader.sampler, RandomSampler), "kwargs": kwargs}


class _ResumableSampler(Sampler):
    """``RandomSampler``'s order (same draws from the same RNGs) or the sequential one, able to replay an epoch.

    The generator state an epoch's order came from is kept, so that a checkpoint written inside the epoch lets the
    resumed run continue with exactly the batches the interrupted one had still to train on.
    """

    def __init__(self, data_source: Dataset, shuffle: bool, generator: torch.Generator | None = None) -> None:
        self.data_source = data_source
        self.shuffle = shuffle
        self.generator = generator
        self.epoch_state: torch.Tensor | None = None
        self._replay_state: torch.Tensor | None = None
        self.skip = 0

    def __len__(self) -> int:
        return len(self.data_source)

    def __iter__(self):
        n, skip = len(self.data_source), self.skip
        self.skip = 0
        if not self.shuffle:
            yield from range(skip, n)
            return
        if self._replay_state is not None:
            generator = self.generator if self.generator is not None else torch.Generator()
            generator.set_state(self._replay_state)
            self._replay_state = None
        elif self.generator is None:  # as RandomSampler: a fresh generator seeded from torch's global RNG
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            generator = torch.Generator()
            generator.manual_seed(seed)
        else:
            generator = self.generator
        self.epoch_state = generator.get_state()
        yield from torch.randperm(n, generator=generator).tolist()[skip:]

    @property
    def replaying(self) -> bool:
        return self.skip > 0

    def replay(self, state: torch.Tensor | None, skip: int) -> None:
        """Make the next epoch the one whose order came from ``state``, without its first ``skip`` samples."""
        self._replay_state = state
        self.skip = skip


class _ResumableRandomSampler(_ResumableSampler, RandomSampler):
    """The shuffling :class:`_ResumableSampler`, a ``RandomSampler`` to whoever asks (Lightning, under DDP, replaces
    it with a shuffling ``DistributedSampler`` as it would a plain one)."""

    replacement = False
    _num_samples = None


class _FoldTrainLoader(DataLoader):
    """A fold's training loader that Lightning saves into checkpoints and restores (``state_dict``/``load_state_dict``)
    so that a run resumed inside an epoch trains on the very batches the interrupted one had left."""

    def __init__(self, *args: Any, progress: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.progress = progress

    def __iter__(self) -> Any:
        if isinstance(self.sampler, _ResumableSampler) and self.sampler.replaying:
            # Continuing an epoch: its iterator (and the draw from torch's RNG that creating one makes) dates from
            # before the checkpoint, so creating it again must leave the restored RNG state as it is.
            state = torch.get_rng_state()
            try:
                return super().__iter__()
            finally:
                torch.set_rng_state(state)
        return super().__iter__()

    def state_dict(self) -> dict[str, Any]:
        sampler = self.sampler
        done = self.progress() if callable(self.progress) else None
        if not isinstance(sampler, _ResumableSampler) or done is None or self.batch_size is None:
            return {}
        return {"epoch_state": sampler.epoch_state, "batches_done": int(done)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sampler = self.sampler
        done = int(state_dict.get("batches_done") or 0)
        if not 0 < done < len(self):  # nothing of the epoch done, or all of it: the next epoch is a fresh one
            return
        if isinstance(sampler, _ResumableSampler) and self.batch_size is not None:
            sampler.replay(state_dict.get("epoch_state"), int(state_dict["batches_done"]) * self.batch_size)
