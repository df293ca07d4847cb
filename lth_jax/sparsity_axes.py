"""Sparsity axes: a log axis in the fraction of weights remaining, labelled in percent
pruned, and curves of a mean with its band over seeds (transfer reports, overlaps,
find_ticket figures). :mod:`lth_jax.plots` exports every name here."""

from __future__ import annotations

from typing import Iterable, Sequence

import matplotlib.ticker as ticker
import numpy as np

__all__ = ["X_MARGIN", "TICK_REACH", "percent_pruned", "pruned_label", "log_ticks", "sparsity_axis", "interval_curve", "mean_std_curve"]

X_MARGIN = 1.08  # room beyond the extreme fractions remaining on a log axis
TICK_REACH = 1.5  # the sparse end of an axis reaches on to a round tick this close beyond the sparsest point


def percent_pruned(fraction_remaining: float) -> str:
    """``0.001`` → ``"99.9%"``: the fraction pruned in percent, without trailing zeros."""
    return np.format_float_positional(round(100 * (1 - fraction_remaining), 4), trim="-") + "%"


def pruned_label(fraction_remaining: float) -> str:
    """:func:`percent_pruned` of the fraction remaining rounded to two significant digits,
    for a level's label: ``0.512`` → ``"49%"``, ``0.8**30`` → ``"99.88%"``."""
    return percent_pruned(float(f"{fraction_remaining:.2g}"))


# (longest span in decades, tick mantissas per decade): fewer ticks on longer axes, so labels never touch
_TICKS_BY_SPAN = ((1.0, (1, 0.8, 0.5, 0.2)), (2.0, (1, 0.5, 0.2)), (3.5, (1, 0.5)), (np.inf, (1,)))


def log_ticks(lowest: float) -> list[float]:
    """Round tick positions for a log axis from 1 down to a decade past ``lowest``."""
    decades = np.log10(1 / lowest)
    mantissas = next(m for span, m in _TICKS_BY_SPAN if decades <= span)
    return [m * 10.0**-e for e in range(int(decades) + 2) for m in mantissas]


def _pruned_ticks(lowest_remaining: float) -> tuple[list[float], float]:
    """Tick positions (fractions remaining) from 1 down to the sparse end of the axis,
    and that end: just past ``lowest_remaining``, or on the next round tick when it
    is near (so that 0.8**30 = 0.0012 remaining ends on the 99.9% tick)."""
    candidates = log_ticks(lowest_remaining)
    beyond = max(t for t in candidates if t < lowest_remaining)
    end = lowest_remaining / X_MARGIN
    if lowest_remaining / beyond <= TICK_REACH:
        end = min(end, beyond)
    return [t for t in candidates if t >= end], end


def sparsity_axis(ax, fractions_remaining: Iterable[float]) -> None:
    """Log scale in the fraction remaining, dense on the left, ticks in percent pruned."""
    ticks, end = _pruned_ticks(min(fractions_remaining))
    ax.set_xscale("log")
    ax.set_xticks(ticks, [percent_pruned(t) for t in ticks], fontsize=9)
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlim(X_MARGIN, end)  # left > right: sparsity grows to the right
    ax.set_xlabel("weights pruned (log scale in the fraction remaining)")


def interval_curve(ax, points: Sequence[dict], *, mean: str, low: str, high: str, scale: float = 1.0,
                   limits: tuple[float, float] | None = None, **style) -> None:
    """Mean against fraction remaining, with a band from ``low`` to ``high`` (keys of the
    points, e.g. a t interval over seeds) in the line's colour, drawn within ``limits``
    (e.g. an accuracy's (0, 1): few seeds give intervals past them); no band where a
    bound is not finite (one seed has no interval)."""
    points = sorted(points, key=lambda p: -p["fraction_remaining"])
    x = np.array([p["fraction_remaining"] for p in points])
    y = scale * np.array([p[mean] for p in points])
    lower, upper = (scale * np.array([p[key] for p in points], dtype=np.float64) for key in (low, high))
    finite = np.isfinite(lower) & np.isfinite(upper)
    if limits is not None:
        lower, upper = np.clip(lower, scale * limits[0], scale * limits[1]), np.clip(upper, scale * limits[0], scale * limits[1])
    (line,) = ax.plot(x, y, marker="o", ms=3, **style)
    if finite.any():
        ax.fill_between(x, np.where(finite, lower, np.nan), np.where(finite, upper, np.nan), where=finite, color=line.get_color(),
                        alpha=0.15, lw=0)


def mean_std_curve(ax, points: Sequence[dict], *, mean: str, std: str, scale: float = 1.0, **style) -> None:
    """Mean against fraction remaining, with a ± std band in the line's colour."""
    bounds = [{**p, "_low": p[mean] - p[std], "_high": p[mean] + p[std]} for p in points]
    interval_curve(ax, bounds, mean=mean, low="_low", high="_high", scale=scale, **style)
