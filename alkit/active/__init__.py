"""Active learning on BaaL, by uncertainty or diversity: which samples to label next, and the bookkeeping around it.

* :class:`ActiveLearningLoop` - the loop standing in for the FitLoop: fit, evaluate, score the pool, label; repeat.
* :class:`ActiveLearningDataModule` - labelled / validation / pool split of a datamodule's training set.
* :class:`LabelledSet` - which samples are labelled, when, and which validate, in dataset indices (its state).
* :func:`select_from_pool` - a strategy's pick from one round's pool scores (the loop selects once, then labels).
* :func:`score_pool` / :func:`select_query` - MC-dropout scoring of the pool with a BaaL heuristic.
* :func:`resolve_heuristic`, :class:`VariationRatios` - heuristics by name, and the one BaaL lacks.
* :class:`CoreSet`, :class:`BADGE`, :class:`TypiClust`, :class:`Hybrid` - diversity-aware strategies on embeddings
  (:func:`compute_embeddings`); :class:`SampledTargetEPIG` - EPIG with targets drawn from the pool.
* :class:`ActiveLearningHistory`, :func:`plot_label_efficiency` - per-round records and label-efficiency curves.
* :func:`compare_strategies` - several strategies over seeds from equal starts, with intervals and paired tests.
"""

from alkit.active.comparison import StrategyComparison, compare_strategies
from alkit.active.datamodule import INITIAL_STRATEGIES, ActiveLearningDataModule
from alkit.active.diversity import BADGE, CoreSet, DiversityStrategy, Hybrid, Selection, TypiClust
from alkit.active.embeddings import EmbeddingProtocolError, compute_embeddings
from alkit.active.heuristics import HEURISTIC_NAMES, SampledTargetEPIG, VariationRatios, resolve_heuristic
from alkit.active.history import ActiveLearningHistory, RoundRecord, RoundScores, plot_label_efficiency
from alkit.active.labelled_set import LabelledSet
from alkit.active.loop import ActiveLearningLoop
from alkit.active.oracle import Oracle, reveal_labels
from alkit.active.scoring import PoolScores, mc_dropout, score_pool, select_query
from alkit.active.selection import select_from_pool

__all__ = [
    "BADGE",
    "HEURISTIC_NAMES",
    "INITIAL_STRATEGIES",
    "ActiveLearningDataModule",
    "ActiveLearningHistory",
    "ActiveLearningLoop",
    "CoreSet",
    "DiversityStrategy",
    "EmbeddingProtocolError",
    "Hybrid",
    "LabelledSet",
    "Oracle",
    "PoolScores",
    "RoundRecord",
    "RoundScores",
    "SampledTargetEPIG",
    "Selection",
    "StrategyComparison",
    "TypiClust",
    "VariationRatios",
    "compare_strategies",
    "compute_embeddings",
    "mc_dropout",
    "plot_label_efficiency",
    "resolve_heuristic",
    "reveal_labels",
    "score_pool",
    "select_from_pool",
    "select_query",
]
