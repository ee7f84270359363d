"""Choosing what to label: a strategy's pick from one round's pool scores, and the TypiClust cold start.

Selection is kept apart from the bookkeeping (:class:`~alkit.active.labelled_set.LabelledSet`) and from serving
data (:class:`~alkit.active.ActiveLearningDataModule`): the loop scores the pool once, selects once here, then
labels the chosen dataset indices. Positions returned here are positions in the scored pool; the caller maps them
to dataset indices through the pool's index array, in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from baal.active.heuristics import AbstractHeuristic
from torch.utils.data import DataLoader, Dataset, Subset

from alkit.active.diversity import DiversityStrategy, Selection, typiclust_select
from alkit.active.scoring import select_query

__all__ = ["select_from_pool", "typical_samples"]


def select_from_pool(
    strategy: AbstractHeuristic | DiversityStrategy,
    scores: Any,
    pool_size: int,
    count: int,
    embeddings: np.ndarray | None = None,
    labelled_embeddings: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    num_labelled: int = 0,
) -> Selection:
    """The ``count`` pool positions ``strategy`` picks, in its order, with its score of every pool sample.

    ``scores[k]`` is the heuristic's score of the ``k``-th of ``pool_size`` scored samples. An uncertainty heuristic
    ranks them (:func:`alkit.active.scoring.select_query`, ``rng`` for stochastic ones); a diversity strategy selects
    from ``embeddings`` (one row per pool sample) and, when it starts from the labelled set, the
    ``labelled_embeddings`` of the ``num_labelled`` labelled samples (and BADGE's mean ``probabilities``).
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"`query_size` must be an integer >= 0, got {count!r}.")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if count == 0:
        return Selection(np.zeros(0, dtype=np.int64), scores)
    if scores.shape[0] != pool_size:
        raise ValueError(
            f"Got {scores.shape[0]} scores for a pool of {pool_size} samples this round; score exactly the "
            "samples of `pool_dataloader()` (in its order) and pass all their scores."
        )
    if not isinstance(strategy, DiversityStrategy):
        return Selection(select_query(scores, int(count), strategy, rng=rng), scores)
    name = type(strategy).__name__
    if embeddings is None or np.shape(embeddings)[0] != pool_size:
        raise ValueError(
            f"{name} selects from embeddings: pass `embeddings` with one row per pool sample ({pool_size}), "
            "e.g. `score_pool(model, datamodule.pool_dataloader(), datamodule.heuristic).embeddings`."
        )
    if labelled_embeddings is None:
        if strategy.needs_labelled_embeddings and num_labelled:
            raise ValueError(
                f"{name} needs `labelled_embeddings` of the {num_labelled} labelled samples, e.g. "
                "`compute_embeddings(model, datamodule.labelled_inference_dataloader())`."
            )
        labelled_embeddings = np.zeros((0, np.shape(embeddings)[1]))
    return strategy.select(min(int(count), pool_size), embeddings, labelled_embeddings, scores, probabilities)


def typical_samples(
    dataset: Dataset,
    labelled: np.ndarray,
    candidates: np.ndarray,
    count: int,
    model: Any,
    make_loader: Callable[[Dataset], DataLoader],
    seed: int,
) -> np.ndarray:
    """TypiClust's cold start: dataset indices of the most typical of ``candidates`` in the largest of ``count`` +
    ``len(labelled)`` k-means clusters holding no labelled sample.

    Clustered on ``model``'s embeddings of ``dataset`` (evaluation transforms) or, with no model, on the flattened
    inputs: with labels very few, typical samples beat a random draw (Hacohen et al. 2022).
    """
    loader = make_loader(Subset(dataset, np.concatenate([labelled, candidates]).tolist()))
    if model is not None:
        from alkit.active.embeddings import compute_embeddings

        embeddings = compute_embeddings(model, loader)
    else:
        from alkit.active.scoring import _batch_input

        inputs = (np.asarray(_batch_input(batch), dtype=np.float32) for batch in loader)
        embeddings = np.concatenate([array.reshape(array.shape[0], -1) for array in inputs])
    chosen = typiclust_select(embeddings[labelled.size :], embeddings[: labelled.size], count, seed).positions
    return candidates[chosen]
