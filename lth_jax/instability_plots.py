"""Figures of instability analysis (:mod:`lth_jax.instability`): the paper's two kinds, error along
the path per rewind step and barrier against the rewind step per sparsity, and for parallel-task
tickets the barrier against the pruning level beside each seed's split."""

from __future__ import annotations

from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.ticker import MaxNLocator

from lth_jax import plots

__all__ = ["plot_curves", "plot_barriers", "plot_barrier_by_level"]


def _mean_by(rows: Sequence[dict], key: str = "imp") -> dict:
    """The rows of ticket kind ``key`` averaged over seeds, per level and rewind step."""
    groups: dict = {}
    for r in rows:
        if r.get("ticket", "imp") == key:
            groups.setdefault((r["level"], r["rewind_step"]), []).append(r)
    return {k: {"fraction_remaining": g[0]["fraction_remaining"], "barrier": float(np.mean([r["barrier"] for r in g])),
                "error": np.mean([r["curve"]["error"] for r in g], axis=0), "alpha": g[0]["curve"]["alpha"]}
            for k, g in sorted(groups.items())}


def plot_curves(rows: Sequence[dict], title: str = ""):
    """Test error along the path between the two copies (mean over seeds), one panel per level,
    one line per rewind step."""
    means = _mean_by(rows)
    levels = sorted({level for level, _ in means})
    steps = sorted({k for _, k in means})
    colors = plots.seed_colors(len(steps))
    fig = plots.figure((4.2 * min(len(levels), 4), 3.4 * -(-len(levels) // 4)))
    axes = fig.subplots(-(-len(levels) // 4), min(len(levels), 4), squeeze=False).ravel()
    for ax, level in zip(axes, levels):
        for k in steps:
            m = means[(level, k)]
            ax.plot(m["alpha"], 100 * m["error"], color=colors[steps.index(k)], label=f"k={k}")
        ax.set_title(f"level {level}: {100 * means[(level, steps[0])]['fraction_remaining']:.1f}% of weights", fontsize=9)
        ax.set_xlabel("α  (θ = (1−α)·θ₁ + α·θ₂)")
        ax.set_ylabel("test error (%)")
        ax.legend(fontsize=7)
    for ax in axes[len(levels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _level_colors(n: int) -> list:
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(i / max(n - 1, 1) * 0.9) for i in range(n)]


def plot_barriers(rows: Sequence[dict], threshold: float, title: str = ""):
    """Error barrier (mean over seeds) against the rewind step k, one line per level (sparsity);
    random tickets dashed, in their level's color."""
    means, random = _mean_by(rows), _mean_by(rows, "random")
    levels = sorted({level for level, _ in means})
    fig = plots.figure((7.5, 4.0))
    ax = fig.subplots()
    for level, color in zip(levels, _level_colors(len(levels))):
        for kind, style in ((means, "o-"), (random, "s--")):
            mine = [(k, m) for (lv, k), m in kind.items() if lv == level]
            if mine:
                ax.plot([k for k, _ in mine], [100 * m["barrier"] for _, m in mine], style, color=color, markersize=4,
                        label=None if kind is random else f"{100 * mine[0][1]['fraction_remaining']:.1f}% of weights")
    ax.axhline(100 * threshold, color="gray", linestyle=":", label=f"stable below {100 * threshold:g}%")
    if random:
        ax.plot([], [], "s--", color="gray", markersize=4, label="random ticket (dashed)")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(-0.3, 1.5 * max(max(k for _, k in means), 1))
    ax.set_xlabel("rewind step k (iterations)")
    ax.set_ylabel("error barrier (% test error)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


def plot_barrier_by_level(rows: Sequence[dict], split_levels: dict, threshold: float, title: str = ""):
    """Barrier against the pruning level, one panel per rewind step: each seed a line (its random
    tickets dashed), its split level a ring."""
    random = [r for r in rows if r.get("ticket", "imp") == "random"]
    rows = [r for r in rows if r.get("ticket", "imp") == "imp"]
    steps = sorted({r["rewind_step"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    colors = plots.seed_colors(len(seeds))
    fig = plots.figure((4.2 * len(steps), 3.6))
    axes = fig.subplots(1, len(steps), squeeze=False)[0]
    for ax, k in zip(axes, steps):
        for seed, color in zip(seeds, colors):
            mine = sorted((r for r in rows if r["seed"] == seed and r["rewind_step"] == k), key=lambda r: r["level"])
            ax.plot([r["level"] for r in mine], [100 * r["barrier"] for r in mine], ".-", color=color, label=f"seed {seed}")
            chance = sorted((r for r in random if r["seed"] == seed and r["rewind_step"] == k), key=lambda r: r["level"])
            if chance:
                ax.plot([r["level"] for r in chance], [100 * r["barrier"] for r in chance], "--", color=color, alpha=0.6, linewidth=1)
            split = split_levels.get(str(seed))
            at = [r for r in mine if r["level"] == split]
            if at:
                ax.plot([split], [100 * at[0]["barrier"]], "o", markersize=10, markerfacecolor="none", color=color)
        ax.axhline(100 * threshold, color="gray", linestyle=":")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"k = {k}", fontsize=9)
        ax.set_xlabel("pruning level")
        ax.set_ylabel("error barrier (% test error)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{title}   (ring: the seed's split level{'; dashed: its random tickets' if random else ''})")
    fig.tight_layout()
    return fig
