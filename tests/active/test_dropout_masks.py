"""Fast MC-dropout masks: the same Bernoulli(p) dropout as nn.Dropout, served only while scoring, then restored."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from alkit.active.dropout_masks import dropout_mask, fast_dropout_masks
from alkit.active.scoring import mc_dropout, score_pool
from tests.active.synthetic import BackboneHead


@pytest.mark.parametrize("p", [0.5, 0.25, 0.125, 0.1, 0.3])
def test_masks_keep_each_element_with_probability_one_minus_p(p):
    """Byte path (p * 256 an integer) and uniform path alike; 2M elements: std of the fraction < 4e-4."""
    torch.manual_seed(0)
    mask = dropout_mask((1000, 2000), p)
    assert mask.dtype == torch.bool and mask.shape == (1000, 2000)
    assert abs(mask.float().mean().item() - (1 - p)) < 0.003
    # no structure: neighbouring elements (same random byte word for the byte path) are independent
    both = (mask[:, :-1] & mask[:, 1:]).float().mean().item()
    assert abs(both - (1 - p) ** 2) < 0.003


def test_masks_are_reproducible_with_torch_manual_seed():
    torch.manual_seed(3)
    a = dropout_mask((64, 100), 0.5)
    torch.manual_seed(3)
    b = dropout_mask((64, 100), 0.5)
    assert torch.equal(a, b) and not torch.equal(a, dropout_mask((64, 100), 0.5))


def test_a_bad_probability_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"`p` must be a probability in \[0, 1\], got 1.5"):
        dropout_mask((4,), 1.5)


def test_dropout_layers_drop_and_rescale_like_nn_dropout_while_active_and_are_restored():
    layer = nn.Dropout(0.25)
    x = torch.rand(50, 200) + 1.0  # no zeros: a zero in the output means dropped
    with mc_dropout(layer), fast_dropout_masks([layer]):
        assert "forward" in layer.__dict__
        out = layer(x)
    assert "forward" not in layer.__dict__  # the class's forward again
    dropped = out == 0
    assert abs(dropped.float().mean().item() - 0.25) < 0.02
    torch.testing.assert_close(out[~dropped], x[~dropped] / 0.75)
    layer.eval()
    assert torch.equal(layer(x), x)


def test_restored_on_error_and_other_dropouts_keep_their_own_forward():
    class OwnDropout(nn.Dropout):
        def forward(self, x):
            return x * 0

    plain, own, channel = nn.Dropout(0.5), OwnDropout(0.5), nn.Dropout2d(0.5)
    with pytest.raises(RuntimeError, match="boom"), fast_dropout_masks([plain, own, channel]):
        assert "forward" in plain.__dict__
        assert "forward" not in own.__dict__ and "forward" not in channel.__dict__
        raise RuntimeError("boom")
    assert "forward" not in plain.__dict__


def test_fast_and_torch_masks_score_the_same_distribution():
    """Both are MC estimates of the same BALD and the same mean prediction: with many passes they agree closely."""
    torch.manual_seed(0)
    model = BackboneHead(features=8, hidden=64, num_classes=3, p=0.5)
    x = torch.randn(64, 8) * 2
    pool = DataLoader(TensorDataset(x, torch.zeros(64, dtype=torch.long)), batch_size=64)
    fast = score_pool(model, pool, "bald", 1000, return_probabilities=True)
    torch_masks = score_pool(model, pool, "bald", 1000, return_probabilities=True, dropout_masks="torch")
    np.testing.assert_allclose(fast.probabilities.mean(-1), torch_masks.probabilities.mean(-1), atol=0.03)
    np.testing.assert_allclose(fast.scores, torch_masks.scores, atol=0.03)
    assert np.corrcoef(fast.scores, torch_masks.scores)[0, 1] > 0.95
    assert not np.array_equal(fast.probabilities, torch_masks.probabilities)  # really another sampler
    assert all("forward" not in module.__dict__ for module in model.modules())  # served only while scoring


def test_scoring_refuses_an_unknown_mask_kind_before_any_work():
    pool = DataLoader(TensorDataset(torch.randn(4, 4), torch.zeros(4)), batch_size=2)
    with pytest.raises(ValueError, match=r"`dropout_masks` must be 'fast' or 'torch', got 'bytes'"):
        score_pool(BackboneHead(), pool, "bald", 4, dropout_masks="bytes")
