"""Pruning trajectories, the pruning plan of an IMP run, and the thesis's network extension.

Notation: ``T0`` prunable weights, ``p`` the rate per level, ``L`` levels, ``T_L``
the weights left after ``L`` levels. The correct relations are

    T_l = T0 · (1 − p)^l            (each entry rounded to the nearest integer)
    p   = 1 − (T_L / T0)^(1/L)
    L   = ceil((log T_L − log T0) / log(1 − p))

(The seed summary prints ``T0(1−p)^{−l}`` and ``1 − (T0/T_L)^{1/l}``: both typos.)
Rounding uses Python's ``round`` (ties to even), as the thesis code does.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Sequence

from lth_jax.errors import UserError

__all__ = [
    "PruningPlan",
    "trajectory",
    "rate_for_target",
    "levels_for_target",
    "weight_count",
    "extension_shape",
    "extension_trajectory",
]

# Tolerance for float noise in log ratios, so that e.g. T0=1000, T_L=512, p=0.2
# gives exactly 3 levels instead of ceil(3.0000000000000004) = 4.
_EPS = 1e-9


def _check_int(name: str, value, minimum: int) -> int:
    integral = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral:
        raise UserError(f"{name}={value!r} is not an integer")
    value = int(value)
    if value < minimum:
        raise UserError(f"{name}={value} must be >= {minimum}")
    return value


def _check_rate(rate) -> float:
    rate = float(rate)
    if not 0.0 < rate < 1.0:
        raise UserError(f"rate={rate!r} is outside the open interval (0, 1)")
    return rate


def _check_target(total: int, target) -> int:
    target = _check_int("target", target, 0)
    if target > total:
        raise UserError(f"target={target} is above the total of {total} prunable weights")
    return target


def rate_for_target(total: int, target: int, levels: int) -> float:
    """The rate ``p = 1 − (target / total)^(1 / levels)`` that reaches ``target`` in ``levels`` levels."""
    total = _check_int("total", total, 1)
    target = _check_target(total, target)
    levels = _check_int("levels", levels, 1)
    return 1.0 - (target / total) ** (1.0 / levels)


def levels_for_target(total: int, target: int, rate: float) -> int:
    """The fewest levels at rate ``p`` after which at most ``target`` weights remain:
    ``ceil((log target − log total) / log(1 − p))``."""
    total = _check_int("total", total, 1)
    target = _check_target(total, target)
    rate = _check_rate(rate)
    if target == 0:
        raise UserError("target=0 cannot be reached by pruning a fraction per level; give levels instead")
    return max(0, math.ceil((math.log(target) - math.log(total)) / math.log(1.0 - rate) - _EPS))


def trajectory(total: int, *, rate: float | None = None, levels: int | None = None, target: int | None = None) -> list[int]:
    """Weights remaining after each level, ``[T0, T1, ..., T_L]``.

    Give exactly two of ``rate``, ``levels`` and ``target``:

    - ``rate`` and ``levels``: ``T_l = round(T0 (1 − p)^l)``.
    - ``target`` and ``levels``: ``p = rate_for_target(...)``; the last entry is
      exactly ``target``.
    - ``rate`` and ``target``: ``L = levels_for_target(...)`` levels at rate ``p``;
      the last entry is clamped to ``target`` so the run ends exactly there.

    >>> trajectory(1000, levels=6, target=200)
    [1000, 765, 585, 447, 342, 262, 200]
    >>> trajectory(1000, rate=0.2, levels=6)
    [1000, 800, 640, 512, 410, 328, 262]
    """
    total = _check_int("total", total, 1)
    given = {k: v for k, v in (("rate", rate), ("levels", levels), ("target", target)) if v is not None}
    if len(given) != 2:
        raise UserError(f"give exactly two of rate, levels, target (got {sorted(given) or 'none'})")
    if rate is not None:
        rate = _check_rate(rate)
    if levels is not None:
        levels = _check_int("levels", levels, 0)
    if target is not None:
        target = _check_target(total, target)

    if target is not None and levels is not None:
        if levels == 0:
            if target != total:
                raise UserError(f"levels=0 cannot reach target={target} from {total} weights")
            return [total]
        rate = rate_for_target(total, target, levels)
        counts = [int(round(total * (1.0 - rate) ** level)) for level in range(levels)] + [target]
        idle = next((i for i in range(1, len(counts)) if counts[i] == counts[i - 1]), None)
        if idle is not None:
            raise UserError(f"levels={levels} is too many to go from {total} to target={target} weights: level {idle} would "
                            f"prune nothing (at most {total - target} levels, one weight each)")
        return counts
    if target is not None:  # rate and target
        levels = levels_for_target(total, target, rate)
        counts = [int(round(total * (1.0 - rate) ** level)) for level in range(levels + 1)]
        counts[-1] = target
        return counts
    return [int(round(total * (1.0 - rate) ** level)) for level in range(levels + 1)]


# --------------------------------------------------------------------------- extension


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(shape)
    if len(shape) < 3:
        raise UserError(f"shape={shape} needs an input size, at least one hidden width and an output size")
    for size in shape:
        _check_int("layer size", size, 1)
    hidden = shape[1:-1]
    if len(set(hidden)) != 1:
        raise UserError(f"shape={shape}: the network extension needs equal hidden widths, got {hidden}")
    return tuple(int(s) for s in shape)


def weight_count(shape: Sequence[int]) -> int:
    """Weights (no biases) of a dense MLP of layer sizes ``shape``: ``sum(a·b)`` over consecutive layers."""
    shape = tuple(int(s) for s in shape)
    return sum(a * b for a, b in zip(shape[:-1], shape[1:]))


def extension_shape(base_shape: Sequence[int], level: int, rate: float = 0.32) -> tuple[int, ...]:
    """The base MLP widened so that it holds about ``N / (1 − p)^level`` weights.

    With ``n`` hidden layers of width ``h``, ``N(h) = h·d_in + (n−1)·h² + h·d_out``;
    the width solving ``N(h) = N / (1 − p)^level`` (linear for one hidden layer,
    the positive root of the quadratic otherwise) is rounded to the nearest
    integer.

    >>> extension_shape((4, 8, 8, 2), 1)
    (4, 10, 10, 2)
    >>> extension_shape((4, 20, 2), 1)
    (4, 29, 2)
    """
    shape = _check_shape(base_shape)
    level = _check_int("level", level, 0)
    rate = _check_rate(rate)
    if level == 0:
        return shape
    d_in, d_out, n_hidden = shape[0], shape[-1], len(shape) - 2
    kept = (1.0 - rate) ** level
    if kept < 1e-100:  # (and 0.0 after underflow): far beyond any network that can be built
        raise UserError(f"extension_level={level} asks for {weight_count(shape)} / {1.0 - rate:g}^{level} weights, more than any machine holds")
    wanted = weight_count(shape) / kept
    a, b = n_hidden - 1, d_in + d_out
    width = wanted / b if a == 0 else (-b + math.sqrt(b * b + 4 * a * wanted)) / (2 * a)
    width = max(1, int(round(width)))
    return (d_in,) + (width,) * n_hidden + (d_out,)


def extension_trajectory(base_shape: Sequence[int], level: int, rate: float = 0.32) -> list[int]:
    """Counts ``[P_E, P_{E−1}, ..., P_1, N]`` for a run at extension level ``E``:
    after ``j`` prunings the network has exactly the weight count of extension
    shape ``E − j``; it is trained ``E + 1`` times."""
    level = _check_int("level", level, 0)
    return [weight_count(extension_shape(base_shape, e, rate)) for e in range(level, -1, -1)]


SCOPES = ("global", "layerwise")


@dataclasses.dataclass(frozen=True)
class PruningPlan:
    """How many weights each level keeps.

    Give two of ``rate``, ``levels``, ``target`` (see :func:`lth_jax.trajectory.trajectory`),
    or ``counts``: an explicit trajectory ``[T0, T1, ..., T_L]`` of prunable weights
    remaining (``T0`` must be the model's prunable total), e.g. the thesis's
    network extension. ``scope="global"`` ranks all prunable weights together and
    follows the trajectory exactly; ``"layerwise"`` removes the same fraction
    from every layer (counts then follow per-layer rounding). ``exclude`` holds
    regular expressions of prunable paths to keep dense (e.g. ``"^output/"``).
    """

    rate: float | None = None
    levels: int | None = None
    target: int | None = None
    counts: tuple[int, ...] | None = None
    scope: str = "global"
    exclude: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "exclude", tuple([self.exclude] if isinstance(self.exclude, str) else self.exclude))
        if self.scope not in SCOPES:
            raise UserError(f"scope={self.scope!r} is not one of {', '.join(SCOPES)}")
        if self.counts is not None:
            counts = tuple(int(c) for c in self.counts)
            object.__setattr__(self, "counts", counts)
            if any(v is not None for v in (self.rate, self.levels, self.target)):
                raise UserError("give either counts or two of rate, levels, target, not both")
            if not counts or min(counts) < 0 or any(b > a for a, b in zip(counts, counts[1:])):
                raise UserError(f"counts={list(counts)} must be non-negative and non-increasing")
            if self.scope == "layerwise":
                raise UserError("an explicit counts trajectory needs scope='global' (layerwise pruning prunes fractions)")
        elif self.levels is not None and self.levels < 0:
            raise UserError(f"levels={self.levels} is negative")

    def trajectory(self, total: int) -> list[int]:
        """Prunable weights remaining after each level, starting from ``total``."""
        if self.counts is not None:
            if self.counts[0] != total:
                raise UserError(f"counts start at {self.counts[0]} but the model has {total} prunable weights")
            return list(self.counts)
        return trajectory(total, rate=self.rate, levels=self.levels, target=self.target)

    def layerwise_fraction(self, total: int) -> float:
        """The per-layer fraction pruned at each level in layerwise scope."""
        if self.rate is not None:
            return float(self.rate)
        return rate_for_target(total, self.target, self.levels)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
