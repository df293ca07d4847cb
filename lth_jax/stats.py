"""Statistics over seeds, shared by the reports: intervals of rates and means, and spreads.

:func:`wilson_interval` is the interval of a rate (runs that split, seeds that are
stable); :func:`mean_std` the mean and spread over seeds that the transfer report
plots; :func:`mean_or_none` and :func:`median_or_none` summarise the values a
table has (``None`` where a run has none); :func:`t_interval` and
:func:`paired_differences` are the Student-t intervals of a mean over seeds and
of per-seed differences between two systems or settings.
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from lth_jax.errors import UserError

__all__ = ["wilson_interval", "intervals_overlap", "mean_std", "mean_or_none", "median_or_none", "MeanInterval", "t_interval",
           "paired_differences"]


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
