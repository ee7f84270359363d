"""Heuristics by name or instance, and the variation-ratios heuristic BaaL 2.1 lacks."""

from __future__ import annotations

import numpy as np
import pytest
from baal.active.heuristics import BALD, BatchBALD, Certainty, Entropy, Margin, Random, Variance
from baal.active.heuristics.stochastics import PowerSampling

from alkit.active.heuristics import (
    HEURISTIC_NAMES,
    VariationRatios,
    requires_mc_samples,
    resolve_heuristic,
    scores_independently,
)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("bald", BALD),
        ("BALD", BALD),
        ("batch_bald", BatchBALD),
        ("batch-bald", BatchBALD),
        ("entropy", Entropy),
        ("max_entropy", Entropy),
        ("margin", Margin),
        ("certainty", Certainty),
        ("variance", Variance),
        ("random", Random),
        ("power_bald", PowerSampling),
        ("variation_ratios", VariationRatios),
    ],
)
def test_names_resolve_to_baal_heuristics(name, cls):
    heuristic = resolve_heuristic(name, query_size=4)
    assert type(heuristic) is cls


def test_query_size_reaches_batch_heuristics():
    assert resolve_heuristic("batch_bald", query_size=7).num_samples == 7
    assert resolve_heuristic("power_bald", query_size=7).query_size == 7


def test_instance_is_returned_unchanged():
    heuristic = BALD()
    assert resolve_heuristic(heuristic) is heuristic


def test_unknown_name_lists_accepted_names():
    with pytest.raises(ValueError) as error:
        resolve_heuristic("uncertainty")
    message = str(error.value)
    assert "'uncertainty'" in message
    for name in HEURISTIC_NAMES:
        assert name in message


def test_wrong_type_is_refused():
    with pytest.raises(TypeError, match="heuristic"):
        resolve_heuristic(3)


def test_seeded_random_is_reproducible():
    first = resolve_heuristic("random", seed=3).get_uncertainties(np.zeros((5, 1)))
    again = resolve_heuristic("random", seed=3).get_uncertainties(np.zeros((5, 1)))
    np.testing.assert_array_equal(first, again)


def test_variation_ratios_counts_disagreeing_passes():
    # sample 0: all 4 passes vote class 0 -> 0; sample 1: votes 0,1,1,2 -> modal 2 of 4 -> 0.5
    votes = np.array([[0, 0, 0, 0], [0, 1, 1, 2]])
    probabilities = np.full((2, 3, 4), 0.1)
    for sample in range(2):
        for iteration in range(4):
            probabilities[sample, votes[sample, iteration], iteration] = 0.8
    heuristic = VariationRatios()
    np.testing.assert_allclose(heuristic.get_uncertainties(probabilities), [0.0, 0.5])
    assert heuristic(probabilities).tolist() == [1, 0]  # most disagreement first


def test_variation_ratios_needs_mc_samples():
    with pytest.raises(ValueError, match="MC samples"):
        VariationRatios().compute_score(np.full((2, 3), 1 / 3))


def test_mc_and_streaming_classification():
    for name in ["bald", "batch_bald", "variance", "power_bald", "variation_ratios"]:
        assert requires_mc_samples(resolve_heuristic(name)), name
    for name in ["entropy", "margin", "certainty", "random"]:
        assert not requires_mc_samples(resolve_heuristic(name)), name
    assert not scores_independently(resolve_heuristic("batch_bald"))
    for name in ["bald", "entropy", "margin", "certainty", "variance", "random", "power_bald", "variation_ratios"]:
        assert scores_independently(resolve_heuristic(name)), name

    class Custom(BALD):
        requires_mc_samples = False
        scores_independently = False

    assert not requires_mc_samples(Custom()) and not scores_independently(Custom())


@pytest.mark.parametrize("name", ["bald", "entropy", "margin", "variance", "random", "power_bald", "batch_bald"])
def test_heuristics_survive_pickling(name):
    """ddp_spawn pickles the datamodule; BaaL heuristics hold lambdas, so alkit pickles them by name."""
    import pickle

    from alkit.active.heuristics import PicklableHeuristic

    heuristic = resolve_heuristic(name, query_size=2)
    restored = pickle.loads(pickle.dumps(PicklableHeuristic(heuristic))).restore()
    assert type(restored) is type(heuristic)
    probabilities = np.random.default_rng(0).dirichlet(np.ones(3), size=(6, 4)).transpose(0, 2, 1)
    if name == "batch_bald":  # its scores are sampled; the configuration must survive
        assert restored.num_samples == heuristic.num_samples == 2
        return
    if name == "power_bald":
        assert restored.query_size == 2
        restored, heuristic = restored._bh, heuristic._bh
    if name != "random":
        np.testing.assert_allclose(
            restored.get_uncertainties(probabilities), heuristic.get_uncertainties(probabilities)
        )
    assert restored.get_uncertainties(probabilities).shape == (6,)


def test_stochastic_selection_samples_baals_distribution_reproducibly():
    """PowerBALD & co. sample from the scores alkit computed, through BaaL's own sampling, seeded by ``rng``."""
    from baal.active.heuristics.stochastics import PowerSampling, RankBasedSampling

    from alkit.active.heuristics import BALD
    from alkit.active.scoring import select_query

    scores = np.r_[np.zeros(40), np.linspace(0.5, 1.0, 10)]
    global_state = np.random.get_state()
    first = select_query(scores, 5, "power_bald", rng=np.random.default_rng(3))
    again = select_query(scores, 5, "power_bald", rng=np.random.default_rng(3))
    np.testing.assert_array_equal(first, again)
    assert np.all(scores[first] > 0), "a zero score has zero probability under power sampling"
    assert len(set(first.tolist())) == 5
    # NumPy's global generator, which BaaL samples with, is left as the caller had it
    assert np.random.get_state()[1].tolist() == global_state[1].tolist()

    # the heuristic's own settings are kept: a low temperature makes power and rank sampling pick the top scores
    cold = PowerSampling(BALD(), query_size=3, temperature=1e-3)
    picked = select_query(scores, 3, cold, rng=np.random.default_rng(0))
    assert sorted(picked.tolist()) == [47, 48, 49]
    ranked = select_query(scores, 3, RankBasedSampling(BALD(), query_size=3, temperature=0.1), np.random.default_rng(1))
    assert sorted(ranked.tolist()) == [47, 48, 49]

    # fewer positive scores than asked: every position becomes possible (BaaL's fallback), still distinct
    few = select_query(np.r_[np.zeros(9), 1.0], 4, "power_bald", rng=np.random.default_rng(0))
    assert len(set(few.tolist())) == 4
