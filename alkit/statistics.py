"""The few statistics alkit reports: a mean with its confidence interval, and a paired comparison.

Both k-fold results (folds) and active-learning strategy comparisons (seeds) are small samples, so intervals use
Student's t distribution (``scipy.stats``), not the normal approximation: with 5 folds the 95 % interval is
``mean ± 2.78 · s/√n``, not ``± 1.96 · s/√n``. The paired comparison takes an optional variance correction
(``correction``) so the corrected resampled t-test of k-fold comparisons (Nadeau & Bengio 2003), whose training
sets overlap, is the same computation with a larger variance term.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["MeanInterval", "PairedComparison", "mean_interval", "paired_comparison"]


@dataclass(frozen=True)
class MeanInterval:
    """A sample mean with its two-sided confidence interval (``low``/``high``; NaN with fewer than 2 values)."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.half_width:.4f} ({self.confidence:.0%} CI, n={self.n})"


@dataclass(frozen=True)
class PairedComparison:
    """Mean of the paired differences ``a - b`` with its interval, the t statistic and the two-sided p-value."""

    mean_difference: float
    low: float
    high: float
    t_statistic: float
    p_value: float
    n: int
    confidence: float
    correction: float

    def __str__(self) -> str:
        return (
            f"{self.mean_difference:+.4f} [{self.low:+.4f}, {self.high:+.4f}] ({self.confidence:.0%} CI), "
            f"t={self.t_statistic:.3f}, p={self.p_value:.4f}, n={self.n}"
        )


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be strictly between 0 and 1, got {confidence!r}.")


def _finite_values(values: Sequence[float] | np.ndarray, argument: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    if array.size == 0:
        raise ValueError(f"`{argument}` is empty: at least one value is needed.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{argument}` holds non-finite values ({array.tolist()}): only finite numbers are accepted.")
    return array


def mean_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> MeanInterval:
    """The mean of ``values`` with its Student-t confidence interval."""
    _check_confidence(confidence)
    array = _finite_values(values, "values")
    n = array.size
    mean = float(array.mean())
    if n < 2:
        return MeanInterval(mean, math.nan, math.nan, n, confidence)
    sem = float(array.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * sem
    return MeanInterval(mean, mean - half, mean + half, n, confidence)


def paired_comparison(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    correction: float = 0.0,
) -> PairedComparison:
    """Paired t-test of ``a - b`` (``a[i]`` and ``b[i]`` measured on the same seed, fold, split...).

    ``correction`` is added to ``1/n`` in the variance of the mean difference: ``0`` gives the ordinary paired
    t-test; ``n_test / n_train`` gives Nadeau & Bengio's corrected resampled t-test, for differences measured on
    overlapping training sets (the folds of a cross-validation).
    """
    _check_confidence(confidence)
    if correction < 0:
        raise ValueError(f"`correction` must be >= 0, got {correction!r}.")
    first, second = _finite_values(a, "a"), _finite_values(b, "b")
    if first.shape != second.shape:
        raise ValueError(f"`a` and `b` must pair up: {first.size} values against {second.size}.")
    differences = first - second
    n = differences.size
    if n < 2:
        raise ValueError(f"a paired comparison needs at least 2 pairs, got {n}.")
    mean = float(differences.mean())
    variance = float(differences.var(ddof=1))
    scale = math.sqrt((1 / n + correction) * variance)
    quantile = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1))
    if scale == 0:
        t_statistic = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        p_value = 1.0 if mean == 0 else 0.0
    else:
        t_statistic = mean / scale
        p_value = float(2 * stats.t.sf(abs(t_statistic), df=n - 1))
    return PairedComparison(
        mean, mean - quantile * scale, mean + quantile * scale, t_statistic, p_value, n, confidence, correction
    )
