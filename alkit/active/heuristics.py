"""Acquisition heuristics: BaaL's heuristic classes, resolved from a name or an instance.

alkit does not re-implement acquisition functions: a heuristic is a BaaL ``AbstractHeuristic`` (``compute_score``,
``get_uncertainties``, ``reorder_indices``). This module only

* turns a name (``"bald"``, ``"entropy"``, ...) into a BaaL instance, with a clear error listing the accepted names;
* adds :class:`VariationRatios`, which BaaL 2.1 lacks (Gal et al. 2017 use it), in BaaL's own shape;
* answers the questions the pool scorer must ask about a heuristic: does it need Monte-Carlo dropout samples, does
  it score each sample on its own (so scores can be streamed batch by batch), does it need the model at all.

Heuristics always receive **probabilities**, never logits. BaaL's ``requireprobs`` decorator silently softmaxes any
array that does not look like probabilities, and some heuristics (``Certainty``, ``Variance``) have no such decorator
and would rank raw logits. alkit's scorer (:mod:`alkit.active.scoring`) therefore applies the softmax itself and
hands every heuristic an array of shape ``[n_samples, n_classes, ..., n_iterations]`` whose class axis sums to one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from baal.active.heuristics import (
    BALD,
    EPIG,
    AbstractHeuristic,
    BatchBALD,
    Certainty,
    CombineHeuristics,
    Entropy,
    Margin,
    Precomputed,
    Random,
    Variance,
)
from baal.active.heuristics.aliases import PowerBALD, PowerEntropy
from baal.active.heuristics.heuristics import available_reductions
from baal.active.heuristics.stochastics import StochasticHeuristic

from alkit.active.diversity import BADGE, CoreSet, DiversityStrategy, Hybrid, TypiClust

__all__ = [
    "HEURISTIC_NAMES",
    "PicklableHeuristic",
    "SampledTargetEPIG",
    "VariationRatios",
    "needs_model_outputs",
    "requires_mc_samples",
    "resolve_heuristic",
    "scores_independently",
]


class VariationRatios(AbstractHeuristic):
    """Variation ratio ``1 - f_m / T``: the share of MC-dropout samples that disagree with the modal class.

    Gal, Islam & Ghahramani (2017), "Deep Bayesian Active Learning with Image Data", eq. (4): ``f_m`` is how many of
    the ``T`` stochastic forward passes predict the most frequent class. A sample on which every pass agrees scores
    0; the higher the score, the more the passes disagree, so samples are ranked by descending score (``reverse``).

    It needs several MC samples per input (with one sample every score is 0) and scores each sample on its own.

    Args:
        reduction: how to aggregate scores of multi-dimensional outputs (e.g. segmentation), as in BaaL.
    """

    def __init__(self, reduction: str | Callable = "none") -> None:
        super().__init__(reverse=True, reduction=reduction)

    def compute_score(self, predictions: np.ndarray, target_predictions: np.ndarray | None = None) -> np.ndarray:
        """Score ``predictions`` of shape ``[n_samples, n_classes, ..., n_iterations]`` (probabilities)."""
        if isinstance(predictions, (list, tuple)):
            if len(predictions) != 1:
                raise ValueError("VariationRatios scores a single model output, got a list of several outputs.")
            predictions = predictions[0]
        predictions = np.asarray(predictions)
        if predictions.ndim < 3:
            raise ValueError(
                "VariationRatios needs MC samples: predictions of shape [n_samples, n_classes, ..., n_iterations],"
                f" got shape {predictions.shape}."
            )
        num_classes, num_iterations = predictions.shape[1], predictions.shape[-1]
        votes = predictions.argmax(axis=1)  # [n_samples, ..., n_iterations]
        modal_count = np.zeros(votes.shape[:-1], dtype=np.int64)
        for class_index in range(num_classes):
            modal_count = np.maximum(modal_count, (votes == class_index).sum(axis=-1))
        return 1.0 - modal_count / num_iterations


class SampledTargetEPIG(EPIG):
    """EPIG (Bickford Smith et al. 2023, BaaL's implementation) with its target inputs drawn from the pool itself.

    EPIG scores a candidate by how much its label would tell about the predictions on *target* inputs, samples of
    the distribution the model will be used on. Without a separate target set, the pool is that distribution:
    ``num_targets`` pool samples are drawn at random (``seed``; the state is checkpointed with the datamodule) each
    time the pool is scored, from the same MC-dropout predictions, so no extra forward pass is made. BaaL forms an
    ``[n, C, n_targets * C]`` array; the pool is scored in chunks so that it stays around 16 M values.

    EPIG pairs pass ``k`` of a candidate with pass ``k`` of each target as one parameter sample. MC dropout draws
    an independent mask per sample, in BaaL as here, so the pairing is the usual approximation of that, not a shared
    draw of the weights.

    Args:
        num_targets: target inputs drawn from the pool (all of it when smaller).
        seed: seeds the draw of the targets.
    """

    def __init__(self, num_targets: int = 100, seed: int | None = None) -> None:
        if isinstance(num_targets, bool) or not isinstance(num_targets, (int, np.integer)) or num_targets < 1:
            raise ValueError(f"`num_targets` must be an integer >= 1, got {num_targets!r}.")
        super().__init__()
        self.num_targets = int(num_targets)
        self.rng = np.random.RandomState(seed)

    def compute_score(self, predictions: np.ndarray, target_predictions: np.ndarray | None = None) -> np.ndarray:
        predictions = np.asarray(predictions)
        if predictions.ndim != 3:
            raise ValueError(f"EPIG scores classifiers: predictions [n, C, I], got shape {predictions.shape}.")
        if target_predictions is None:
            count = min(self.num_targets, predictions.shape[0])
            target_predictions = predictions[np.sort(self.rng.choice(predictions.shape[0], count, replace=False))]
        num_classes, num_targets = predictions.shape[1], np.asarray(target_predictions).shape[0]
        rows = max(1, 2**24 // max(1, num_classes * num_classes * num_targets))
        chunks = [
            np.asarray(
                super(SampledTargetEPIG, self).compute_score(predictions[start : start + rows], target_predictions)
            )
            for start in range(0, predictions.shape[0], rows)
        ]
        return np.concatenate(chunks) if chunks else np.zeros(0)


def _seeded(strategy: DiversityStrategy, seed: int | None) -> DiversityStrategy:
    return strategy.seed(seed)


def _power_bald(query_size: int, seed: int | None) -> AbstractHeuristic:
    return PowerBALD(query_size=query_size)


def _power_entropy(query_size: int, seed: int | None) -> AbstractHeuristic:
    return PowerEntropy(query_size=query_size)


#: name -> factory(query_size, seed). Names are matched case-insensitively, with "-" and spaces read as "_".
_FACTORIES: dict[str, Callable[[int, int | None], AbstractHeuristic]] = {
    "bald": lambda query_size, seed: BALD(),
    "batch_bald": lambda query_size, seed: BatchBALD(num_samples=query_size),
    "entropy": lambda query_size, seed: Entropy(),
    "margin": lambda query_size, seed: Margin(),
    "certainty": lambda query_size, seed: Certainty(),
    "variance": lambda query_size, seed: Variance(),
    "random": lambda query_size, seed: Random(seed=seed),
    "power_bald": _power_bald,
    "power_entropy": _power_entropy,
    "variation_ratios": lambda query_size, seed: VariationRatios(),
    "epig": lambda query_size, seed: SampledTargetEPIG(seed=seed),
    "coreset": lambda query_size, seed: _seeded(CoreSet(), seed),
    "badge": lambda query_size, seed: _seeded(BADGE(), seed),
    "typiclust": lambda query_size, seed: _seeded(TypiClust(), seed),
    "bald_coreset": lambda query_size, seed: _seeded(Hybrid(BALD(), CoreSet(), factor=10), seed),
}
_ALIASES = {
    "max_entropy": "entropy",
    "batchbald": "batch_bald",
    "powerbald": "power_bald",
    "core_set": "coreset",
    "hybrid": "bald_coreset",
}

#: The names :func:`resolve_heuristic` accepts (aliases: ``max_entropy``, ``batchbald``, ``powerbald``,
#: ``core_set``, ``hybrid``). ``coreset``, ``badge``, ``typiclust`` and ``bald_coreset`` (BALD's top 10x the query
#: size, then CoreSet) are the diversity strategies of :mod:`alkit.active.diversity`; ``epig`` is
#: :class:`SampledTargetEPIG`.
HEURISTIC_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def resolve_heuristic(
    heuristic: str | AbstractHeuristic, query_size: int = 1, seed: int | None = None
) -> AbstractHeuristic:
    """Return a BaaL heuristic for ``heuristic``, given either as an instance (returned unchanged) or by name.

    Args:
        heuristic: a ``baal.active.heuristics.AbstractHeuristic`` instance or one of :data:`HEURISTIC_NAMES`.
        query_size: samples labelled per round; BatchBALD and the stochastic "power" heuristics are built for it.
        seed: seeds the ``random`` heuristic so that a run is reproducible.

    Raises:
        ValueError: unknown name (the message lists the accepted names).
        TypeError: neither a string nor a BaaL heuristic.
    """
    if isinstance(heuristic, AbstractHeuristic):
        return heuristic
    if isinstance(heuristic, str):
        key = heuristic.strip().lower().replace("-", "_").replace(" ", "_")
        key = _ALIASES.get(key, key)
        if key not in _FACTORIES:
            raise ValueError(
                f"Unknown heuristic `heuristic={heuristic!r}`. Accepted names: {', '.join(HEURISTIC_NAMES)}"
                f" (aliases: {', '.join(_ALIASES)}), or a `baal.active.heuristics.AbstractHeuristic` instance."
            )
        return _FACTORIES[key](query_size, seed)
    raise TypeError(
        "`heuristic` must be a heuristic name (one of "
        f"{', '.join(HEURISTIC_NAMES)}) or a `baal.active.heuristics.AbstractHeuristic` instance,"
        f" got {type(heuristic).__name__}: {heuristic!r}."
    )


def _base_heuristic(heuristic: AbstractHeuristic) -> AbstractHeuristic:
    """The heuristic that produces per-sample uncertainties (the base of a stochastic "power"/"gibbs" heuristic)."""
    # BaaL 2 keeps a stochastic heuristic's base only as `_bh` (no public accessor); read here and nowhere else
    return heuristic._bh if isinstance(heuristic, StochasticHeuristic) else heuristic


def needs_model_outputs(heuristic: AbstractHeuristic) -> bool:
    """False for heuristics that ignore the predictions (``Random``): the scorer then skips the forward passes."""
    return not isinstance(_base_heuristic(heuristic), Random)


def requires_mc_samples(heuristic: AbstractHeuristic) -> bool:
    """Whether ``heuristic`` is meaningless without several *different* MC-dropout samples per input.

    BALD, BatchBALD, PowerBALD, Variance, variation ratios and EPIG measure disagreement between stochastic forward
    passes: on a model without dropout every pass is identical and every score is the same (Flash's identical
    passes made BALD exactly 0 and acquisition a tie-break), so the scorer refuses such a model. Entropy, Margin
    and Certainty read the mean prediction and work with a single deterministic pass; Random reads nothing. A
    heuristic alkit does not know may declare itself with a ``requires_mc_samples`` attribute; otherwise it is
    assumed to need MC samples (the safe side).
    """
    declared = getattr(heuristic, "requires_mc_samples", None)
    if isinstance(declared, bool):
        return declared
    base = _base_heuristic(heuristic)
    if isinstance(base, (Entropy, Margin, Certainty, Precomputed)):  # Random is a Precomputed
        return False
    return True


def scores_independently(heuristic: AbstractHeuristic) -> bool:
    """Whether the score of a sample depends only on that sample's own predictions.

    Such heuristics are scored batch by batch and only the scores are kept, so memory does not grow with the number
    of MC iterations. BatchBALD (joint over the pool), EPIG (needs target predictions), CombineHeuristics and
    heuristics alkit does not know are scored on the whole ``[N, C, ..., I]`` array instead; a custom heuristic may
    opt in to streaming with a ``scores_independently = True`` attribute.
    """
    declared = getattr(heuristic, "scores_independently", None)
    if isinstance(declared, bool):
        return declared
    base = _base_heuristic(heuristic)
    if isinstance(base, (BatchBALD, EPIG, CombineHeuristics)):
        return False
    return isinstance(base, (BALD, Entropy, Margin, Certainty, Variance, VariationRatios, Precomputed))


class PicklableHeuristic:
    """A BaaL heuristic in a form ``pickle`` accepts (for ``ddp_spawn`` and multiprocessing).

    BaaL heuristics keep their reduction as a lambda from ``available_reductions`` (and ``Random()`` without a seed
    keeps the ``numpy.random`` module), which cannot be pickled. This stores the reduction by name and rebuilds
    the heuristic with :meth:`restore`; nested heuristics (the base of PowerBALD) are handled too.
    """

    def __init__(self, heuristic: AbstractHeuristic) -> None:
        self.cls = type(heuristic)
        self.state: dict = {}
        for key, value in vars(heuristic).items():
            if key == "reduction" and getattr(heuristic, "_reduction_name", None) in available_reductions:
                continue
            if isinstance(value, AbstractHeuristic):
                value = PicklableHeuristic(value)
            elif value is np.random:
                value = "<numpy.random>"
            self.state[key] = value

    def restore(self) -> AbstractHeuristic:
        heuristic = self.cls.__new__(self.cls)
        for key, value in self.state.items():
            if isinstance(value, PicklableHeuristic):
                value = value.restore()
            elif isinstance(value, str) and value == "<numpy.random>":
                value = np.random
            setattr(heuristic, key, value)
        name = self.state.get("_reduction_name")
        if "reduction" not in self.state and name in available_reductions:
            heuristic.reduction = available_reductions[name]
        return heuristic
