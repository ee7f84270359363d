"""compare(): the corrected (repeated) k-fold t-test on paired folds, checked by hand and on a known large gap."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from alkit.kfold import KFoldResult, compare, kfold_fit, make_folds
from tests.kfold._helpers import QUIET, BlobDataWithTest, Classifier


def _result(val_acc, folds):
    return KFoldResult(
        val_metrics=[{"val_acc": v} for v in val_acc],
        train_indices=[f.train_indices for f in folds],
        val_indices=[f.val_indices for f in folds],
    )


def test_the_corrected_resampled_t_test_matches_a_hand_computation():
    folds = make_folds(50, 5, seed=0)  # 40 training, 10 held-out samples per fold
    a = [0.90, 0.84, 0.88, 0.92, 0.86]
    b = [0.85, 0.83, 0.80, 0.90, 0.82]
    comparison = compare(_result(a, folds), _result(b, folds), "val_acc")

    d = np.array(a) - np.array(b)  # 0.05, 0.01, 0.08, 0.02, 0.04
    mean = d.mean()
    variance = ((d - mean) ** 2).sum() / 4
    scale = math.sqrt((1 / 5 + 10 / 40) * variance)  # Nadeau & Bengio: 1/n + n_test/n_train
    t = mean / scale
    assert comparison.mean_difference == pytest.approx(0.04)
    assert comparison.correction == pytest.approx(0.25)
    assert comparison.t_statistic == pytest.approx(t)
    assert comparison.p_value == pytest.approx(2 * stats.t.sf(t, df=4))
    half = stats.t.ppf(0.975, df=4) * scale
    assert (comparison.low, comparison.high) == pytest.approx((mean - half, mean + half))
    assert comparison.n_folds == 5 and comparison.n_repeats == 1
    assert "Nadeau & Bengio" in comparison.test
    # the uncorrected test would claim far more confidence than the overlap of training sets allows
    assert comparison.p_value > stats.ttest_rel(a, b).pvalue


def test_repeated_k_fold_uses_all_k_times_r_folds_with_the_same_correction():
    from sklearn.model_selection import RepeatedKFold

    folds = make_folds(30, cv=RepeatedKFold(n_splits=3, n_repeats=2, random_state=0))  # 20 train, 10 held out
    a = [0.8, 0.7, 0.75, 0.85, 0.7, 0.8]
    b = [0.7, 0.7, 0.70, 0.75, 0.6, 0.8]
    comparison = compare(_result(a, folds), _result(b, folds), "val_acc")
    d = np.array(a) - np.array(b)
    scale = math.sqrt((1 / 6 + 10 / 20) * d.var(ddof=1))  # Bouckaert & Frank: n = k·r = 6
    assert comparison.n_folds == 6 and comparison.n_repeats == 2
    assert comparison.t_statistic == pytest.approx(d.mean() / scale)
    assert comparison.p_value == pytest.approx(2 * stats.t.sf(d.mean() / scale, df=5))
    assert "Bouckaert & Frank" in comparison.test


def test_results_on_other_folds_are_refused():
    a = _result([0.9, 0.8, 0.7], make_folds(30, 3, seed=0))
    b = _result([0.9, 0.8, 0.7], make_folds(30, 3, seed=1))
    with pytest.raises(ValueError, match=r"did not use identical folds \(fold fingerprints \w+ != \w+; fold 0"):
        compare(a, b, "val_acc")
    c = _result([0.9, 0.8, 0.7, 0.6], make_folds(30, 4, seed=0))
    with pytest.raises(ValueError, match="result_a has 3 folds and result_b 4"):
        compare(a, c, "val_acc")


def test_bad_arguments_are_named():
    folds = make_folds(30, 3, seed=0)
    a = _result([0.9, 0.8, 0.7], folds)
    with pytest.raises(KeyError, match=r"metric='val_loss' was not logged by both results; accepted: \['val_acc'\]"):
        compare(a, a, "val_loss")
    with pytest.raises(TypeError, match="result_b=dict is invalid: expected a KFoldResult"):
        compare(a, {}, "val_acc")
    with pytest.raises(ValueError, match="result_a has no fold indices"):
        compare(KFoldResult(val_metrics=[{"val_acc": 1.0}] * 3), a, "val_acc")


class _AlwaysClassZero(Classifier):
    """Predicts class 0 whatever the input: exactly chance (1/3) on stratified folds of three balanced classes."""

    def forward(self, x):
        logits = torch.zeros(len(x), 3, device=x.device)
        logits[:, 0] = 1.0
        return logits + 0.0 * self.net(x)  # keeps the parameters in the graph, so training runs as usual


def test_a_known_large_difference_is_found(tmp_path):
    common = {"k": 5, "stratify": True, "seed": 0, "max_epochs": 4, "ensemble": False, **QUIET}
    data = {"spread": 4.0, "n": 60}  # well separated classes: any working training run learns them
    torch.manual_seed(0)
    good = kfold_fit(
        Classifier(lr=0.1, gamma=1.0), BlobDataWithTest(**data), default_root_dir=tmp_path / "good", **common
    )
    chance = kfold_fit(_AlwaysClassZero(), BlobDataWithTest(**data), default_root_dir=tmp_path / "zero", **common)
    np.testing.assert_allclose(chance.metrics["val_acc"], 1 / 3, atol=1e-6)
    # over seeds 0-7 (initial weights, folds, training) the worst fold scored 0.75, the mean difference was >= 0.58,
    # the interval's low end >= 0.39 and p <= 0.0011: the margins below hold on any CPU
    assert all(v > 0.6 for v in good.metrics["val_acc"]), good.metrics["val_acc"]

    comparison = compare(good, chance, "val_acc")
    assert comparison.mean_difference > 0.4
    assert comparison.low > 0.2  # the whole 95 % interval is a large gain
    assert comparison.p_value < 0.01
    reverse = compare(chance, good, "val_acc")
    assert reverse.mean_difference == pytest.approx(-comparison.mean_difference)
    assert reverse.p_value == pytest.approx(comparison.p_value)
