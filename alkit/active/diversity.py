"""Diversity-aware acquisition: CoreSet, BADGE, TypiClust, and an uncertainty pre-filter followed by CoreSet.

Uncertainty heuristics rank samples one by one, so a batch fills up with near-duplicates of the most uncertain
sample. The strategies here choose a *set*, from embeddings of the samples (see :mod:`alkit.active.embeddings`):

* :class:`CoreSet` (Sener & Savarese 2018): k-center greedy, the labelled samples being the initial centres; each
  pick is the pool sample farthest from every centre so far.
* :class:`BADGE` (Ash et al. 2020): k-means++ seeding on the gradient embedding of the last linear layer at the
  predicted label, ``g = (p - onehot(argmax p)) (x) h``, in factorised form (below), so memory is ``O(N (C + d))``.
* :class:`TypiClust` (Hacohen et al. 2022): k-means into ``|L| + B`` clusters, then the most *typical* sample of
  each of the largest clusters without a label; the strategy of the low-budget regime and of the cold start.
* :class:`Hybrid`: the ``factor * B`` most uncertain samples under a BaaL heuristic, then a diversity selection
  among them only.

They are BaaL ``AbstractHeuristic`` subclasses so that everything built for heuristics (names, the datamodule,
checkpoints, pickling) takes them as they are; what makes them different is :meth:`DiversityStrategy.select`,
which the datamodule calls with the embeddings instead of ranking per-sample scores.

BADGE's factorised distance. With ``a = p - onehot(y_hat)`` (``C`` values) and ``h`` the last layer's input (``d``
values), ``g = a (x) h`` has ``C d`` values, but ``g_i . g_j = (a_i . a_j)(h_i . h_j)``, so::

    ||g_i - g_j||^2 = ||a_i||^2 ||h_i||^2 + ||a_j||^2 ||h_j||^2 - 2 (a_i . a_j)(h_i . h_j)

and one k-means++ step (distances of all ``N`` samples to the new centre) costs two matrix-vector products, never
an ``N x C d`` matrix (which is what made BADGE need 25 GB elsewhere).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from baal.active.heuristics import AbstractHeuristic, Entropy
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import pairwise_distances_argmin_min
from sklearn.neighbors import NearestNeighbors

__all__ = [
    "BADGE",
    "CoreSet",
    "DiversityStrategy",
    "Hybrid",
    "Selection",
    "TypiClust",
    "badge_distances",
    "gradient_embedding_factors",
    "k_center_greedy",
    "typiclust_select",
]


class Selection(NamedTuple):
    """What a strategy chose: ``positions`` (into the pool arrays) in the order picked, and a score per pool sample.

    ``scores`` is what the strategy measured of each pool sample (CoreSet: distance to the nearest labelled sample;
    BADGE: norm of the gradient embedding; TypiClust: typicality; Hybrid: the pre-filter's uncertainty); it is what
    the per-round files store next to the selection order.
    """

    positions: np.ndarray
    scores: np.ndarray


def _as_matrix(name: str, value: Any, keep_float32: bool = False) -> np.ndarray:
    """A 2-D float64 array; with ``keep_float32``, float32 input stays float32 (no copy of twice its size)."""
    array = np.asarray(value)
    array = array if keep_float32 and array.dtype == np.float32 else array.astype(np.float64, copy=False)
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D array [n_samples, n_features], got shape {array.shape}.")
    return array


def _check_count(count: Any, available: int) -> int:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"`query_size` must be an integer >= 0, got {count!r}.")
    return min(int(count), available)


# ------------------------------------------------------------------------------------------------------------------
# the maths, as plain functions
# ------------------------------------------------------------------------------------------------------------------
def k_center_greedy(
    pool: np.ndarray, centres: np.ndarray, count: int, rng: np.random.Generator | None = None
) -> Selection:
    """Greedy k-center: ``count`` pool positions, each the farthest (Euclidean) from the centres chosen so far.

    The centres start as ``centres`` (the labelled samples' embeddings); with none, the first pick is drawn with
    ``rng``. Memory is ``O(N)`` beyond the inputs: the squared distance of each pool sample to its nearest centre is
    kept and lowered after each pick, from ``||x||^2 + ||c||^2 - 2 x.c`` (one matrix-vector product, no ``N x d``
    temporary). That product reads the whole pool once per pick and is the cost of the loop, so float32 embeddings
    (what :func:`alkit.active.embeddings.compute_embeddings` returns) are used as they are, not copied to float64:
    half the memory traffic; the norms and the distances are accumulated in float64. ``scores`` are the distances
    before any pick.
    """
    pool = _as_matrix("pool", pool, keep_float32=True)
    centres = _as_matrix("centres", centres) if np.size(centres) else np.zeros((0, pool.shape[1]))
    count = _check_count(count, pool.shape[0])
    if centres.shape[0]:
        if centres.shape[1] != pool.shape[1]:
            raise ValueError(f"`centres` have {centres.shape[1]} features but the pool has {pool.shape[1]}.")
        _, nearest = pairwise_distances_argmin_min(pool, centres.astype(pool.dtype, copy=False))
        scores = nearest.astype(np.float64)
        nearest = scores**2
    else:
        scores = nearest = np.full(pool.shape[0], np.inf)
    squared = _squared_norms(pool)
    picks: list[int] = []
    for _ in range(count):
        if np.isinf(nearest).all():  # no centre yet
            pick = int((rng or np.random.default_rng()).integers(pool.shape[0]))
        else:
            pick = int(np.argmax(nearest))
        picks.append(pick)
        to_pick = np.maximum(squared + squared[pick] - 2.0 * (pool @ pool[pick]), 0.0)
        nearest = np.minimum(nearest, to_pick)
        nearest[picks] = -1.0  # never picked twice, even among exact duplicates
    if np.isinf(scores).all() and picks:  # no labelled sample: distance to the first pick instead
        scores = np.linalg.norm(pool - pool[picks[0]], axis=1).astype(np.float64)
    return Selection(np.asarray(picks, dtype=np.int64), scores)


def gradient_embedding_factors(probabilities: np.ndarray, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two factors of BADGE's gradient embedding ``g = a (x) h``: ``a = p - onehot(argmax p)`` and ``h``.

    ``a`` is the gradient of the cross-entropy with respect to the logits when the label is the predicted class;
    ``h`` is the input of the last linear layer, so ``a (x) h`` is the gradient with respect to its weights.
    Float32 embeddings are returned as they are (see :func:`k_center_greedy` for why).
    """
    probabilities = _as_matrix("probabilities", probabilities)
    embeddings = _as_matrix("embeddings", embeddings, keep_float32=True)
    if probabilities.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"{probabilities.shape[0]} probability rows but {embeddings.shape[0]} embeddings: one of each per sample."
        )
    factors = probabilities.copy()
    factors[np.arange(factors.shape[0]), probabilities.argmax(axis=1)] -= 1.0
    return factors, embeddings


def _squared_norms(rows: np.ndarray) -> np.ndarray:
    """Row norms squared, accumulated in float64 whatever the rows' precision (float32 rows: by blocks of rows,
    so the float64 copy is one block, not the matrix)."""
    if rows.dtype == np.float64:
        return np.einsum("ij,ij->i", rows, rows)
    norms = np.empty(rows.shape[0])
    for start in range(0, rows.shape[0], 4096):
        block = rows[start : start + 4096].astype(np.float64)
        norms[start : start + 4096] = np.einsum("ij,ij->i", block, block)
    return norms


def badge_distances(
    factors: np.ndarray, embeddings: np.ndarray, centre: int, squared_norms: np.ndarray | None = None
) -> np.ndarray:
    """Squared distances ``||g_i - g_centre||^2`` of every sample to one, without forming any ``g`` (module doc)."""
    if squared_norms is None:
        squared_norms = np.einsum("ij,ij->i", factors, factors) * _squared_norms(embeddings)
    # (einsum: faster than BLAS's matrix-vector product for the C-column factors)
    cross = np.einsum("ij,j->i", factors, factors[centre]) * (embeddings @ embeddings[centre])
    return np.maximum(squared_norms + squared_norms[centre] - 2.0 * cross, 0.0)


def _badge_select(probabilities: np.ndarray, embeddings: np.ndarray, count: int, rng: np.random.Generator) -> Selection:
    """k-means++ seeding on gradient embeddings (Ash et al.'s ``init_centers``): largest norm first, then D^2."""
    factors, embeddings = gradient_embedding_factors(probabilities, embeddings)
    count = _check_count(count, factors.shape[0])
    squared_norms = np.einsum("ij,ij->i", factors, factors) * _squared_norms(embeddings)
    if count == 0:
        return Selection(np.zeros(0, dtype=np.int64), np.sqrt(squared_norms))
    picks = [int(np.argmax(squared_norms))]
    nearest = badge_distances(factors, embeddings, picks[0], squared_norms)
    while len(picks) < count:
        weights = nearest.copy()
        weights[picks] = 0.0
        total = weights.sum()
        if not np.isfinite(total) or total <= 0.0:  # every sample sits on a centre: take unpicked ones in order
            pick = int(np.flatnonzero(np.isin(np.arange(weights.size), picks, invert=True))[0])
        else:
            pick = int(rng.choice(weights.size, p=weights / total))
        picks.append(pick)
        nearest = np.minimum(nearest, badge_distances(factors, embeddings, pick, squared_norms))
    return Selection(np.asarray(picks, dtype=np.int64), np.sqrt(squared_norms))


def _kmeans(embeddings: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """Cluster labels; scikit-learn's KMeans, or MiniBatchKMeans for many clusters (as Hacohen et al. do)."""
    if clusters <= 50:
        model: Any = KMeans(n_clusters=clusters, n_init=10, random_state=seed)
    else:
        model = MiniBatchKMeans(n_clusters=clusters, n_init=3, batch_size=max(1024, 3 * clusters), random_state=seed)
    return model.fit_predict(embeddings)


def _typicality(embeddings: np.ndarray, neighbours: int) -> np.ndarray:
    """``1 / mean distance to the k nearest neighbours`` (the sample itself excluded); higher = more typical."""
    if embeddings.shape[0] < 2:
        return np.ones(embeddings.shape[0])
    k = min(neighbours, embeddings.shape[0] - 1)
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(embeddings).kneighbors(embeddings)
    return 1.0 / (distances[:, 1:].mean(axis=1) + 1e-12)


def typiclust_select(
    pool: np.ndarray, labelled: np.ndarray, count: int, seed: int = 0, neighbours: int = 20
) -> Selection:
    """TypiClust: k-means into ``|L| + count`` clusters, then the most typical pool sample of the largest clusters
    that hold no labelled sample (then the least-labelled ones), one sample per cluster.

    Typicality is computed within each cluster (Hacohen et al. 2022, section 3), on the labelled and pool samples.
    """
    pool = _as_matrix("pool", pool)
    labelled = _as_matrix("labelled", labelled) if np.size(labelled) else np.zeros((0, pool.shape[1]))
    count = _check_count(count, pool.shape[0])
    everything = np.concatenate([labelled, pool]) if labelled.shape[0] else pool
    num_labelled = labelled.shape[0]
    clusters = min(num_labelled + count, everything.shape[0])
    scores = np.zeros(pool.shape[0])
    if count == 0:
        return Selection(np.zeros(0, dtype=np.int64), scores)
    assignment = _kmeans(everything, clusters, seed)
    typicality = np.zeros(everything.shape[0])
    for cluster in range(clusters):
        members = np.flatnonzero(assignment == cluster)
        typicality[members] = _typicality(everything[members], neighbours)
    scores = typicality[num_labelled:]
    sizes = np.bincount(assignment, minlength=clusters)
    labels_in = np.bincount(assignment[:num_labelled], minlength=clusters)
    available = np.ones(pool.shape[0], dtype=bool)
    pool_assignment = assignment[num_labelled:]
    picks: list[int] = []
    while len(picks) < count:
        has_pool = np.bincount(pool_assignment[available], minlength=clusters) > 0
        candidates = np.flatnonzero(has_pool)
        # fewest labels first, then largest; ties by cluster number so that the order is reproducible
        cluster = candidates[np.lexsort((candidates, -sizes[candidates], labels_in[candidates]))[0]]
        members = np.flatnonzero((pool_assignment == cluster) & available)
        pick = int(members[np.argmax(scores[members])])
        picks.append(pick)
        available[pick] = False
        labels_in[cluster] += 1
    return Selection(np.asarray(picks, dtype=np.int64), scores)


# ------------------------------------------------------------------------------------------------------------------
# the strategies, as heuristics
# ------------------------------------------------------------------------------------------------------------------
class DiversityStrategy(AbstractHeuristic):
    """A strategy that selects a set from embeddings; usable wherever alkit takes a heuristic.

    The scorer computes, in one pass over the pool, the uncertainty of :attr:`prefilter` (the pool's reported
    uncertainty, e.g. for stopping criteria; predictive entropy for the pure diversity strategies), the mean
    predicted probabilities and the embeddings; :meth:`select` then chooses.
    """

    #: The strategy reads embeddings of the pool (and of the labelled samples when ``needs_labelled_embeddings``).
    needs_embeddings = True
    needs_labelled_embeddings = True
    #: Predictions of one deterministic pass are enough unless the pre-filter needs MC samples (set per instance).
    requires_mc_samples = False
    scores_independently = True

    def __init__(self, prefilter: AbstractHeuristic | None = None) -> None:
        super().__init__(reverse=True)
        self.prefilter = prefilter
        self.rng = np.random.RandomState(None)

    @property
    def uncertainty(self) -> AbstractHeuristic:
        """The BaaL heuristic whose per-sample scores the scorer computes for this strategy."""
        return self.prefilter if self.prefilter is not None else Entropy()

    def compute_score(self, predictions: np.ndarray, target_predictions: np.ndarray | None = None) -> np.ndarray:
        return self.uncertainty.get_uncertainties(predictions, target_predictions=target_predictions)

    def seed(self, seed: int | None) -> DiversityStrategy:
        """Seed the strategy's random choices (the datamodule passes its ``seed``); returns ``self``."""
        self.rng = np.random.RandomState(seed)
        return self

    def _generator(self) -> np.random.Generator:
        """A generator drawn from :attr:`rng`, whose state the datamodule checkpoints: a resume repeats the draws."""
        return np.random.default_rng(self.rng.randint(0, 2**31 - 1))

    def select(
        self,
        query_size: int,
        pool_embeddings: np.ndarray,
        labelled_embeddings: np.ndarray,
        scores: np.ndarray,
        probabilities: np.ndarray | None = None,
    ) -> Selection:
        """Choose ``query_size`` pool positions.

        Args:
            query_size: how many to choose (at most the pool size).
            pool_embeddings: ``[N, d]`` embeddings of the pool, in pool order.
            labelled_embeddings: ``[L, d]`` embeddings of the labelled samples (may be empty).
            scores: ``[N]`` uncertainty of :attr:`uncertainty` per pool sample.
            probabilities: ``[N, C]`` mean predicted probabilities (BADGE needs them).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CoreSet(DiversityStrategy):
    """k-center greedy on embeddings (Sener & Savarese 2018), the labelled samples as the initial centres."""

    def select(self, query_size, pool_embeddings, labelled_embeddings, scores, probabilities=None) -> Selection:
        return k_center_greedy(pool_embeddings, labelled_embeddings, query_size, self._generator())


class BADGE(DiversityStrategy):
    """k-means++ seeding on last-layer gradient embeddings at the predicted label (Ash et al. 2020), factorised."""

    needs_labelled_embeddings = False

    def select(self, query_size, pool_embeddings, labelled_embeddings, scores, probabilities=None) -> Selection:
        if probabilities is None:
            raise ValueError("BADGE needs the predicted probabilities of the pool (`probabilities=`).")
        return _badge_select(probabilities, pool_embeddings, query_size, self._generator())


class TypiClust(DiversityStrategy):
    """The most typical sample of the largest clusters without labels (Hacohen et al. 2022).

    Args:
        neighbours: ``k`` of the typicality (inverse mean distance to the ``k`` nearest neighbours); 20 in the paper.
    """

    def __init__(self, neighbours: int = 20) -> None:
        if isinstance(neighbours, bool) or not isinstance(neighbours, (int, np.integer)) or neighbours < 1:
            raise ValueError(f"`neighbours` must be an integer >= 1, got {neighbours!r}.")
        super().__init__()
        self.neighbours = int(neighbours)

    def select(self, query_size, pool_embeddings, labelled_embeddings, scores, probabilities=None) -> Selection:
        seed = int(self.rng.randint(0, 2**31 - 1))
        return typiclust_select(pool_embeddings, labelled_embeddings, query_size, seed, self.neighbours)


class Hybrid(DiversityStrategy):
    """The ``factor * query_size`` most uncertain pool samples under ``prefilter``, then ``diversity`` among them.

    Args:
        prefilter: a BaaL heuristic ranking by uncertainty (default BALD).
        diversity: the diversity strategy applied to the pre-filtered samples (default CoreSet).
        factor: the pre-filter keeps ``factor`` times the query size (10 by default).
    """

    def __init__(
        self,
        prefilter: AbstractHeuristic | None = None,
        diversity: DiversityStrategy | None = None,
        factor: int = 10,
    ) -> None:
        from baal.active.heuristics import BALD

        if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
            raise ValueError(f"`factor` must be an integer >= 1, got {factor!r}.")
        prefilter = prefilter if prefilter is not None else BALD()
        if isinstance(prefilter, DiversityStrategy) or not isinstance(prefilter, AbstractHeuristic):
            raise TypeError(f"`prefilter` must be a BaaL uncertainty heuristic (e.g. BALD()), got {prefilter!r}.")
        diversity = diversity if diversity is not None else CoreSet()
        if not isinstance(diversity, DiversityStrategy) or isinstance(diversity, Hybrid):
            raise TypeError(f"`diversity` must be CoreSet(), BADGE() or TypiClust(), got {diversity!r}.")
        super().__init__(prefilter)
        self.diversity = diversity
        self.diversity.rng = self.rng  # one random state, the one the datamodule checkpoints
        self.factor = int(factor)
        from alkit.active.heuristics import requires_mc_samples, scores_independently

        self.requires_mc_samples = requires_mc_samples(prefilter)
        self.scores_independently = scores_independently(prefilter)
        self.needs_labelled_embeddings = diversity.needs_labelled_embeddings

    def seed(self, seed: int | None) -> Hybrid:
        super().seed(seed)
        self.diversity.rng = self.rng
        return self

    def select(self, query_size, pool_embeddings, labelled_embeddings, scores, probabilities=None) -> Selection:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        self.diversity.rng = self.rng  # (again: an unpickled strategy has two copies)
        keep = min(scores.shape[0], self.factor * int(query_size))
        from alkit.active.scoring import select_query  # the pre-filter's own order (BatchBALD's greedy one, ...)

        candidates = select_query(scores, keep, self.prefilter, rng=self._generator()) if keep else scores[:0]
        candidates = np.asarray(candidates, dtype=np.int64)
        inner = self.diversity.select(
            query_size,
            np.asarray(pool_embeddings)[candidates],
            labelled_embeddings,
            scores[candidates],
            None if probabilities is None else np.asarray(probabilities)[candidates],
        )
        return Selection(candidates[inner.positions], scores)

    def __repr__(self) -> str:
        return f"Hybrid({type(self.prefilter).__name__}, {type(self.diversity).__name__}, factor={self.factor})"
