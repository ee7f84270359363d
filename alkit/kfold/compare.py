"""``compare``: is model (or setting) A better than B, judged on the very same folds?

Two k-fold runs on identical folds give paired per-fold scores. A plain paired t-test on them is too eager: the folds'
training sets overlap, so their scores are correlated and the plain variance underestimates the real one (Dietterich
1998; Nadeau & Bengio 2003 measured type-I errors far above the nominal level). The corrected resampled t-test of
Nadeau & Bengio (2003) replaces the variance factor ``1/n`` by ``1/n + n_test/n_train``; for a repeated k-fold
(``RepeatedKFold``, ``r`` repeats of ``k`` folds) Bouckaert & Frank (2004) use the same correction over all
``n = k·r`` folds with ``k·r − 1`` degrees of freedom. Both are :func:`alkit.statistics.paired_comparison` with
``correction = n_test / n_train``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alkit.kfold.result import KFoldResult
from alkit.statistics import paired_comparison

__all__ = ["KFoldComparison", "compare"]

NADEAU_BENGIO = "corrected resampled t-test (Nadeau & Bengio 2003)"
BOUCKAERT_FRANK = "corrected repeated k-fold t-test (Bouckaert & Frank 2004)"


@dataclass(frozen=True)
class KFoldComparison:
    """``metric`` of A minus B over paired folds: the mean difference, its interval, t statistic and p-value.

    Attributes:
        metric: the compared metric.
        mean_difference: mean over folds of ``a - b``.
        low, high: the two-sided confidence interval of the mean difference (corrected variance).
        t_statistic, p_value: the corrected t-test of "no difference" (two-sided).
        n_folds: folds paired (``k·r`` for ``r`` repeats of ``k`` folds); ``n_folds - 1`` degrees of freedom.
        n_repeats: repeats of the splitter (1 for a plain k-fold).
        correction: ``n_test / n_train`` added to ``1/n_folds`` in the variance of the mean difference.
        confidence: level of the interval.
        test: the test's name and reference.
        differences: the per-fold differences ``a - b``.
    """

    metric: str
    mean_difference: float
    low: float
    high: float
    t_statistic: float
    p_value: float
    n_folds: int
    n_repeats: int
    correction: float
    confidence: float
    test: str
    differences: tuple[float, ...]

    def __str__(self) -> str:
        return (
            f"{self.metric}: A - B = {self.mean_difference:+.4f} [{self.low:+.4f}, {self.high:+.4f}] "
            f"({self.confidence:.0%} CI), t={self.t_statistic:.3f}, p={self.p_value:.4f}; {self.test}, "
            f"{self.n_folds} folds"
        )


def compare(result_a: KFoldResult, result_b: KFoldResult, metric: str, *, confidence: float = 0.95) -> KFoldComparison:
    """Compare two k-fold results fold by fold with the corrected (repeated) k-fold t-test.

    Args:
        result_a, result_b: :class:`~alkit.kfold.KFoldResult` of two runs on identical folds (same data, ``cv`` and
            seed; checked through their fold indices).
        metric: a per-fold metric both logged (e.g. ``"val_acc"``); the difference is ``a - b``.
        confidence: level of the confidence interval.

    Returns:
        A :class:`KFoldComparison`; ``p_value`` is two-sided.
    """
    for argument, result in (("result_a", result_a), ("result_b", result_b)):
        if not isinstance(result, KFoldResult):
            raise TypeError(f"{argument}={type(result).__name__} is invalid: expected a KFoldResult (from kfold_fit)")
        if not result.val_indices:
            raise ValueError(
                f"{argument} has no fold indices, so its folds cannot be checked against the other result's: compare "
                "results of kfold_fit / KFoldLoop runs with a KFoldDataModule"
            )
    if not isinstance(metric, str):
        raise TypeError(f"metric={metric!r} is invalid: expected the name of a per-fold metric, e.g. 'val_acc'")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} is invalid: expected a number strictly between 0 and 1")
    _check_same_folds(result_a, result_b)
    metrics_a, metrics_b = result_a.metrics, result_b.metrics
    common = sorted(set(metrics_a) & set(metrics_b))
    if metric not in common:
        raise KeyError(f"metric={metric!r} was not logged by both results; accepted: {common}")
    a, b = metrics_a[metric], metrics_b[metric]
    for argument, values in (("result_a", a), ("result_b", b)):
        missing = np.flatnonzero(np.isnan(values))
        if missing.size:
            raise ValueError(f"{argument} has no {metric!r} for folds {missing.tolist()}: every fold needs a value")

    sizes = np.asarray(result_a.fold_sizes, dtype=float)
    correction = float(np.mean(sizes[:, 1] / sizes[:, 0]))  # n_test / n_train, averaged over folds
    paired = paired_comparison(a, b, confidence=confidence, correction=correction)
    n_repeats = result_a.n_repeats
    return KFoldComparison(
        metric=metric,
        mean_difference=paired.mean_difference,
        low=paired.low,
        high=paired.high,
        t_statistic=paired.t_statistic,
        p_value=paired.p_value,
        n_folds=paired.n,
        n_repeats=n_repeats,
        correction=correction,
        confidence=confidence,
        test=BOUCKAERT_FRANK if n_repeats > 1 else NADEAU_BENGIO,
        differences=tuple(float(d) for d in a - b),
    )


def _check_same_folds(result_a: KFoldResult, result_b: KFoldResult) -> None:
    """Paired only if fold ``i`` of A held out exactly the samples fold ``i`` of B did (and trained on the same)."""
    if result_a.num_folds != result_b.num_folds:
        raise ValueError(
            f"result_a has {result_a.num_folds} folds and result_b {result_b.num_folds}: a paired comparison needs "
            "two runs on identical folds (same data, cv and seed)"
        )
    if result_a.fingerprint == result_b.fingerprint:
        return
    first = next(
        i
        for i in range(result_a.num_folds)
        if not (
            np.array_equal(result_a.val_indices[i], result_b.val_indices[i])
            and np.array_equal(result_a.train_indices[i], result_b.train_indices[i])
        )
    )
    raise ValueError(
        f"result_a and result_b did not use identical folds (fold fingerprints {result_a.fingerprint} != "
        f"{result_b.fingerprint}; fold {first} differs first): a paired comparison needs both runs on the same folds "
        "(same data, cv and seed)"
    )
