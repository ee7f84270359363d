"""Uncertainty-based active learning on BaaL: which samples to label next, and the bookkeeping around it.

* :class:`ActiveLearningLoop` - the loop standing in for the FitLoop: fit, evaluate, score the pool, label; repeat.
* :class:`ActiveLearningDataModule` - labelled / validation / pool split of a datamodule's training set.
* :func:`score_pool` / :func:`select_query` - MC-dropout scoring of the pool with a BaaL heuristic.
* :func:`resolve_heuristic`, :class:`VariationRatios` - heuristics by name, and the one BaaL lacks.
* :class:`ActiveLearningHistory`, :func:`plot_label_efficiency` - per-round records and label-efficiency curves.
"""

from alkit.active.datamodule import ActiveLearningDataModule
from alkit.active.heuristics import HEURISTIC_NAMES, VariationRatios, resolve_heuristic
from alkit.active.history import ActiveLearningHistory, RoundRecord, plot_label_efficiency
from alkit.active.loop import ActiveLearningLoop
from alkit.active.oracle import Oracle, reveal_labels
from alkit.active.scoring import PoolScores, mc_dropout, score_pool, select_query

__all__ = [
    "HEURISTIC_NAMES",
    "ActiveLearningDataModule",
    "ActiveLearningHistory",
    "ActiveLearningLoop",
    "Oracle",
    "PoolScores",
    "RoundRecord",
    "VariationRatios",
    "mc_dropout",
    "plot_label_efficiency",
    "resolve_heuristic",
    "reveal_labels",
    "score_pool",
    "select_query",
]
