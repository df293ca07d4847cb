"""The summary of an instability analysis: per level and rewind step the mean barrier over seeds and
the seeds stable (Wilson 95%), the recommended rewind steps, and the table and line the command prints."""

from __future__ import annotations

import numpy as np

from lth_jax import connectivity
from lth_jax.stats import wilson_interval

__all__ = ["by_level", "format_table", "format_recommendation"]


def by_level(rows: list[dict], steps: list[int], seeds: list[int], threshold: float) -> dict:
    """Per level: per ``k`` the mean barrier and the seeds stable (Wilson 95%); the recommended rewind step."""
    levels = {}
    for level in sorted({r["level"] for r in rows}):  # a parallel-task seed may stop before the last level
        cells = {}
        for k in steps:
            mine = [r for r in rows if r["level"] == level and r["rewind_step"] == k]
            kept = [r for r in mine if not r["diverged"]]  # a diverged copy's barrier means nothing
            stable = sum(r["barrier"] < threshold for r in kept)
            cells[str(k)] = {"mean_barrier": float(np.mean([r["barrier"] for r in kept])) if kept else None, "seeds": len(kept),
                             "stable_seeds": stable, "stable_interval": list(wilson_interval(stable, len(kept))),
                             "diverged_seeds": len(mine) - len(kept)}
        mean = {k: cells[str(k)]["mean_barrier"] for k in steps if cells[str(k)]["mean_barrier"] is not None}
        per_seed = {}
        for s in seeds:
            mine = {r["rewind_step"]: r["barrier"] for r in rows if r["level"] == level and r["seed"] == s and not r["diverged"]}
            if mine:
                per_seed[str(s)] = connectivity.recommended_step(mine, threshold) if len(mine) == len(steps) else None
        every = list(per_seed.values())
        levels[str(level)] = {"fraction_remaining": next(r["fraction_remaining"] for r in rows if r["level"] == level), "by_step": cells,
                              "recommended_rewind_step": connectivity.recommended_step(mean, threshold) if len(mean) == len(steps) else None,
                              "recommended_rewind_step_by_seed": per_seed,
                              "every_seed_stable_step": max(every) if every and None not in every else None}
    return levels


def format_table(summary: dict) -> str:
    """The mean barrier of every level (rows) at every rewind step (columns), in percent of test error,
    with the seeds stable where there are several."""
    steps = summary["rewind_steps"]
    head = f"{'level':>5} {'weights':>8} " + " ".join(f"{'k=' + str(k):>12}" for k in steps)
    lines = [head, "-" * len(head)]
    entries = [(level, entry) for level, entry in summary["levels"].items()]
    entries += [(f"{level}r", entry) for level, entry in summary.get("random_tickets", {}).items()]
    for level, entry in entries:
        cells = []
        for k in steps:
            cell = entry["by_step"][str(k)]
            mark = f" {cell['stable_seeds']}/{cell['seeds']}" if cell["seeds"] > 1 else ("*" if cell["stable_seeds"] else " ")
            barrier = "   n/a" if cell["mean_barrier"] is None else f"{100 * cell['mean_barrier']:7.2f}"
            cells.append(f"{barrier}{mark:>5}" + (f" ({cell['diverged_seeds']} diverged)" if cell.get("diverged_seeds") else ""))
        lines.append(f"{level:>5} {100 * entry['fraction_remaining']:7.1f}% " + " ".join(cells))
    several = len(summary["seeds"]) > 1
    return "\n".join(lines + [f"barrier: test error along the path minus the ends' mean, in %{' (mean over seeds)' if several else ''}; "
                              + (f"n/N: seeds stable (below {100 * summary['threshold']:g}%)" if several else
                                 f"*: stable (below {100 * summary['threshold']:g}%)")
                              + ("; Lr: level L's random ticket" if summary.get("random_tickets") else "")
                              + ("; a diverged copy's barrier is left out of the mean and the counts"
                                 if any(cell.get("diverged_seeds") for _, entry in entries for cell in entry["by_step"].values()) else "")])


def format_recommendation(summary: dict) -> str:
    """The recommended rewind step of the first level analysed, as a line: the smallest step from which
    every later step is stable (by the mean barrier over seeds where there are several), and the
    smallest from which every seed is."""
    level = summary["recommended_for_level"]
    if level is None:
        return "recommended rewind step: none (no seed reached a level asked for)"
    several = len(summary["seeds"]) > 1
    line = (f"recommended rewind step ({'dense' if level == 0 else f'level {level}'}): {summary['recommended_rewind_step']}"
            f"{' (mean barrier over seeds)' if several else ''}")
    return line + (f"; every seed stable from: {summary['every_seed_stable_step']}" if several else "")
