"""Intervals and paired tests against scipy's own computations and a hand computation."""

import math

import numpy as np
import pytest
from scipy import stats

from alkit.statistics import mean_interval, paired_comparison


def test_mean_interval_uses_student_t():
    values = [0.8, 0.82, 0.79, 0.85, 0.81]
    interval = mean_interval(values)
    sem = np.std(values, ddof=1) / math.sqrt(5)
    assert interval.mean == pytest.approx(np.mean(values))
    # 2.776 is t(0.975, df=4): wider than the normal 1.96
    assert interval.half_width == pytest.approx(2.7764451 * sem, rel=1e-6)
    assert interval.low < interval.mean < interval.high


def test_single_value_has_no_interval():
    interval = mean_interval([0.5])
    assert interval.mean == 0.5 and math.isnan(interval.low)


def test_uncorrected_comparison_equals_scipy_paired_t_test():
    a, b = [0.9, 0.85, 0.88, 0.91, 0.87], [0.8, 0.83, 0.86, 0.84, 0.85]
    result = paired_comparison(a, b)
    reference = stats.ttest_rel(a, b)
    assert result.t_statistic == pytest.approx(reference.statistic)
    assert result.p_value == pytest.approx(reference.pvalue)
    assert result.low < result.mean_difference < result.high


def test_correction_widens_the_interval_and_raises_p():
    a, b = [0.9, 0.85, 0.88, 0.91, 0.87], [0.8, 0.83, 0.86, 0.84, 0.85]
    plain, corrected = paired_comparison(a, b), paired_comparison(a, b, correction=0.25)
    d = np.subtract(a, b)
    # Nadeau & Bengio by hand: t = mean / sqrt((1/n + n_test/n_train) * var)
    assert corrected.t_statistic == pytest.approx(d.mean() / math.sqrt((1 / 5 + 0.25) * d.var(ddof=1)))
    assert corrected.p_value > plain.p_value
    assert corrected.high - corrected.low > plain.high - plain.low


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"a": [1, 2], "b": [1]}, "pair up"),
        ({"a": [1], "b": [1]}, "at least 2"),
        ({"a": [1, float("nan")], "b": [1, 2]}, "non-finite"),
        ({"a": [1, 2], "b": [1, 2], "confidence": 1.5}, "confidence"),
        ({"a": [1, 2], "b": [1, 2], "correction": -1}, "correction"),
    ],
)
def test_bad_input_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        paired_comparison(**kwargs)
