"""Morcos et al.'s claims as measured effects with intervals and verdicts.

A claims study (:mod:`lth_jax.transfer_claims`) trains several transfer studies;
this module turns their rows (:mod:`lth_jax.rows`: one per trained ticket, with
``source``, ``target``, their optimizers, ``ticket``, ``level``, ``seed`` and
``test_accuracy``) into one line per claim: the paper's statement, the measured
effect with its 95% interval and a verdict.

Every effect is a per-seed quantity (test accuracy in points), summarised by
the Student-t 95% interval of its mean over seeds (:func:`lth_jax.stats.t_interval`):

- ``difference``: ticket A minus ticket B of the same seed, averaged over the
  levels of a sparsity band (by default every level from 90% pruned to the
  deepest transferred level), seeds present on both sides only;
- ``drop``: accuracy at one level minus accuracy at a deeper one, per seed, of
  curve A minus that of curve B (how much faster A falls off).

Verdicts (``better``: the effect should be > 0; ``not_worse``: it should be above
``-margin``, a non-inferiority reading of "as good as"):

- **holds** when the whole interval says so (low > 0, or low > −margin);
- **does not hold** when the whole interval says the opposite (high < 0, or high < −margin);
- **cannot tell at this scale** otherwise.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from lth_jax.errors import UserError
from lth_jax.stats import MeanInterval, t_interval

__all__ = ["Curve", "Claim", "ClaimResult", "evaluate_claims", "claims_table", "claims_rows", "verdict", "VERDICTS"]

VERDICTS = ("holds", "does not hold", "cannot tell at this scale")
EXPECTATIONS = ("better", "not_worse")
MEASURES = ("difference", "drop")


@dataclasses.dataclass(frozen=True)
class Curve:
    """The accuracy-against-level curve of one kind of ticket on one target:
    rows whose fields equal these (``None``: any)."""

    target: str
    ticket: str  # winning, random, target_own, dense
    source: str | None = None
    source_optimizer: str | None = None
    target_optimizer: str | None = None
    model: str | None = None

    @classmethod
    def parse(cls, value) -> "Curve":
        if isinstance(value, Curve):
            return value
        if hasattr(value, "items") and not isinstance(value, Mapping):  # a ConfigDict
            value = dict(value.items())
        if not isinstance(value, Mapping):
            raise UserError(f"a curve is a mapping of row fields (target, ticket, source, ...), not {value!r}")
        unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise UserError(f"curve {dict(value)} has unknown fields {', '.join(unknown)}")
        return cls(**dict(value))

    def matches(self, row: dict) -> bool:
        return all(getattr(self, k) is None or row.get(k) == getattr(self, k) for k in (f.name for f in dataclasses.fields(self)))

    def label(self) -> str:
        kind = {"winning": "transferred", "target_own": "own", "random": "random", "dense": "dense"}.get(self.ticket, self.ticket)
        source = f" from {self.source}" if self.source and self.ticket in ("winning", "random") else ""
        optimizer = f" ({self.source_optimizer}→{self.target_optimizer})" if self.source_optimizer and self.target_optimizer else ""
        model = f" [{self.model}]" if self.model else ""
        return f"{kind}{source}{optimizer} on {self.target}{model}"

    def by_seed_level(self, rows: Sequence[dict]) -> dict[int, dict[int, float]]:
        """``{seed: {level: test accuracy in points}}`` of the matching rows."""
        out: dict[int, dict[int, float]] = {}
        for row in rows:
            if self.matches(row):
                levels = out.setdefault(int(row["seed"]), {})
                if int(row["level"]) in levels:
                    raise UserError(f"{self.label()}: seed {row['seed']} has two rows at level {row['level']}")
                levels[int(row["level"])] = 100.0 * float(row["test_accuracy"])
        return out


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim: what the paper says, and how it is measured here.

    ``measure="difference"``: curve ``a`` − curve ``b`` per seed, averaged over the levels
    in ``levels`` (both curves must have every one of them). ``measure="drop"``:
    (a[levels[0]] − a[levels[-1]]) − (b[levels[0]] − b[levels[-1]]) per seed.
    """

    id: str
    paper: str  # the paper's statement
    a: Curve
    b: Curve
    levels: tuple[int, ...]
    measure: str = "difference"
    expect: str = "better"
    margin: float = 0.0  # accuracy points, for expect="not_worse"
    effect: str = ""  # how the effect reads, e.g. "transferred − random"

    def __post_init__(self):
        if self.measure not in MEASURES:
            raise UserError(f"claim {self.id}: measure={self.measure!r} is not one of {', '.join(MEASURES)}")
        if self.expect not in EXPECTATIONS:
            raise UserError(f"claim {self.id}: expect={self.expect!r} is not one of {', '.join(EXPECTATIONS)}")
        if not self.levels or (self.measure == "drop" and len(self.levels) < 2):
            raise UserError(f"claim {self.id}: levels={list(self.levels)} (a drop needs two levels, a difference at least one)")
        if self.margin < 0:
            raise UserError(f"claim {self.id}: margin={self.margin} is negative")

    @classmethod
    def from_dict(cls, d: Mapping) -> "Claim":
        d = dict(d)
        d["a"], d["b"] = Curve.parse(d["a"]), Curve.parse(d["b"])
        d["levels"] = tuple(int(level) for level in d["levels"])
        return cls(**d)

    def per_seed(self, rows: Sequence[dict]) -> dict[int, float]:
        """The effect of every seed that both curves have at every level the claim reads."""
        a, b = self.a.by_seed_level(rows), self.b.by_seed_level(rows)
        out = {}
        for seed in sorted(set(a) & set(b)):
            if not all(level in a[seed] and level in b[seed] for level in self.levels):
                continue
            if self.measure == "difference":
                out[seed] = float(np.mean([a[seed][level] - b[seed][level] for level in self.levels]))
            else:
                first, last = self.levels[0], self.levels[-1]
                out[seed] = (a[seed][first] - a[seed][last]) - (b[seed][first] - b[seed][last])
        return out


@dataclasses.dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    interval: MeanInterval | None  # None: no seed has both curves at the levels read
    per_seed: dict[int, float]
    verdict: str
    fraction_pruned: tuple[float, float] | None  # the sparsity band read (first and last level)


def verdict(interval: MeanInterval | None, expect: str, margin: float = 0.0) -> str:
    """The verdict of an effect's interval (see the module's docstring)."""
    if interval is None or interval.n < 2:
        return VERDICTS[2]
    threshold = 0.0 if expect == "better" else -margin
    if interval.low > threshold:
        return VERDICTS[0]
    if interval.high < threshold:
        return VERDICTS[1]
    return VERDICTS[2]


def _band(rows: Sequence[dict], claim: Claim) -> tuple[float, float] | None:
    remaining = {}
    for row in rows:
        if claim.a.matches(row) and int(row["level"]) in claim.levels:
            remaining.setdefault(int(row["level"]), float(row["fraction_remaining"]))
    if not remaining:
        return None
    return 1 - remaining[min(remaining)], 1 - remaining[max(remaining)]


def evaluate_claims(rows: Sequence[dict], claims: Sequence[Claim | Mapping]) -> list[ClaimResult]:
    """Each claim measured on ``rows``: its per-seed effects, their t interval and the verdict."""
    results = []
    for claim in claims:
        claim = claim if isinstance(claim, Claim) else Claim.from_dict(claim)
        per_seed = claim.per_seed(rows)
        interval = t_interval(list(per_seed.values())) if per_seed else None
        results.append(ClaimResult(claim, interval, per_seed, verdict(interval, claim.expect, claim.margin), _band(rows, claim)))
    return results


def _effect(result: ClaimResult) -> str:
    interval = result.interval
    if interval is None:
        return "no seed has both curves"
    if interval.n < 2:
        return f"{interval.mean:+.2f} (one seed: no interval)"
    return f"{interval.mean:+.2f} [{interval.low:+.2f}, {interval.high:+.2f}]"


def _reading(result: ClaimResult) -> str:
    claim = result.claim
    band = "no rows" if result.fraction_pruned is None else f"{100 * result.fraction_pruned[0]:.1f}–{100 * result.fraction_pruned[1]:.1f}% pruned"
    what = claim.effect or f"{claim.a.label()} − {claim.b.label()}"
    if claim.measure == "drop":
        what = f"drop {what} ({band})"
    else:
        what = f"{what}, mean over levels {claim.levels[0]}–{claim.levels[-1]} ({band})" if len(claim.levels) > 1 else f"{what} ({band})"
    rule = "> 0" if claim.expect == "better" else f"> −{claim.margin:g}"
    return f"{what}; holds if {rule}"


def claims_rows(results: Sequence[ClaimResult]) -> list[dict]:
    """The claims table as rows (for CSV)."""
    out = []
    for r in results:
        i = r.interval
        out.append({"claim": r.claim.id, "paper": r.claim.paper, "measured": _reading(r), "effect_mean": None if i is None else i.mean,
                    "effect_low": None if i is None else i.low, "effect_high": None if i is None else i.high,
                    "seeds": 0 if i is None else i.n, "verdict": r.verdict})
    return out


def claims_table(results: Sequence[ClaimResult]) -> str:
    """Markdown: claim, the paper's statement, what is measured, the effect (accuracy points,
    mean and Student-t 95% interval over seeds), seeds, verdict."""
    lines = ["| claim | the paper | measured here | effect (points, 95% t interval) | seeds | verdict |", "|---|---|---|---|---|---|"]
    for r in results:
        n = 0 if r.interval is None else r.interval.n
        lines.append(f"| {r.claim.id} | {r.claim.paper} | {_reading(r)} | {_effect(r)} | {n} | **{r.verdict}** |")
    return "\n".join(lines)
