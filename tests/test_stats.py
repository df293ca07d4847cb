"""The statistics the reports share: binomial and Student-t intervals, means and spreads over seeds."""

import math

import numpy as np
import pytest

from lth_jax import stats
from lth_jax.errors import UserError


def test_wilson_interval_matches_known_values():
    lo, hi = stats.wilson_interval(0, 4)
    assert lo == 0.0 and hi == pytest.approx(0.4899, abs=1e-4)
    # p = 0.4, n = 40: centre (0.4 + z²/80) / (1 + z²/40) = 0.40876, half-width 0.14528
    lo, hi = stats.wilson_interval(16, 40)
    assert (lo, hi) == pytest.approx((0.26348, 0.55405), abs=1e-4)
    lo, hi = stats.wilson_interval(40, 40)
    assert hi == 1.0 and lo == pytest.approx(0.9124, abs=1e-4)
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)
    # more seeds, narrower interval around the same rate
    assert np.diff(stats.wilson_interval(8, 32)) < np.diff(stats.wilson_interval(2, 8))


def test_intervals_overlap_when_they_share_a_point():
    assert stats.intervals_overlap((0.1, 0.4), (0.4, 0.9))  # touching ends count
    assert stats.intervals_overlap((0.0, 1.0), (0.3, 0.5)) and stats.intervals_overlap((0.3, 0.5), (0.0, 1.0))
    assert not stats.intervals_overlap((0.1, 0.39), (0.4, 0.9)) and not stats.intervals_overlap((0.4, 0.9), (0.1, 0.39))


def test_mean_std_is_the_population_spread():
    assert stats.mean_std([0.5, 0.7]) == pytest.approx((0.6, 0.1))
    assert stats.mean_std([0.25]) == (0.25, 0.0)
    values = [0.91, 0.935, 0.88, 0.9]
    assert stats.mean_std(values) == (float(np.mean(np.array(values))), float(np.std(np.array(values))))  # bit for bit numpy's


def test_mean_and_median_skip_missing_values():
    assert stats.mean_or_none([1.0, None, 3.0]) == 2.0
    assert stats.median_or_none([5, None, 1, 2]) == 2.0
    assert stats.mean_or_none([None, None]) is None and stats.median_or_none([]) is None


def test_t_interval_matches_the_student_t_table():
    # n = 5: t(0.975, 4) = 2.776445; mean 3, sample std sqrt(2.5)
    mean, low, high, n = stats.t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert (mean, n) == (3.0, 5) and (low, high) == pytest.approx((3.0 - half, 3.0 + half), abs=1e-6)
    # n = 2 at 90%: t(0.95, 1) = 6.313752; values 0 and 1: s = 1/sqrt(2)
    interval = stats.t_interval([0.0, 1.0], confidence=0.9)
    assert interval.high - interval.mean == pytest.approx(6.313752 * (1 / math.sqrt(2)) / math.sqrt(2), abs=1e-6)
    # more seeds at the same spread: a narrower interval; no spread: the mean alone
    wide, narrow = stats.t_interval([0.0, 1.0] * 2), stats.t_interval([0.0, 1.0] * 16)
    assert narrow.high - narrow.low < wide.high - wide.low
    assert stats.t_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5, 3)


def test_t_interval_of_one_value_is_unbounded_and_of_none_an_error():
    assert stats.t_interval([0.4]) == (0.4, -math.inf, math.inf, 1)
    with pytest.raises(UserError, match="no values"):
        stats.t_interval([])
    with pytest.raises(UserError, match="confidence=1.5"):
        stats.t_interval([1.0, 2.0], confidence=1.5)


def test_paired_differences_pair_the_seeds():
    differences, interval = stats.paired_differences([0.9, 0.8, 0.85], [0.8, 0.8, 0.75])
    assert differences == pytest.approx([0.1, 0.0, 0.1])
    assert interval == stats.t_interval(differences) and interval.mean == pytest.approx(0.2 / 3)
    # by seed: paired by key whatever the order, returned in seed order
    by_seed, interval = stats.paired_differences({3: 1.0, 1: 0.5}, {1: 0.25, 3: 2.0})
    assert list(by_seed.items()) == [(1, 0.25), (3, -1.0)] and interval.n == 2
    # a paired interval is narrower than the unpaired one when seeds move together
    a, b = [0.80, 0.90, 0.70, 0.85], [0.78, 0.87, 0.69, 0.82]
    _, paired = stats.paired_differences(a, b)
    assert paired.low > 0 and stats.t_interval(a).low < stats.t_interval(b).high


def test_paired_differences_refuse_what_does_not_pair():
    with pytest.raises(UserError, match="3 values against 2"):
        stats.paired_differences([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(UserError, match="seeds 2, 5 have a value on one side only"):
        stats.paired_differences({0: 1.0, 2: 1.0}, {0: 1.0, 5: 1.0})
    with pytest.raises(UserError, match="both sides by seed"):
        stats.paired_differences({0: 1.0}, [1.0])
