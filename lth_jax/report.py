"""The report of a ticket-transfer study (Morcos et al. 2019).

A transfer workdir holds ``metrics.jsonl``: one row per finished training of a
ticket on a *target* (dataset, optimizer), with the *source* the ticket came
from, the kind of ticket (``winning``, ``random``, ``target_own``, ``dense``),
its IMP level, the seed and the test accuracy. From the rows of one or more
workdirs this module draws what the paper shows:

- :func:`plot_target`: per target, test accuracy against the fraction of weights
  pruned, one curve per source ticket, the target's own ticket, random tickets
  and the dense network, the mean and its 95% Student-t interval over seeds;
- :func:`transfer_table`: the same numbers at chosen IMP levels, as Markdown (a
  cell is the mean [95% t interval] of that exact level; levels can also be asked
  by sparsity, :func:`nearest_levels`);
- :func:`lth_jax.paired.paired_rows`: per seed, the transferred ticket against the
  target's own ticket and the random ticket of the same level, with the t interval
  of the mean difference;
- the mask overlaps of :mod:`lth_jax.overlap`: how much the masks of winning
  tickets from different sources agree (IoU of the kept weights), against what
  two independent random masks would share;
- :func:`write_report`: all of it into one directory with ``report.md``.

Sparsity axes are log-scale in the fraction *remaining* (IMP removes 20% of
what remains per level, so levels are evenly spaced), inverted so that
sparsity grows to the right, and labelled in percent *pruned*, as in the paper.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Iterable, Sequence

import matplotlib
import numpy as np
from etils import epath
from matplotlib.figure import Figure

from lth_jax import plots
from lth_jax.errors import UserError
from lth_jax.overlap import overlap_rows, overlap_table, plot_overlaps, source_label, ticket_overlaps
from lth_jax.paired import paired_rows, paired_table
from lth_jax.results import write_csv
from lth_jax.rows import aggregate, load_rows, workdir_list
from lth_jax.sparsity_axes import interval_curve, percent_pruned, pruned_label, sparsity_axis

__all__ = [
    "DEFAULT_SPARSITIES",
    "source_label",
    "percent_pruned",
    "plot_target",
    "nearest_levels",
    "transfer_table",
    "transfer_table_rows",
    "paired_rows",
    "paired_table",
    "write_report",
]

DEFAULT_SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.99)
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
    a dotted line; the mean over seeds, with its 95% Student-t interval as a band (none
    for one seed). ``target_optimizer`` may be left out when the target was trained
    with one optimizer only."""
    summary = aggregate(rows)
    target_optimizer = _pick_target(summary, target, target_optimizer)
    colors = _source_colors(summary)
    own = (target, target_optimizer)
    mine = [row for row in summary if (row["target"], row["target_optimizer"]) == own]
    fig = plots.figure((8, 4.5))
    ax = fig.subplots()
    accuracy = {"mean": "test_accuracy_mean", "low": "test_accuracy_low", "high": "test_accuracy_high", "scale": 100.0, "limits": (0.0, 1.0)}
    for (kind, source, optimizer), points in _by_ticket(mine):
        color = OWN_COLOR if kind == "target_own" or (source, optimizer) == own else colors[(source, optimizer)]
        label = {"winning": f"{source} ({optimizer})", "target_own": f"{target} (own)", "random": f"random, {source} ({optimizer})"}[kind]
        interval_curve(ax, points, **accuracy, color=color, label=label, **_CURVE_STYLES[kind])
    for dense in (row for row in mine if row["ticket"] == "dense"):
        ax.axhline(100 * dense["test_accuracy_mean"], color="grey", ls=":", lw=1.5, label="dense")
        if math.isfinite(dense["test_accuracy_low"]) and math.isfinite(dense["test_accuracy_high"]):
            ax.axhspan(max(0.0, 100 * dense["test_accuracy_low"]), min(100.0, 100 * dense["test_accuracy_high"]), color="grey", alpha=0.12, lw=0)
    sparsity_axis(ax, [row["fraction_remaining"] for row in mine])
    seeds = len({seed for row in mine for seed in row["seeds"]})
    spread = f"mean and 95% t interval over {seeds} seeds" if seeds > 1 else "1 seed: no interval"
    ax.set(ylabel="test accuracy (%)", title=f"Tickets trained on {target} with {target_optimizer} ({spread})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- transfer table


def _grid(summary: Sequence[dict]) -> dict[int, float]:
    """The shared sparsity grid: each IMP level's mean fraction remaining over the rows."""
    fractions: dict[int, list[float]] = {}
    for row in summary:
        fractions.setdefault(row["level"], []).append(row["fraction_remaining"])
    return {level: sum(values) / len(values) for level, values in sorted(fractions.items())}


def _nearest_levels(summary: Sequence[dict], sparsities: Sequence[float]) -> list[int]:
    sparsities = [float(s) for s in sparsities]
    if not sparsities:
        raise UserError("no sparsities asked for")
    for sparsity in sparsities:
        if not 0 <= sparsity < 1:
            raise UserError(f"sparsity {sparsity} is not a fraction pruned in [0, 1)")
    grid = _grid(summary)
    nearest = lambda s: min(grid, key=lambda level: (abs(math.log(grid[level]) - math.log(1 - s)), level))  # noqa: E731
    return sorted({nearest(s) for s in sparsities})


def nearest_levels(rows: Sequence[dict], sparsities: Sequence[float]) -> list[int]:
    """The IMP levels (sorted, each once) whose fraction remaining, on the grid that
    every ticket of the rows shares, is nearest ``1 - sparsity`` (in log scale) for
    each asked fraction pruned: a sparsity beyond the deepest level maps to it."""
    return _nearest_levels(aggregate(rows), sparsities)


def _check_levels(summary: Sequence[dict], levels: Sequence[int] | None, sparsities: Sequence[float] | None) -> list[int]:
    """The table's levels: ``levels`` (sorted, each once), or those nearest ``sparsities``
    (:data:`DEFAULT_SPARSITIES` when neither is given)."""
    if levels is not None and sparsities is not None:
        raise UserError("ask for levels or for sparsities, not both")
    if levels is None:
        return _nearest_levels(summary, DEFAULT_SPARSITIES if sparsities is None else sparsities)
    if not levels:
        raise UserError("no levels asked for")
    grid = _grid(summary)
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 0:
            raise UserError(f"level {level!r} is not an IMP level (an integer >= 0); to ask by fraction pruned, pass sparsities=")
        if level not in grid:
            raise UserError(f"no rows at level {level}; levels: {', '.join(map(str, grid))}")
    return sorted({int(level) for level in levels})


def _percent(value: float | None) -> str:
    """An accuracy in percent with one decimal; "–" where there is no number (None, NaN, ±inf)."""
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def _cell(row: dict | None) -> str:
    """The table cell of one group at one level: ``mean [low, high]`` in percent; "–" without a row."""
    if row is None:
        return "–"
    return f"{_percent(row['test_accuracy_mean'])} [{_percent(row['test_accuracy_low'])}, {_percent(row['test_accuracy_high'])}]"


def _table_label(row: dict) -> str:
    if row["ticket"] == "target_own":
        return "target's own"
    if row["ticket"] == "random":
        return f"random ({source_label(row)})"
    return source_label(row)


def _table_curves(summary: Sequence[dict]) -> list[tuple[str, dict[tuple[str, int], dict]]]:
    """``(label, {(target, level): row})`` per ticket of a table, in table order."""
    curves: dict[tuple[int, str], dict[tuple[str, int], dict]] = {}
    for row in summary:
        if row["ticket"] in _KIND_ORDER:
            label = (_KIND_ORDER[row["ticket"]], _table_label(row))
            curves.setdefault(label, {})[(row["target"], row["level"])] = row
    return [(label, cells) for (_, label), cells in sorted(curves.items())]


def _column_label(summary: Sequence[dict], target: str, level: int, grid: dict[int, float]) -> str:
    """``"cifar10 L3 49%"``: the target, the level and its percent pruned (the mean fraction
    remaining of the target's rows at that level; the grid's where it has none)."""
    fractions = [row["fraction_remaining"] for row in summary if (row["target"], row["level"]) == (target, level)]
    return f"{target} L{level} {pruned_label(sum(fractions) / len(fractions) if fractions else grid[level])}"


def _optimizer_table(summary: Sequence[dict], optimizer: str, levels: Sequence[int], grid: dict[int, float]) -> str:
    targets = sorted({row["target"] for row in summary})
    header = ["ticket"] + [_column_label(summary, target, level, grid) for target in targets for level in levels]
    lines = [
        f"Trained on the target with **{optimizer}**: test accuracy (%) at IMP level L (column: target, level, percent pruned), "
        "the mean over seeds [its 95% Student-t interval] (– where a ticket has no row at that level, or one seed has no interval).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * len(header)) + "|",
    ]
    for label, cells in _table_curves(summary):
        lines.append("| " + " | ".join([label] + [_cell(cells.get((target, level))) for target in targets for level in levels]) + " |")
    return "\n".join(lines)


def transfer_table(rows: Sequence[dict], levels: Sequence[int] | None = None, *, sparsities: Sequence[float] | None = None) -> str:
    """Markdown tables, one per target optimizer: a row per source ticket, the
    target's own ticket and each random ticket; a column per target and IMP level
    (``levels``, or the levels :func:`nearest_levels` ``sparsities``; by default
    those nearest :data:`DEFAULT_SPARSITIES`), headed by its percent pruned; the cell
    is the mean test accuracy in percent over seeds and its 95% t interval, "mean
    [low, high]", of that exact level, or "–" where the ticket has no row there."""
    summary = aggregate(rows)
    levels = _check_levels(summary, levels, sparsities)
    grid = _grid(summary)
    optimizers = sorted({row["target_optimizer"] for row in summary})
    return "\n\n".join(
        _optimizer_table([row for row in summary if row["target_optimizer"] == optimizer], optimizer, levels, grid)
        for optimizer in optimizers
    )


_CELL_KEYS = ("fraction_remaining", "test_accuracy_mean", "test_accuracy_std", "test_accuracy_low", "test_accuracy_high", "n")


def transfer_table_rows(rows: Sequence[dict], levels: Sequence[int] | None = None, *,
                        sparsities: Sequence[float] | None = None) -> list[dict]:
    """The cells of :func:`transfer_table` as rows (for CSV): ``target_optimizer``,
    ``ticket``, ``target``, ``level``, and that level's ``fraction_remaining``,
    ``test_accuracy_mean``, ``test_accuracy_std`` (sample std; NaN for one seed),
    ``test_accuracy_low``, ``test_accuracy_high`` (95% t interval) and ``n`` (empty
    where the ticket has no row at that level)."""
    summary = aggregate(rows)
    levels = _check_levels(summary, levels, sparsities)
    out = []
    for optimizer in sorted({row["target_optimizer"] for row in summary}):
        mine = [row for row in summary if row["target_optimizer"] == optimizer]
        for label, cells in _table_curves(mine):
            for target in sorted({row["target"] for row in mine}):
                for level in levels:
                    cell = cells.get((target, level)) or {}
                    out.append({"target_optimizer": optimizer, "ticket": label, "target": target, "level": level,
                                **{k: cell.get(k) for k in _CELL_KEYS}})
    return out


# --------------------------------------------------------------------------- report


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def write_report(workdirs: str | os.PathLike | Iterable[str | os.PathLike], out, sparsities: Sequence[float] | None = DEFAULT_SPARSITIES,
                 *, levels: Sequence[int] | None = None) -> epath.Path:
    """Everything about a transfer study in ``out``: ``accuracy_<target>_<optimizer>.png``
    per target, ``overlap.png`` when winning tickets can be compared, and
    ``report.md`` (the workdirs, every figure, the transfer table, the paired
    differences and the overlap table, each table also as CSV). The tables read
    ``levels``, or else the levels nearest ``sparsities`` (:func:`nearest_levels`);
    ``paired.csv`` has every level. Returns the path of ``report.md``."""
    workdirs = workdir_list(workdirs)
    rows = load_rows(workdirs)
    summary = aggregate(rows)
    levels = _check_levels(summary, levels, None if levels is not None else sparsities)
    table = transfer_table(rows, levels)  # what can fail on bad input, before anything is written
    paired = paired_rows(rows)
    overlaps = ticket_overlaps(rows)
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
        "random tickets dashed in the colour of their source, the dense network dotted; the mean over seeds, "
        "and as a band its 95% Student-t interval (t with n − 1 degrees of freedom; no band for one seed).",
        "",
    ]
    for target, optimizer in _targets(summary):
        figure = plots.save(plot_target(rows, target, optimizer), out / _file_name(f"accuracy_{target}_{optimizer}.png"))
        lines += [f"**{target}**, trained with {optimizer}:", "", f"![accuracy on {target} with {optimizer}]({figure.name})", ""]
    write_csv(out / "transfer_table.csv", transfer_table_rows(rows, levels))
    lines += ["## Transfer table", "", table, "", "(also in `transfer_table.csv`, with the sample std and n)", ""]
    lines += ["## Paired differences over seeds", "", paired_table(paired, levels), ""]
    if paired:
        write_csv(out / "paired.csv", paired)
        lines += ["(every level in `paired.csv`)", ""]
    lines += ["## Mask overlap of winning tickets", ""]
    if overlaps:
        figure = plots.save(plot_overlaps(overlaps), out / "overlap.png")
        write_csv(out / "overlap.csv", overlap_rows(overlaps))
        lines += [
            "IoU of the kept weights of two winning tickets at the same level and seed, over their prunable layers "
            "of equal shape; chance: the IoU d / (2 - d) of two independent random masks of density d, the reference "
            "for tickets from independent initializations. A pair marked *shared init* starts from one initialization "
            "(same seed and stream, e.g. two sources of a seed): its masks agree beyond chance before training shapes them, "
            "so it has no chance line (`init` in `overlap.csv`).",
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
