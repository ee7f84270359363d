"""MC-dropout pool scoring: real MC samples, every sample scored in order, probabilities, the feature cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from baal.active.heuristics import BALD, Certainty, Entropy, Margin
from baal.bayesian.consistent_dropout import ConsistentDropout
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from alkit.active.heuristics import resolve_heuristic
from alkit.active.scoring import mc_dropout, score_pool, select_query
from tests.active.synthetic import BackboneHead, SpikeModel, spike_pool


def loader(x: torch.Tensor, batch_size: int = 4, **kwargs) -> DataLoader:
    return DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=batch_size, **kwargs)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_mc_samples_differ_and_bald_is_informative():
    """MC samples of one input differ: Flash's consistent dropout made them identical and BALD exactly 0."""
    x = spike_pool(12, spike_at=5)
    result = score_pool(SpikeModel(), loader(x), "bald", mc_iterations=20, return_probabilities=True)
    probabilities = result.probabilities
    assert probabilities.shape == (12, 2, 20)
    assert np.abs(probabilities[5, :, :1] - probabilities[5, :, 1:]).max() > 0.1  # the passes really differ
    assert np.ptp(result.scores) > 0.05  # not all equal
    assert int(np.argmax(result.scores)) == 5


def test_consistent_dropout_layers_still_give_fresh_masks():
    """A model built with BaaL's ConsistentDropout (what Flash used) must not reuse one mask across passes."""
    model = SpikeModel()
    model.dropout = ConsistentDropout(0.5)
    x = spike_pool(6, spike_at=2)
    result = score_pool(model, loader(x), "bald", mc_iterations=20, return_probabilities=True)
    assert np.abs(result.probabilities[2, :, :1] - result.probabilities[2, :, 1:]).max() > 0.1
    assert int(np.argmax(result.scores)) == 2


@pytest.mark.parametrize("spike_at", [3, 9])
def test_pick_follows_the_data(spike_at):
    """Tie-breaking would pick the same position whatever the data; the real pick moves with the uncertain sample."""
    x = spike_pool(11, spike_at=spike_at, seed=spike_at)
    scores = score_pool(SpikeModel(), loader(x), "bald", mc_iterations=20).scores
    assert select_query(scores, 1, "bald").tolist() == [spike_at]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 7])
def test_every_sample_scored_in_pool_order(batch_size):
    """Every sample is scored, in pool order: Flash scored only the first item of each batch and mislabelled it."""
    x = spike_pool(11, spike_at=7)  # 7 is the second item of a batch of 2: Flash's bug would never see it
    result = score_pool(SpikeModel(), loader(x, batch_size=batch_size), "bald", mc_iterations=20)
    assert result.scores.shape == (11,)
    assert select_query(result.scores, 1, BALD()).tolist() == [7]
    # each sample's score is its own: scoring it alone (batch of 1) tells the same story
    alone = score_pool(SpikeModel(), loader(x[7:8], batch_size=1), "bald", mc_iterations=20).scores
    assert alone[0] > 10 * np.median(result.scores)


def test_heuristics_receive_probabilities_not_logits():
    """The scorer softmaxes: every heuristic sees class probabilities that sum to one, never logits."""
    seen = []

    class SpyBALD(BALD):
        def compute_score(self, predictions, target_predictions=None):
            seen.append(np.array(predictions))
            return super().compute_score(predictions, target_predictions)

    model = BackboneHead()
    with torch.no_grad():
        model.head[1].weight.mul_(50)  # large logits, far outside [0, 1]
    score_pool(model, loader(torch.randn(9, 4)), SpyBALD(), mc_iterations=3)
    array = np.concatenate(seen)
    assert array.shape == (9, 3, 3)
    assert array.min() >= 0 and array.max() <= 1
    np.testing.assert_allclose(array.sum(axis=1), 1.0, atol=1e-6)


def test_certainty_ranks_probabilities_not_raw_logits():
    """Certainty (no softmax of its own) would rank raw logits differently: here logits and probabilities disagree."""

    class Fixed(nn.Module):
        def forward(self, x):
            return x  # the inputs are the logits

    logits = torch.tensor([[5.0, 5.0, 0.0], [3.0, 0.0, 0.0]])  # max logit 5 vs 3; max probability 0.50 vs 0.91
    scores = score_pool(Fixed(), loader(logits, batch_size=1), Certainty(), mc_iterations=1).scores
    np.testing.assert_allclose(scores, torch.softmax(logits, 1).max(1).values.numpy(), rtol=1e-6)
    assert select_query(scores, 1, Certainty()).tolist() == [0]  # least certain by probability


def test_model_outputs_probabilities_are_used_as_given_and_checked():
    class Softmaxed(nn.Module):
        def forward(self, x):
            return torch.softmax(x, 1)

    x = torch.tensor([[2.0, 0.0], [0.0, 0.1]])
    scores = score_pool(Softmaxed(), loader(x), Entropy(), 1, model_outputs="probabilities").scores
    p = torch.softmax(x, 1).numpy()
    np.testing.assert_allclose(scores, -(p * np.log(p)).sum(1), rtol=1e-5)
    with pytest.raises(ValueError, match="not probabilities"):
        score_pool(nn.Identity(), loader(x * 5), Entropy(), 1, model_outputs="probabilities")
    with pytest.raises(ValueError, match="model_outputs"):
        score_pool(nn.Identity(), loader(x), Entropy(), 1, model_outputs="softmax")


def test_model_without_dropout_is_refused_for_mc_heuristics():
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ValueError, match="no dropout layer"):
        score_pool(model, loader(torch.randn(5, 4)), "bald", mc_iterations=5)
    with pytest.raises(ValueError, match="no dropout layer"):
        score_pool(model, loader(torch.randn(5, 4)), "variation_ratios", mc_iterations=5)
    # single-pass heuristics work without dropout (one deterministic pass)
    result = score_pool(model, loader(torch.randn(5, 4)), "entropy", mc_iterations=5, return_probabilities=True)
    assert result.probabilities.shape == (5, 3, 1)


def test_bad_iterations_and_loaders_are_refused():
    x = torch.randn(6, 4)
    with pytest.raises(ValueError, match="mc_iterations"):
        score_pool(BackboneHead(), loader(x), "bald", mc_iterations=0)
    with pytest.raises(ValueError, match=">= 2"):
        score_pool(BackboneHead(), loader(x), "bald", mc_iterations=1)
    with pytest.raises(ValueError, match="dataset order"):
        score_pool(BackboneHead(), loader(x, shuffle=True), "bald", mc_iterations=2)
    with pytest.raises(ValueError, match="drop_last"):
        score_pool(BackboneHead(), loader(x, drop_last=True), "bald", mc_iterations=2)


def test_feature_cache_matches_full_passes():
    """Backbone once + head I times gives the same MC samples as I full passes (same RNG draws)."""
    model = BackboneHead()
    x = torch.randn(23, 4)
    torch.manual_seed(1)
    fast = score_pool(model, loader(x, batch_size=5), "bald", 6, return_probabilities=True)
    torch.manual_seed(1)
    slow = score_pool(model, loader(x, batch_size=5), "bald", 6, return_probabilities=True, feature_cache=False)
    assert fast.feature_cache and not slow.feature_cache
    np.testing.assert_allclose(fast.probabilities, slow.probabilities, atol=1e-6)
    np.testing.assert_allclose(fast.scores, slow.scores, atol=1e-6)


def test_feature_cache_refused_when_split_does_not_reproduce_forward():
    class Scaled(BackboneHead):
        def forward(self, x):
            return self.head(2 * self.backbone(x))

    model = Scaled()
    x = torch.randn(7, 4)
    with pytest.warns(UserWarning, match="does not reproduce"):
        torch.manual_seed(2)
        result = score_pool(model, loader(x), "bald", 4, return_probabilities=True)
    torch.manual_seed(2)
    slow = score_pool(model, loader(x), "bald", 4, return_probabilities=True, feature_cache=False)
    assert not result.feature_cache
    np.testing.assert_allclose(result.probabilities, slow.probabilities, atol=1e-6)


def test_feature_cache_needs_all_dropout_in_the_head():
    model = BackboneHead()
    model.backbone.append(nn.Dropout(0.2))  # the backbone is stochastic now: it must run I times
    result = score_pool(model, loader(torch.randn(5, 4)), "bald", 3)
    assert not result.feature_cache


def test_forward_features_and_forward_head_define_the_split():
    class Pooled(BackboneHead):
        def forward_features(self, x):
            return self.backbone(x) * 0.5

        def forward_head(self, features):
            return self.head(features)

        def forward(self, x):
            return self.forward_head(self.forward_features(x))

    result = score_pool(Pooled(), loader(torch.randn(5, 4)), "bald", 3)
    assert result.feature_cache


def test_module_modes_are_restored():
    model = BackboneHead()
    model.train()
    model.backbone.eval()  # e.g. frozen by a fine-tuning strategy
    with mc_dropout(model):
        assert not model.training and model.head[0].training
    score_pool(model, loader(torch.randn(5, 4)), "bald", 2)
    assert model.training and model.head.training and not model.backbone.training


def test_streamed_scores_equal_whole_pool_scores():
    """Per-sample heuristics are scored batch by batch; the result equals scoring the whole [N, C, I] array."""
    model = BackboneHead()
    x = torch.randn(13, 4)
    for name in ["bald", "entropy", "margin", "certainty", "variance", "variation_ratios"]:
        torch.manual_seed(3)
        streamed = score_pool(model, loader(x, batch_size=4), name, 5).scores
        torch.manual_seed(3)
        whole = score_pool(model, loader(x, batch_size=4), name, 5, return_probabilities=True)
        expected = resolve_heuristic(name).get_uncertainties(whole.probabilities)
        np.testing.assert_allclose(streamed, expected, atol=1e-9, err_msg=name)


def test_batch_bald_scores_the_whole_pool_jointly():
    x = spike_pool(10, spike_at=4)
    scores = score_pool(SpikeModel(), loader(x, batch_size=3), resolve_heuristic("batch_bald", query_size=3), 10).scores
    positions = select_query(scores, 3, resolve_heuristic("batch_bald", query_size=3))
    assert len(set(positions.tolist())) == 3 and 4 in positions.tolist()


def test_random_needs_no_forward_pass():
    class Exploding(nn.Module):
        def forward(self, x):
            raise AssertionError("Random must not run the model")

    scores = score_pool(Exploding(), loader(torch.randn(9, 4)), resolve_heuristic("random", seed=0), 5).scores
    assert scores.shape == (9,) and np.unique(scores).size == 9


def test_select_query_respects_heuristic_direction_and_size():
    scores = np.array([0.3, 0.9, 0.1, 0.5])
    assert select_query(scores, 2, BALD()).tolist() == [1, 3]  # BALD: highest first
    assert select_query(scores, 2, Margin()).tolist() == [2, 0]  # Margin: smallest margin first
    assert select_query(scores, 10, BALD()).tolist() == [1, 3, 0, 2]  # no more than the pool
    with pytest.raises(ValueError, match="query_size"):
        select_query(scores, 0, BALD())


def test_stochastic_heuristic_picks_distinct_positions_reproducibly():
    scores = np.array([0.0, 1.0, 2.0, 3.0, -1e-9, np.nan])
    heuristic = resolve_heuristic("power_bald", query_size=3)
    first = select_query(scores, 3, heuristic, rng=np.random.default_rng(5))
    again = select_query(scores, 3, heuristic, rng=np.random.default_rng(5))
    assert first.tolist() == again.tolist()
    assert len(set(first.tolist())) == 3 and set(first.tolist()) <= {1, 2, 3}  # zero-score positions never drawn


def test_batch_bald_keeps_greedy_order():
    """BaaL scores BatchBALD picks with the growing joint MI; ranking them descending would drop the first pick."""
    scores = np.array([0.0, 0.9, 0.2, 0.0, 0.5, 0.7])  # greedy order: 2, 4, 5, 1
    assert select_query(scores, 3, resolve_heuristic("batch_bald", query_size=3)).tolist() == [2, 4, 5]


def test_feature_cache_runs_the_backbone_once_per_batch():
    """The frozen backbone runs once per batch, only the head I times: Flash re-ran the backbone every iteration."""
    model = BackboneHead()
    calls = {"backbone": 0, "head_rows": 0}
    model.backbone.register_forward_hook(lambda *_: calls.__setitem__("backbone", calls["backbone"] + 1))
    model.head.register_forward_hook(lambda m, i, o: calls.__setitem__("head_rows", calls["head_rows"] + len(i[0])))
    score_pool(model, loader(torch.randn(12, 4), batch_size=4), "bald", mc_iterations=20)
    # one per batch, plus two on two samples of the first batch to check that head(backbone(x)) == model(x)
    assert calls["backbone"] == 3 + 2
    assert calls["head_rows"] == 12 * 20 + 2 * 2
    calls.update(backbone=0)
    score_pool(model, loader(torch.randn(12, 4), batch_size=4), "bald", mc_iterations=20, feature_cache=False)
    assert calls["backbone"] == 3 * 20


def test_feature_cache_chunks_keep_the_mc_distribution(monkeypatch):
    """With a tiny element budget the head runs on one sample at a time; the MC distribution is unchanged."""
    import alkit.active.scoring as scoring

    monkeypatch.setattr(scoring, "_MAX_REPLICATED_ELEMENTS", 10)
    model = BackboneHead(p=0.3)
    x = torch.randn(6, 4)
    chunked = score_pool(model, loader(x, batch_size=6), "bald", 400, return_probabilities=True)
    whole = score_pool(model, loader(x, batch_size=6), "bald", 400, return_probabilities=True, feature_cache=False)
    assert chunked.feature_cache and chunked.probabilities.shape == (6, 3, 400)
    np.testing.assert_allclose(chunked.probabilities.mean(-1), whole.probabilities.mean(-1), atol=0.05)
    np.testing.assert_allclose(chunked.scores, whole.scores, atol=0.05)
