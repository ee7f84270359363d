"""Embeddings for diversity strategies: one protocol, taken in the scoring pass; EPIG with pool targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from baal.active.heuristics import EPIG
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from alkit.active import EmbeddingProtocolError, SampledTargetEPIG, compute_embeddings
from alkit.active.scoring import score_pool
from tests.active.synthetic import BackboneHead


def loader(x: torch.Tensor, batch_size: int = 4) -> DataLoader:
    return DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=batch_size)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def count_calls(module: nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_feature_cache_path_gives_scores_and_embeddings_with_one_backbone_pass_per_batch():
    model, x = BackboneHead(), torch.randn(22, 4)
    backbone_calls = count_calls(model.backbone)
    torch.manual_seed(1)
    result = score_pool(model, loader(x, batch_size=5), "bald_coreset", mc_iterations=6)
    assert result.feature_cache
    assert backbone_calls[0] == 5 + 2  # 5 batches, plus the check of the split on the first batch (model and parts)
    with torch.no_grad():
        np.testing.assert_allclose(result.embeddings, model.backbone(x).numpy(), atol=1e-6)  # last Linear's input
    torch.manual_seed(1)
    plain = score_pool(model, loader(x, batch_size=5), "bald", mc_iterations=6)
    np.testing.assert_array_equal(result.scores, plain.scores)  # embeddings take no random draw from the scores


def test_full_passes_and_feature_cache_give_the_same_embeddings_and_mean_probabilities():
    model, x = BackboneHead(), torch.randn(9, 4)
    torch.manual_seed(3)
    fast = score_pool(model, loader(x), "coreset", mc_iterations=4)
    torch.manual_seed(3)
    slow = score_pool(model, loader(x), "coreset", mc_iterations=4, feature_cache=False)
    np.testing.assert_allclose(fast.embeddings, slow.embeddings, atol=1e-6)
    np.testing.assert_allclose(fast.mean_probabilities, slow.mean_probabilities, atol=1e-6)
    np.testing.assert_allclose(fast.mean_probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_a_deterministic_model_gives_both_in_its_single_pass():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    calls = count_calls(model)
    x = torch.randn(10, 4)
    result = score_pool(model, loader(x), "badge", mc_iterations=5)
    assert calls[0] == 3  # one pass per batch of 4, 4, 2
    with torch.no_grad():
        np.testing.assert_allclose(result.embeddings, model[:2](x).numpy(), atol=1e-6)
        expected = torch.softmax(model(x), dim=1).numpy()
    np.testing.assert_allclose(result.mean_probabilities, expected, atol=1e-6)


def test_an_embed_method_takes_precedence_over_the_last_linear():
    class Embeds(BackboneHead):
        def embed(self, x):
            return 3.0 * x

    x = torch.randn(6, 4)
    result = score_pool(Embeds(), loader(x), "coreset", mc_iterations=2, return_embeddings=True)
    np.testing.assert_allclose(result.embeddings, 3.0 * x.numpy(), atol=1e-6)
    np.testing.assert_allclose(compute_embeddings(Embeds(), loader(x)), 3.0 * x.numpy(), atol=1e-6)


def test_a_model_without_embeddings_is_refused_naming_the_protocol_before_any_pass():
    class NoLinear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 3))

        def forward(self, x):
            return x @ self.weight

    model = NoLinear()
    calls = count_calls(model)
    with pytest.raises(EmbeddingProtocolError, match=r"embed\(x\).*torch\.nn\.Linear"):
        score_pool(model, loader(torch.randn(5, 4)), "coreset", mc_iterations=1)
    assert calls[0] == 0
    score_pool(model, loader(torch.randn(5, 4)), "entropy", mc_iterations=1)  # uncertainty heuristics need none


def test_a_last_linear_run_twice_per_forward_is_refused():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x):
            return self.linear(self.linear(x))

    with pytest.raises(EmbeddingProtocolError, match="ran 2 times"):
        score_pool(Twice(), loader(torch.randn(5, 4)), "coreset", mc_iterations=1)


# ---- EPIG ----------------------------------------------------------------------------------------------------------
def test_epig_with_the_whole_pool_as_targets_equals_baal_epig():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 3, 5))
    predictions = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ours = SampledTargetEPIG(num_targets=1000, seed=0).get_uncertainties(predictions)
    theirs = EPIG().get_uncertainties(predictions, target_predictions=predictions)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_epig_scores_the_pool_by_name_and_baal_epig_without_targets_is_refused():
    result = score_pool(BackboneHead(), loader(torch.randn(11, 4)), "epig", mc_iterations=4)
    assert result.scores.shape == (11,) and np.isfinite(result.scores).all() and (result.scores > -1e-6).all()
    with pytest.raises(ValueError, match="target"):
        score_pool(BackboneHead(), loader(torch.randn(11, 4)), EPIG(), mc_iterations=4)


def test_random_scores_need_no_forward_pass_unless_embeddings_are_asked_for():
    model, x = BackboneHead(), torch.randn(6, 4)
    calls = count_calls(model)
    assert score_pool(model, loader(x), "random", mc_iterations=2).embeddings is None and calls[0] == 0
    result = score_pool(model, loader(x), "random", mc_iterations=2, return_embeddings=True)
    with torch.no_grad():
        np.testing.assert_allclose(result.embeddings, model.backbone(x).numpy(), atol=1e-6)
