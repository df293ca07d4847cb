"""The report of a ticket-transfer study (Morcos et al. 2019).

A transfer workdir holds ``metrics.jsonl``: one row per finished training of a
ticket on a *target* (dataset, optimizer), with the *source* the ticket came
from, the kind of ticket (``winning``, ``random``, ``target_own``, ``dense``),
its IMP level, the seed and the test accuracy. From the rows of one or more
workdirs this module draws what the paper shows:

- :func:`plot_target`: per target, test accuracy against the fraction of weights
  pruned, one curve per source ticket, the target's own ticket, random tickets
  and the dense network, mean ± std over seeds;
- :func:`transfer_table`: the same numbers at a few chosen sparsities, as Markdown;
- the mask overlaps of :mod:`lth_jax.overlap`: how much the masks of winning
  tickets from different sources agree (IoU of the kept weights), against what
  two independent random masks would share;
- :func:`write_report`: all of it into one directory with ``report.md``.

Sparsity axes are log-scale in the fraction *remaining* (IMP removes 20% of
what remains per level, so levels are evenly spaced), inverted so that
sparsity grows to the right, and labelled in percent *pruned*, as in the paper.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Sequence

import matplotlib
from etils import epath
from matplotlib.figure import Figure

from lth_jax import plots
from lth_jax.errors import UserError
from lth_jax.overlap import overlap_rows, overlap_table, plot_overlaps, source_label, ticket_overlaps
from lth_jax.plots import mean_std_curve, percent_pruned, sparsity_axis
from lth_jax.results import write_csv
from lth_jax.rows import aggregate, load_rows, workdir_list

__all__ = [
    "DEFAULT_SPARSITIES",
    "SPARSITY_TOLERANCE",
    "source_label",
    "percent_pruned",
    "plot_target",
    "transfer_table",
    "transfer_table_rows",
    "write_report",
]

DEFAULT_SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.99)
SPARSITY_TOLERANCE = 0.25  # a level stands for a sparsity when |Δ remaining| / remaining is below this
OWN_COLOR = "black"


def _targets(summary: Sequence[dict]) -> list[tuple[str, str]]:
    return sorted({(row["target"], row["target_optimizer"]) for row in summary})


# --------------------------------------------------------------------------- accuracy figure


def _source_colors(summary: Sequence[dict]) -> dict[tuple[str, str], Any]:
    """A tab10 colour per (source, optimizer) of the whole study, so a source keeps
    its colour in every target's figure."""
    sources = sorted({(row["source"], row["source_optimizer"]) for row in summary if row["ticket"] in ("winning", "random")})
    cmap = matplotlib.colormaps["tab10"]
    return {source: cmap(i % 10) for i, source in enumerate(sources)}


_KIND_ORDER = {"winning": 0, "target_own": 1, "random": 2}
_CURVE_STYLES = {"winning": {"lw": 1.5}, "target_own": {"lw": 3, "zorder": 3}, "random": {"ls": "--", "lw": 1.2}}


def _by_ticket(summary: Sequence[dict]) -> list[tuple[tuple[str, str, str], list[dict]]]:
    """The level curves of one target: ``((kind, source, source_optimizer), rows)`` with
    source tickets first, then the target's own, then random tickets (legend order)."""
    curves: dict[tuple[str, str, str], list[dict]] = {}
    for row in summary:
        if row["ticket"] in _KIND_ORDER:
            curves.setdefault((row["ticket"], row["source"], row["source_optimizer"]), []).append(row)
    return sorted(curves.items(), key=lambda item: (_KIND_ORDER[item[0][0]], item[0]))


def _pick_target(summary: Sequence[dict], target: str, target_optimizer: str | None) -> str:
    """The target optimizer to plot; an unknown target or optimizer is a ValueError."""
    optimizers = sorted({row["target_optimizer"] for row in summary if row["target"] == target})
    if not optimizers:
        targets = sorted({row["target"] for row in summary})
        raise UserError(f"no rows for target {target!r}; targets: {', '.join(targets)}")
    if target_optimizer is None:
        if len(optimizers) > 1:
            raise UserError(f"target {target!r} was trained with several optimizers ({', '.join(optimizers)}): pass target_optimizer")
        return optimizers[0]
    if target_optimizer not in optimizers:
        raise UserError(f"no rows for target {target!r} with optimizer {target_optimizer!r}; its optimizers: {', '.join(optimizers)}")
    return target_optimizer


def plot_target(rows: Sequence[dict], target: str, target_optimizer: str | None = None) -> Figure:
    """Test accuracy on ``target`` against the fraction of weights pruned (the paper's
    per-target figure): a solid curve per source ticket, the target's own ticket
    thick black, random tickets dashed in their source's colour, the dense network
    a dotted line; mean ± std over seeds. ``target_optimizer`` may be left out when
    the target was trained with one optimizer only."""
    summary = aggregate(rows)
    target_optimizer = _pick_target(summary, target, target_optimizer)
    colors = _source_colors(summary)
    own = (target, target_optimizer)
    mine = [row for row in summary if (row["target"], row["target_optimizer"]) == own]
    fig = plots.figure((8, 4.5))
    ax = fig.subplots()
    accuracy = {"mean": "test_accuracy_mean", "std": "test_accuracy_std", "scale": 100.0}
    for (kind, source, optimizer), points in _by_ticket(mine):
        color = OWN_COLOR if kind == "target_own" or (source, optimizer) == own else colors[(source, optimizer)]
        label = {"winning": f"{source} ({optimizer})", "target_own": f"{target} (own)", "random": f"random, {source} ({optimizer})"}[kind]
        mean_std_curve(ax, points, **accuracy, color=color, label=label, **_CURVE_STYLES[kind])
    for dense in (row for row in mine if row["ticket"] == "dense"):
        mean, std = 100 * dense["test_accuracy_mean"], 100 * dense["test_accuracy_std"]
        ax.axhline(mean, color="grey", ls=":", lw=1.5, label="dense")
        ax.axhspan(mean - std, mean + std, color="grey", alpha=0.12, lw=0)
    sparsity_axis(ax, [row["fraction_remaining"] for row in mine])
    seeds = sorted({seed for row in mine for seed in row["seeds"]})
    ax.set(ylabel="test accuracy (%)", title=f"Tickets trained on {target} with {target_optimizer} (mean ± std over {len(seeds)} seed{'s' if len(seeds) != 1 else ''})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- transfer table


def _check_sparsities(sparsities: Sequence[float]) -> list[float]:
    sparsities = [float(s) for s in sparsities]
    if not sparsities:
        raise UserError("no sparsities asked for")
    for sparsity in sparsities:
        if not 0 <= sparsity < 1:
            raise UserError(f"sparsity {sparsity} is not a fraction pruned in [0, 1)")
    return sparsities


def _nearest_level(points: Sequence[dict], sparsity: float, tolerance: float) -> dict | None:
    """The row whose fraction remaining is nearest ``1 - sparsity``, if it is within
    ``tolerance`` of it (relative); else ``None``."""
    wanted = 1 - sparsity
    best = min(points, key=lambda p: (abs(p["fraction_remaining"] - wanted), p["level"]), default=None)
    if best is None or abs(best["fraction_remaining"] - wanted) > tolerance * wanted:
        return None
    return best


def _cell(points: Sequence[dict], sparsity: float, tolerance: float) -> str:
    row = _nearest_level(points, sparsity, tolerance)
    if row is None:
        return "–"
    return f"{100 * row['test_accuracy_mean']:.1f} ± {100 * row['test_accuracy_std']:.1f}"


def _table_label(row: dict) -> str:
    if row["ticket"] == "target_own":
        return "target's own"
    if row["ticket"] == "random":
        return f"random ({source_label(row)})"
    return source_label(row)


def _table_curves(summary: Sequence[dict]) -> list[tuple[str, dict[str, list[dict]]]]:
    """``(label, {target: levels})`` per ticket of a table, in table order."""
    curves: dict[tuple[int, str], dict[str, list[dict]]] = {}
    for row in summary:
        if row["ticket"] in _KIND_ORDER:
            label = (_KIND_ORDER[row["ticket"]], _table_label(row))
            curves.setdefault(label, {}).setdefault(row["target"], []).append(row)
    return [(label, by_target) for (_, label), by_target in sorted(curves.items())]


def _optimizer_table(summary: Sequence[dict], optimizer: str, sparsities: Sequence[float], tolerance: float) -> str:
    targets = sorted({row["target"] for row in summary})
    header = ["ticket"] + [f"{target} {percent_pruned(1 - s)}" for target in targets for s in sparsities]
    lines = [
        f"Trained on the target with **{optimizer}**: test accuracy (%), mean ± std over seeds, "
        "at the level nearest each fraction pruned (– where no level is near).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * len(header)) + "|",
    ]
    for label, by_target in _table_curves(summary):
        cells = [_cell(by_target.get(target, []), s, tolerance) for target in targets for s in sparsities]
        lines.append("| " + " | ".join([label] + cells) + " |")
    return "\n".join(lines)


def transfer_table(rows: Sequence[dict], sparsities: Sequence[float] = DEFAULT_SPARSITIES, tolerance: float = SPARSITY_TOLERANCE) -> str:
    """Markdown tables, one per target optimizer: a row per source ticket, the
    target's own ticket and each random ticket; a column per target and sparsity
    (fraction pruned); the cell is the mean ± std test accuracy in percent at the
    level whose fraction remaining is nearest ``1 - sparsity``, or "–" when that
    level is more than ``tolerance`` (relative) away."""
    sparsities = _check_sparsities(sparsities)
    summary = aggregate(rows)
    optimizers = sorted({row["target_optimizer"] for row in summary})
    return "\n\n".join(
        _optimizer_table([row for row in summary if row["target_optimizer"] == optimizer], optimizer, sparsities, tolerance)
        for optimizer in optimizers
    )


def transfer_table_rows(rows: Sequence[dict], sparsities: Sequence[float] = DEFAULT_SPARSITIES,
                        tolerance: float = SPARSITY_TOLERANCE) -> list[dict]:
    """The cells of :func:`transfer_table` as rows (for CSV): ``target_optimizer``,
    ``ticket``, ``target``, ``fraction_pruned``, and the nearest level's ``level``,
    ``fraction_remaining``, ``test_accuracy_mean`` and ``test_accuracy_std`` (empty
    where no level is near)."""
    sparsities = _check_sparsities(sparsities)
    summary = aggregate(rows)
    out = []
    for optimizer in sorted({row["target_optimizer"] for row in summary}):
        mine = [row for row in summary if row["target_optimizer"] == optimizer]
        for label, by_target in _table_curves(mine):
            for target in sorted({row["target"] for row in mine}):
                for sparsity in sparsities:
                    near = _nearest_level(by_target.get(target, []), sparsity, tolerance) or {}
                    out.append({"target_optimizer": optimizer, "ticket": label, "target": target, "fraction_pruned": sparsity,
                                **{k: near.get(k) for k in ("level", "fraction_remaining", "test_accuracy_mean", "test_accuracy_std")}})
    return out


# --------------------------------------------------------------------------- report


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def write_report(workdirs: str | os.PathLike | Iterable[str | os.PathLike], out, sparsities: Sequence[float] = DEFAULT_SPARSITIES) -> epath.Path:
    """Everything about a transfer study in ``out``: ``accuracy_<target>_<optimizer>.png``
    per target, ``overlap.png`` when winning tickets can be compared, and
    ``report.md`` (the workdirs, every figure, the transfer table and the overlap
    table). Returns the path of ``report.md``."""
    workdirs = workdir_list(workdirs)
    rows = load_rows(workdirs)
    table = transfer_table(rows, sparsities)  # what can fail on bad input, before anything is written
    overlaps = ticket_overlaps(rows)
    summary = aggregate(rows)
    out = epath.Path(out)
    lines = [
        "# Ticket transfer report",
        "",
        "Workdirs: " + ", ".join(f"`{workdir}`" for workdir in workdirs) + ".",
        "Model: " + ", ".join(sorted({row["model"] for row in rows})) + ".",
        "",
    ]
    lines += [
        "## Test accuracy against the fraction of weights pruned",
        "",
        "One figure per target: a solid curve per source ticket, the target's own ticket thick black, "
        "random tickets dashed in the colour of their source, the dense network dotted; mean ± std over seeds.",
        "",
    ]
    for target, optimizer in _targets(summary):
        figure = plots.save(plot_target(rows, target, optimizer), out / _file_name(f"accuracy_{target}_{optimizer}.png"))
        lines += [f"**{target}**, trained with {optimizer}:", "", f"![accuracy on {target} with {optimizer}]({figure.name})", ""]
    write_csv(out / "transfer_table.csv", transfer_table_rows(rows, sparsities))
    lines += ["## Transfer table", "", table, "", "(also in `transfer_table.csv`)", "", "## Mask overlap of winning tickets", ""]
    if overlaps:
        figure = plots.save(plot_overlaps(overlaps), out / "overlap.png")
        write_csv(out / "overlap.csv", overlap_rows(overlaps))
        lines += [
            "IoU of the kept weights of two winning tickets at the same level and seed, over their prunable layers "
            "of equal shape; chance: the IoU d / (2 - d) of two independent random masks of density d.",
            "",
            f"![mask overlap]({figure.name})",
            "",
            overlap_table(overlaps),
            "",
            "(also in `overlap.csv`)",
        ]
    else:
        lines.append("No two winning tickets share a level and seed: nothing to compare.")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
