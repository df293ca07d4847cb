"""Paired differences over seeds: does a transferred ticket beat its baselines?

A transferred winning ticket, the target's own ticket and the random ticket of
the same source share a seed's data order and target recipe at each IMP level,
so their accuracies are compared seed by seed: per (target, target optimizer,
source ticket, level), the differences ``transferred − own`` and ``transferred −
random`` over the seeds both sides have, with the mean and its 95% Student-t
interval (t with n − 1 degrees of freedom of the per-seed differences,
:func:`lth_jax.stats.paired_differences`), in accuracy points (percentage points).
A seed on one side only is left out of that pairing.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from lth_jax.overlap import source_label
from lth_jax.rows import group_rows
from lth_jax.sparsity_axes import pruned_label
from lth_jax.stats import paired_differences

__all__ = ["BASELINES", "paired_rows", "paired_table", "signed"]

BASELINES = ("own", "random")  # transferred − the target's own ticket, transferred − the random ticket of the same source
_NUMBERS = ("mean", "low", "high", "n")


def _difference(transferred: dict[int, float], baseline: dict[int, float] | None, prefix: str) -> dict:
    """``{prefix}_mean``, ``_low``, ``_high`` (None without a seed on both sides) and ``_n``."""
    seeds = sorted(set(transferred) & set(baseline or {}))
    if not seeds:
        return {f"{prefix}_{key}": (0 if key == "n" else None) for key in _NUMBERS}
    _, interval = paired_differences({s: transferred[s] for s in seeds}, {s: baseline[s] for s in seeds})
    return {f"{prefix}_{key}": value for key, value in zip(_NUMBERS, interval)}


def paired_rows(rows: Sequence[dict]) -> list[dict]:
    """One row per transferred winning ticket and level: ``target``, ``target_optimizer``,
    ``source``, ``source_optimizer``, ``level``, ``fraction_remaining`` (the transferred
    ticket's mean), then for each baseline ``b`` of :data:`BASELINES` ``vs_b_mean``,
    ``vs_b_low``, ``vs_b_high`` (accuracy points; None where no seed pairs, −inf/inf for
    one seed) and ``vs_b_n`` (the seeds paired). ``own`` is the ``target_own`` ticket
    of the same target, optimizer and level; ``random`` the ``random`` ticket of the
    same source, target and level. Rows are checked as by :func:`lth_jax.rows.aggregate`."""
    groups = group_rows(rows)
    accuracy = {group: {row["seed"]: 100 * float(row["test_accuracy"]) for row in members} for group, members in groups.items()}
    out = []
    for group in sorted(groups):
        source, source_optimizer, target, target_optimizer, ticket, level = group
        if ticket != "winning":
            continue
        baselines = {"own": (target, target_optimizer, target, target_optimizer, "target_own", level),
                     "random": (source, source_optimizer, target, target_optimizer, "random", level)}
        row = {"target": target, "target_optimizer": target_optimizer, "source": source, "source_optimizer": source_optimizer,
               "level": level, "fraction_remaining": float(np.mean([r["fraction_remaining"] for r in groups[group]]))}
        for name in BASELINES:
            row.update(_difference(accuracy[group], accuracy.get(baselines[name]), f"vs_{name}"))
        out.append(row)
    return out


def signed(value: float | None, digits: int = 1) -> str:
    """``1.234`` → ``"+1.2"``; "–" for None, NaN and infinities (no number to show)."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:+.{digits}f}"


def _cell(row: dict, name: str) -> str:
    n = row[f"vs_{name}_n"]
    if n == 0:
        return "– | 0"
    return f"{signed(row[f'vs_{name}_mean'])} [{signed(row[f'vs_{name}_low'])}, {signed(row[f'vs_{name}_high'])}] | {n}"


def paired_table(paired: Sequence[dict], levels: Sequence[int] | None = None) -> str:
    """:func:`paired_rows` as a Markdown table (the rows at ``levels`` only, when given):
    a line per target, optimizer, source ticket and level; for each baseline the mean
    difference [95% t interval] in accuracy points and the number of seeds paired."""
    chosen = [row for row in paired if levels is None or row["level"] in set(levels)]
    if not chosen:
        return "No transferred winning ticket" + (" at these levels" if levels is not None else "") + ": nothing to pair."
    lines = [
        "Test accuracy of the transferred winning ticket minus that of the target's own ticket and of the random ticket "
        "of the same source, at the same IMP level and seed, in accuracy points: the mean over the seeds both have, "
        "[its 95% Student-t interval] (t with n − 1 degrees of freedom of the per-seed differences), n the seeds paired; "
        "an interval needs two seeds (– otherwise).",
        "",
        "| target | source ticket | level | pruned | transferred − own | n | transferred − random | n |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in chosen:
        lines.append(f"| {row['target']} ({row['target_optimizer']}) | {source_label(row)} | {row['level']} "
                     f"| {pruned_label(row['fraction_remaining'])} | {_cell(row, 'own')} | {_cell(row, 'random')} |")
    return "\n".join(lines)
