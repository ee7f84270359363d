"""Diversity strategies: each one's defining property on small data where the answer is known."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from baal.active.heuristics import BALD

from alkit.active import BADGE, CoreSet, Hybrid, TypiClust, resolve_heuristic
from alkit.active.diversity import (
    _badge_select,
    badge_distances,
    gradient_embedding_factors,
    k_center_greedy,
    typiclust_select,
)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def grid_blobs(centres: list[tuple[float, float]], spacing: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """A 5 x 5 grid around each centre; returns the points and the position of each grid's middle point."""
    offsets = np.array([(i, j) for i in range(-2, 3) for j in range(-2, 3)], dtype=np.float64) * spacing
    points = np.concatenate([np.asarray(c) + offsets for c in centres])
    middles = np.array([k * len(offsets) + 12 for k in range(len(centres))])  # (0, 0) is the 13th offset
    return points, middles


# ---- CoreSet -----------------------------------------------------------------------------------------------------
def test_coreset_picks_the_farthest_point_from_the_labelled_set_then_from_its_own_picks():
    pool = np.array([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0], [-0.5, 0.0]])
    labelled = np.zeros((1, 2))
    selection = CoreSet().select(2, pool, labelled, np.zeros(4))
    assert selection.positions.tolist() == [2, 1]  # (5, 5) is farthest from the origin; then (0, 2) from both
    np.testing.assert_allclose(selection.scores, np.linalg.norm(pool, axis=1))


def test_coreset_each_pick_maximises_the_distance_to_every_centre_so_far():
    rng = np.random.default_rng(0)
    pool, labelled = rng.normal(size=(200, 8)), rng.normal(size=(5, 8))
    picks = k_center_greedy(pool, labelled, 15).positions
    centres = labelled
    for pick in picks:
        nearest = np.linalg.norm(pool[:, None] - centres[None], axis=2).min(axis=1)
        assert nearest[pick] == pytest.approx(nearest.max())
        centres = np.concatenate([centres, pool[pick : pick + 1]])
    assert len(set(picks.tolist())) == 15


def test_coreset_never_picks_a_duplicate_of_a_labelled_sample_while_others_remain():
    pool = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    picks = CoreSet().select(3, pool, np.zeros((1, 2)), np.zeros(4)).positions.tolist()
    assert set(picks[:2]) == {2, 3}


# ---- BADGE -------------------------------------------------------------------------------------------------------
def test_badge_factorised_distances_equal_the_explicit_gradient_embedding_distances():
    rng = np.random.default_rng(1)
    probabilities, embeddings = softmax(rng.normal(size=(30, 4)) * 2), rng.normal(size=(30, 6))
    factors, h = gradient_embedding_factors(probabilities, embeddings)
    onehot = np.eye(4)[probabilities.argmax(axis=1)]
    explicit = ((probabilities - onehot)[:, :, None] * embeddings[:, None, :]).reshape(30, 24)  # g = a (x) h
    for centre in (0, 7, 29):
        expected = ((explicit - explicit[centre]) ** 2).sum(axis=1)
        np.testing.assert_allclose(badge_distances(factors, h, centre), expected, rtol=1e-9, atol=1e-12)


def test_badge_starts_at_the_largest_gradient_and_never_picks_a_sample_at_zero_distance_from_a_centre():
    rng = np.random.default_rng(2)
    probabilities, embeddings = softmax(rng.normal(size=(50, 3))), rng.normal(size=(50, 5))
    embeddings[10] *= 20.0  # by far the largest gradient embedding
    embeddings[11], probabilities[11] = embeddings[10], probabilities[10]  # an exact duplicate of it
    selection = BADGE().seed(0).select(12, embeddings, np.zeros((0, 5)), np.zeros(50), probabilities)
    picks = selection.positions.tolist()
    assert picks[0] == 10 and 11 not in picks and len(set(picks)) == 12
    factors, h = gradient_embedding_factors(probabilities, embeddings)
    np.testing.assert_allclose(selection.scores, np.linalg.norm(factors, axis=1) * np.linalg.norm(h, axis=1))


def test_badge_memory_grows_with_n_times_c_plus_d_not_n_times_c_times_d():
    n, c, d = 20_000, 10, 64
    rng = np.random.default_rng(3)
    probabilities, embeddings = softmax(rng.normal(size=(n, c))), rng.normal(size=(n, d))
    explicit_bytes = n * c * d * 8
    tracemalloc.start()
    try:
        _badge_select(probabilities, embeddings, 20, np.random.default_rng(0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < explicit_bytes / 4, (peak, explicit_bytes)


@pytest.mark.parametrize("strategy", ["coreset", "badge"])
def test_float32_embeddings_are_not_copied_to_float64_and_select_as_float64_ones_do(strategy):
    """float32 embeddings (what compute_embeddings returns) are read as they are: no float64 copy of the pool,
    and each pick is the farthest sample up to float32 rounding (relative 1e-4, far above it)."""
    n, d = 20_000, 64
    rng = np.random.default_rng(4)
    pool, labelled = rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(5, d)).astype(np.float32)
    probabilities = softmax(rng.normal(size=(n, 10)))
    tracemalloc.start()
    try:
        if strategy == "coreset":
            picks = k_center_greedy(pool, labelled, 5).positions
        else:
            picks = _badge_select(probabilities, pool, 5, np.random.default_rng(0)).positions
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * pool.nbytes, (peak, pool.nbytes)  # what a float64 copy of the pool alone would take
    exact = pool.astype(np.float64)
    if strategy == "coreset":
        centres = labelled.astype(np.float64)
        for pick in picks:
            nearest = np.sqrt(((exact[:, None] - centres[None]) ** 2).sum(axis=2)).min(axis=1)
            assert nearest[pick] >= nearest.max() * (1 - 1e-4)
            centres = np.concatenate([centres, exact[pick : pick + 1]])
    else:
        factors, _ = gradient_embedding_factors(probabilities, exact)
        norms = np.einsum("ij,ij->i", factors, factors) * np.einsum("ij,ij->i", exact, exact)
        assert norms[picks[0]] >= norms.max() * (1 - 1e-4)


# ---- TypiClust ---------------------------------------------------------------------------------------------------
def test_typiclust_picks_the_centre_of_each_cluster():
    points, middles = grid_blobs([(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)])
    selection = TypiClust().seed(0).select(3, points, np.zeros((0, 2)), np.zeros(len(points)))
    assert sorted(selection.positions.tolist()) == sorted(middles.tolist())


def test_typiclust_skips_clusters_that_already_hold_a_label():
    points, middles = grid_blobs([(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)])
    labelled = points[middles[:1]]  # the first cluster is covered
    pool = np.delete(points, middles[0], axis=0)
    picks = typiclust_select(pool, labelled, 2, seed=0).positions
    chosen = {tuple(np.round(p, 6)) for p in pool[picks]}
    assert chosen == {(10.0, 0.0), (0.0, 10.0)}


# ---- Hybrid ------------------------------------------------------------------------------------------------------
def test_hybrid_never_picks_outside_the_uncertainty_prefilter():
    rng = np.random.default_rng(4)
    embeddings, scores = rng.normal(size=(300, 4)), rng.random(300)
    embeddings[np.argsort(scores)[:50]] *= 100.0  # the least uncertain are the farthest: CoreSet alone takes them
    hybrid = Hybrid(BALD(), CoreSet(), factor=3).seed(0)
    picks = hybrid.select(5, embeddings, np.zeros((1, 4)), scores).positions
    allowed = set(np.argsort(-scores)[:15].tolist())
    assert len(picks) == 5 and set(picks.tolist()) <= allowed
    alone = CoreSet().select(5, embeddings, np.zeros((1, 4)), scores).positions
    assert not set(alone.tolist()) <= allowed  # the property is the pre-filter's, not the data's


# ---- names -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "cls"),
    [("coreset", CoreSet), ("Core-Set", CoreSet), ("badge", BADGE), ("typiclust", TypiClust), ("hybrid", Hybrid)],
)
def test_strategies_resolve_by_name(name, cls):
    assert isinstance(resolve_heuristic(name, query_size=4, seed=0), cls)


def test_an_unknown_strategy_name_lists_the_accepted_ones():
    with pytest.raises(ValueError, match="kcenter") as error:
        resolve_heuristic("kcenter")
    for name in ("coreset", "badge", "typiclust", "bald_coreset", "epig", "bald"):
        assert name in str(error.value)


def test_bad_strategy_arguments_are_refused_with_the_value():
    with pytest.raises(ValueError, match="factor.*0"):
        Hybrid(factor=0)
    with pytest.raises(TypeError, match="prefilter"):
        Hybrid(prefilter=CoreSet())
    with pytest.raises(ValueError, match="neighbours.*-1"):
        TypiClust(neighbours=-1)


def test_ranking_scores_with_a_diversity_strategy_is_refused():
    from alkit.active.scoring import select_query

    with pytest.raises(ValueError, match="CoreSet selects a set from embeddings"):
        select_query(np.zeros(5), 2, "coreset")


def test_a_hybrid_follows_its_prefilters_own_order_lowest_margin_first():
    from baal.active.heuristics import Margin

    rng = np.random.default_rng(5)
    embeddings, scores = rng.normal(size=(100, 3)), rng.random(100)
    picks = Hybrid(Margin(), CoreSet(), factor=2).seed(0).select(4, embeddings, np.zeros((0, 3)), scores).positions
    assert set(picks.tolist()) <= set(np.argsort(scores)[:8].tolist())  # Margin: the smaller, the more uncertain
