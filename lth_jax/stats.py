"""Statistics over seeds, shared by the reports: intervals of rates and means, and spreads.

:func:`wilson_interval` is the interval of a rate (runs that split, seeds that are
stable); :func:`mean_std` the mean and spread over seeds that the transfer report
plots; :func:`mean_or_none` and :func:`median_or_none` summarise the values a
table has (``None`` where a run has none); :func:`t_interval` and
:func:`paired_differences` are the Student-t intervals of a mean over seeds and
of per-seed differences between two systems or settings. For rates of runs that
share a cluster (seeds trained on one epoch order): :func:`order_spread` (the rate
of each order, their spread and the orders' share of the variance),
:func:`cluster_bootstrap` (an interval of the pooled rate that resamples orders),
:func:`design_effect_interval` (Wilson's interval widened by a design effect) and
:func:`mover_difference` (the interval of a difference of two rates from theirs).
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from lth_jax.errors import UserError

__all__ = ["wilson_interval", "intervals_overlap", "mean_std", "mean_or_none", "median_or_none", "MeanInterval", "t_interval",
           "paired_differences", "OrderSpread", "order_spread", "cluster_bootstrap", "design_effect_interval", "mover_difference"]


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson's score interval of a binomial rate (95% by default); (0, 1) without trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # the rate inside, despite rounding


def intervals_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether the closed intervals ``a`` and ``b`` (each ``(low, high)``) share a point."""
    return a[0] <= b[1] and b[0] <= a[1]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the population standard deviation (0 for one value) of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.mean(values)), float(np.std(values))


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are not ``None``; ``None`` when there are none."""
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def median_or_none(values: Sequence[float | None]) -> float | None:
    """The median of the values that are not ``None``; ``None`` when there are none."""
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


class MeanInterval(NamedTuple):
    """A mean over ``n`` values and its two-sided Student-t interval ``[low, high]``."""

    mean: float
    low: float
    high: float
    n: int


def _t_quantile(probability: float, dof: int) -> float:
    from scipy import stats  # scipy (a dependency of scikit-learn): imported when an interval is computed

    return float(stats.t.ppf(probability, dof))


def t_interval(values: Sequence[float], confidence: float = 0.95) -> MeanInterval:
    """The mean of ``values`` (one per seed) and its Student-t interval at ``confidence``:
    mean ± t(n − 1) × s / √n with the sample standard deviation ``s``. One value has no
    spread to go by: its interval is (−inf, inf)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence={confidence} is outside the open interval (0, 1)")
    if values.size == 0:
        raise UserError("no values: a mean and its interval need at least one")
    mean, n = float(np.mean(values)), int(values.size)
    if n == 1:
        return MeanInterval(mean, -math.inf, math.inf, 1)
    half = _t_quantile(0.5 + confidence / 2, n - 1) * float(np.std(values, ddof=1)) / math.sqrt(n)
    return MeanInterval(mean, mean - half, mean + half, n)


def paired_differences(a: Sequence[float] | Mapping[int, float], b: Sequence[float] | Mapping[int, float],
                       confidence: float = 0.95) -> tuple[list[float] | dict[int, float], MeanInterval]:
    """Per-seed differences ``a − b`` and their :func:`t_interval`. ``a`` and ``b``: values in
    the same seed order (equal lengths), or ``{seed: value}`` of the same seeds; the
    differences come back the same way (a dict in seed order)."""
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise UserError("paired_differences: give both sides by seed ({seed: value}) or both as sequences")
    if isinstance(a, Mapping):
        if set(a) != set(b):
            unpaired = sorted(set(a) ^ set(b))
            raise UserError(f"seeds {', '.join(map(str, unpaired))} have a value on one side only: differences pair the same seeds")
        differences = {seed: float(a[seed]) - float(b[seed]) for seed in sorted(a)}
        return differences, t_interval(list(differences.values()), confidence)
    if len(a) != len(b):
        raise UserError(f"{len(a)} values against {len(b)}: differences pair the values of the same seeds")
    differences = [float(x) - float(y) for x, y in zip(a, b)]
    return differences, t_interval(differences, confidence)


class OrderSpread(NamedTuple):
    """Runs of one setting on several epoch orders, the same seeds (initializations) on each: the split
    count of each order, the pooled rate, the sample standard deviation of the orders' rates, Cochran's Q
    (do the orders' rates differ, paired on the seeds; chi-square with orders − 1 degrees of freedom) and
    its p-value, and ``icc``: the orders' share of the variance of one run. ``None`` where one order
    (or, for ``icc``, one seed) leaves nothing to estimate it from."""

    splits: tuple[int, ...]
    seeds: int
    pooled: float
    between_std: float | None
    cochran_q: float | None
    p_value: float | None
    icc: float | None


def _outcomes(outcomes) -> np.ndarray:
    y = np.asarray(outcomes, dtype=np.float64)
    if y.ndim != 2 or y.size == 0 or not np.isin(y, (0.0, 1.0)).all():
        raise UserError(f"outcomes of shape {y.shape}: give a table of 0/1 (orders × seeds) with at least one run")
    return y


def order_spread(outcomes) -> OrderSpread:
    """The spread of a rate between orders. ``outcomes[o, s]``: 1 where seed ``s`` on order ``o`` split.

    ``icc`` comes from the variance components of the two-way table (orders × seeds, one run a
    cell, as a linear model of the 0/1 outcomes): σ²_order = (MS_order − MS_residual) / seeds,
    σ²_seed = (MS_seed − MS_residual) / orders (each at least 0), σ²_residual = MS_residual, and
    icc = σ²_order / (σ²_order + σ²_seed + σ²_residual); 0 when no run differs from another.
    Runs that share one order then have the design effect 1 + (m − 1)·icc (:func:`design_effect_interval`).
    """
    from scipy import stats  # scipy (a dependency of scikit-learn): imported when a spread is computed

    y = _outcomes(outcomes)
    k, n = y.shape
    rates, pooled = y.mean(axis=1), float(y.mean())
    splits = tuple(int(v) for v in y.sum(axis=1))
    if k < 2:
        return OrderSpread(splits, n, pooled, None, None, None, None)
    per_seed = y.sum(axis=0)
    denominator = k * y.sum() - float((per_seed ** 2).sum())  # 0: every seed the same on every order
    q = (k - 1) * (k * float((y.sum(axis=1) ** 2).sum()) - float(y.sum()) ** 2) / denominator if denominator > 0 else 0.0
    p_value = float(stats.chi2.sf(q, k - 1)) if denominator > 0 else 1.0
    icc = None
    if n > 1:
        residual = y - rates[:, None] - y.mean(axis=0)[None, :] + pooled
        ms_residual = float((residual ** 2).sum()) / ((k - 1) * (n - 1))
        order_var = max(0.0, (n * float(((rates - pooled) ** 2).sum()) / (k - 1) - ms_residual) / n)
        seed_var = max(0.0, (k * float(((y.mean(axis=0) - pooled) ** 2).sum()) / (n - 1) - ms_residual) / k)
        total = order_var + seed_var + ms_residual
        icc = order_var / total if total > 0 else 0.0
    return OrderSpread(splits, n, pooled, float(np.std(rates, ddof=1)), float(q), p_value, icc)


def cluster_bootstrap(outcomes, *, resamples: int = 10_000, seed: int = 0, confidence: float = 0.95,
                      same_seeds: bool = True) -> tuple[float, float]:
    """The percentile interval of the pooled rate of ``outcomes`` (orders × seeds of 0/1): each resample
    draws the orders with replacement and, within them, the seeds with replacement. With ``same_seeds``
    the seeds are the same initializations on every order, so one draw of seeds serves every order (a
    two-way bootstrap: it keeps both the orders' and the initializations' variation); otherwise each
    order draws its own. One order: only the seeds vary. Deterministic for a given ``seed``."""
    y = _outcomes(outcomes)
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence={confidence} is outside the open interval (0, 1)")
    k, n = y.shape
    rng = np.random.default_rng(seed)
    draws = np.arange(resamples)[:, None]
    orders = np.zeros((resamples, k))
    np.add.at(orders, (draws, rng.integers(0, k, size=(resamples, k))), 1.0)
    if same_seeds:
        seeds = np.zeros((resamples, n))
        np.add.at(seeds, (draws, rng.integers(0, n, size=(resamples, n))), 1.0)
        pooled = np.einsum("rk,kn,rn->r", orders, y, seeds) / (k * n)
    else:
        within = y[np.arange(k)[None, :, None], rng.integers(0, n, size=(resamples, k, n))].mean(axis=2)  # each order's own seeds
        pooled = (orders * within).sum(axis=1) / k
    low, high = np.quantile(pooled, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def design_effect_interval(successes: int, trials: int, icc: float, z: float = 1.959964) -> tuple[float, float, float]:
    """Wilson's interval of ``successes`` of ``trials`` runs that share one cluster, widened by the design
    effect deff = 1 + (trials − 1)·icc: the same rate over the effective number of runs trials / deff
    (Kish). Returns ``(low, high, deff)``; icc = 0 gives Wilson's interval."""
    if not 0.0 <= icc <= 1.0:
        raise UserError(f"icc={icc} is outside [0, 1]")
    deff = 1.0 + (trials - 1) * icc if trials > 0 else 1.0
    effective = trials / deff
    low, high = wilson_interval(successes / deff, effective, z) if trials > 0 else (0.0, 1.0)
    return low, high, deff


def mover_difference(a: float, interval_a: tuple[float, float], b: float, interval_b: tuple[float, float]) -> tuple[float, float, float]:
    """``a − b`` and its interval from each rate's own interval (Newcombe's hybrid score method, or MOVER:
    any two independent intervals, e.g. Wilson's, a widened one, a bootstrap's):
    [d − √((a − low_a)² + (high_b − b)²), d + √((high_a − a)² + (b − low_b)²)]. Returns ``(d, low, high)``."""
    d = a - b
    low = d - math.sqrt((a - interval_a[0]) ** 2 + (interval_b[1] - b) ** 2)
    high = d + math.sqrt((interval_a[1] - a) ** 2 + (b - interval_b[0]) ** 2)
    return d, low, high
