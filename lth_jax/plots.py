"""Figures: ticket networks, per-level curves, sweep reports, sparsity axes.

Every plot function returns a ``matplotlib.figure.Figure`` (shown inline in a
notebook, written by :func:`save`); nothing here selects a backend or keeps
figures in pyplot's registry.
"""

from __future__ import annotations

import io
from typing import Sequence

import matplotlib
import matplotlib.ticker as ticker
import numpy as np
from etils import epath
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lth_jax.sparsity_axes import TICK_REACH, X_MARGIN, interval_curve, log_ticks, mean_std_curve, percent_pruned, pruned_label, sparsity_axis
from lth_jax.structure import ACTIVE, INACTIVE, ZOMBIE, StructureReport

__all__ = [
    "figure", "task_colors", "seed_colors", "network_order", "draw_network", "plot_networks", "plot_levels",
    "plot_categories", "plot_split_grid", "plot_split_rates", "plot_input_degree", "plot_find_ticket",
    "save_thesis_figures", "save", "percent_pruned", "pruned_label", "log_ticks", "sparsity_axis", "interval_curve",
    "mean_std_curve",
]

SHARED = "#555555"
CATEGORY_COLORS = {"Separated": "#2ca02c", "Separated-Degraded": "#bcbd22", "Degraded": "#d62728", "Interconnected": "#1f77b4",
                   "Diverged": "#7f7f7f"}
LINE_STYLES = ("-", "--", "-.", ":")
DPI, PAD_INCHES = 110, 0.1  # of a saved figure
PNG_COMPRESSION = 1  # zlib level: 32 seeds' networks in 3/4 of the time, 2.9 MB not 3.9


def figure(figsize) -> Figure:
    """A figure outside pyplot (a notebook shows it once, when a cell returns it)."""
    return Figure(figsize=figsize)


def task_colors(num_tasks: int) -> list:
    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(num_tasks)]


def seed_colors(num_seeds: int) -> list:
    cmap = matplotlib.colormaps["Dark2"]
    return [cmap(i % 8) for i in range(num_seeds)]


def save(fig: Figure, path, *, crop: bool = True) -> epath.Path:
    """Write ``fig`` to ``path`` (a local path or ``gs://``; the format from its suffix),
    cropped to what it draws with a margin of 0.1 inch (``crop=False``: the whole canvas)."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer, kind = io.BytesIO(), path.suffix.lstrip(".") or "png"
    if kind != "png" or not _png_drawn_once(fig, buffer, crop):
        fast = {"pil_kwargs": {"compress_level": PNG_COMPRESSION}} if kind == "png" else {}
        fig.savefig(buffer, format=kind, dpi=DPI, bbox_inches="tight" if crop else None, **fast)
    path.write_bytes(buffer.getvalue())
    return path


def _png_drawn_once(fig: Figure, buffer, crop: bool) -> bool:
    """``fig`` as a PNG in ``buffer`` from one drawing, cropped in pixels (``savefig``'s
    tight box draws it twice). False, writing nothing, when the drawing spills off the canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas, dpi = fig.canvas, fig.dpi
    try:
        fig.dpi = DPI
        agg = FigureCanvasAgg(fig)
        agg.draw()
        pixels = np.asarray(agg.buffer_rgba())
        if crop:
            height, width = pixels.shape[:2]
            x0, y0, x1, y1 = (v * DPI for v in fig.get_tightbbox(agg.get_renderer()).extents)  # pixels, y upwards
            if x0 < -0.5 or y0 < -0.5 or x1 > width + 0.5 or y1 > height + 0.5:
                return False
            pad = PAD_INCHES * DPI  # the margin, in the figure's colour where it passes the canvas
            left, right, top, bottom = round(x0 - pad), round(x1 + pad), round(height - y1 - pad), round(height - y0 + pad)
            framed = np.empty((bottom - top, right - left, 4), np.uint8)
            framed[...] = np.round(255 * np.asarray(matplotlib.colors.to_rgba(fig.get_facecolor())))
            inside = pixels[max(top, 0) : min(bottom, height), max(left, 0) : min(right, width)]
            framed[max(-top, 0) : max(-top, 0) + inside.shape[0], max(-left, 0) : max(-left, 0) + inside.shape[1]] = inside
            pixels = framed
        Image.fromarray(pixels).save(buffer, format="png", compress_level=PNG_COMPRESSION, dpi=(DPI, DPI))
        return True
    finally:
        fig.dpi = dpi
        fig.set_canvas(canvas)


def plain_log_ticks(axis) -> None:
    """Ticks 1, 2, 5 per decade on a log axis, labelled as plain numbers (100, 2000;
    not 10² in mathtext, whose parser costs a third of a second to set up)."""
    axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def network_order(report: StructureReport) -> list[np.ndarray]:
    """Per layer, the units in drawing order (top first): inputs and outputs as they
    come; hidden units grouped by subnetwork (by the task it serves, then by
    component), units of no subnetwork last. A split ticket draws as separate
    networks one above the other."""
    sizes = [report.edge_states[0].shape[0]] + [e.shape[1] for e in report.edge_states]
    tasks = list(report.component_tasks)
    order = []
    for layer, n in enumerate(sizes):
        if layer in (0, len(sizes) - 1):
            order.append(np.arange(n))
            continue
        comps = np.asarray(report.node_components[layer])
        task = np.array([tasks[c] if c >= 0 and tasks[c] >= 0 else len(tasks) + 1 for c in comps])
        key = np.where(comps >= 0, task, len(tasks) + 2)
        order.append(np.lexsort((np.arange(n), comps, key)))
    return order


def _drawing(report: StructureReport, input_tasks, output_tasks, at=(0.0, 0.0)):
    """A ticket's network as data: its layer sizes, the edges of each state as line
    segments (``{state: [E, 2, 2]}``), the active edges' colours, and the nodes
    (x, y, size, colour). Layer ``l`` lies at ``x = at[0] + l``, units in ``[at[1], at[1] + 1]``."""
    sizes = [report.edge_states[0].shape[0]] + [e.shape[1] for e in report.edge_states]
    colors = task_colors(max(max(input_tasks), max(output_tasks)) + 1)
    tasks = report.component_tasks

    def color(c):  # a hidden unit's or edge's: its subnetwork's task, grey for several, white for none
        return "white" if c < 0 else (colors[tasks[c]] if tasks[c] >= 0 else SHARED)

    x0, y0 = at
    positions = []
    for n, order in zip(sizes, network_order(report)):
        y = np.empty(n)
        y[order] = np.linspace(1, 0, n) if n > 1 else 0.5
        positions.append(y0 + y)
    edges: dict[int, list] = {INACTIVE: [], ZOMBIE: [], ACTIVE: []}
    edge_colors = []
    for layer, states in enumerate(report.edge_states):
        for state, found in edges.items():
            u, v = np.nonzero(states == state)
            found.append(np.stack([np.stack([np.full(len(u), x0 + layer), positions[layer][u]], -1),
                                   np.stack([np.full(len(v), x0 + layer + 1), positions[layer + 1][v]], -1)], 1))
            if state == ACTIVE:
                edge_colors += [color(c) for c in report.node_components[layer][u]]
    node_colors = [colors[t] for t in input_tasks]
    for layer in range(1, len(sizes) - 1):
        node_colors += [color(c) for c in report.node_components[layer]]
    node_colors += [colors[t] for t in output_tasks]
    nodes = (np.concatenate([np.full(n, x0 + layer, float) for layer, n in enumerate(sizes)]), np.concatenate(positions),
             np.concatenate([np.full(n, max(4, 60 / max(1, n / 12))) for n in sizes]), node_colors)
    return sizes, {state: np.concatenate(found) for state, found in edges.items()}, edge_colors, nodes


def _draw_networks(ax, drawings, show_unused: bool = True) -> None:
    """:func:`_drawing` s in ``ax``: a collection per edge style and one of nodes, whatever their number."""
    if show_unused:
        for state, style in ((INACTIVE, ":"), (ZOMBIE, "--")):
            segments = np.concatenate([edges[state] for _, edges, _, _ in drawings])
            if len(segments):
                ax.add_collection(LineCollection(segments, colors="#bbbbbb", linewidths=0.6, linestyles=style))
    segments = np.concatenate([edges[ACTIVE] for _, edges, _, _ in drawings])
    if len(segments):
        ax.add_collection(LineCollection(segments, colors=[c for d in drawings for c in d[2]], linewidths=1.0, alpha=0.85))
    x, y, size = (np.concatenate([d[3][i] for d in drawings]) for i in range(3))
    ax.scatter(x, y, s=size, c=[c for d in drawings for c in d[3][3]], edgecolors="black", linewidths=0.4, zorder=3)


def draw_network(ax, report: StructureReport, input_tasks, output_tasks, *, title: str = "", show_unused: bool = True) -> None:
    """Nodes layer by layer (hidden units grouped by subnetwork, :func:`network_order`);
    active edges in the colour of the task their subnetwork serves (grey: several
    tasks), inactive and zombie edges faint. The layer sizes label the x axis."""
    drawing = _drawing(report, input_tasks, output_tasks)
    _draw_networks(ax, [drawing], show_unused)
    sizes = drawing[0]
    ax.set_xlim(-0.2, len(sizes) - 0.8)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(range(len(sizes)), [str(n) for n in sizes])
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, fontsize=9)


NETWORK_CELL = (4.2, 3.6)  # inches per network in plot_networks


def plot_networks(items: Sequence[tuple[str, StructureReport]], input_tasks, output_tasks, task_names) -> Figure:
    """One network drawing per ``(title, report)`` (as :func:`draw_network`), four a row, with a
    task legend. All in one axes, its edges and nodes a collection each: 32 networks of
    2,600 edges draw in a third of the time that an axes each took."""
    cols = min(len(items), 4)
    rows = -(-len(items) // cols)
    fig = figure((NETWORK_CELL[0] * cols, NETWORK_CELL[1] * rows))
    legend = 0.45 / fig.get_figheight()  # the legend's strip at the bottom
    ax = fig.add_axes((0.0, legend, 1.0, 1.0 - legend))
    ax.axis("off")
    width, height = max(len(report.edge_states) for _, report in items) + 1, 1.45  # a cell in data units
    drawings = []
    for i, (title, report) in enumerate(items):
        x0, y0 = (i % cols) * width + 0.5, -(i // cols + 1) * height + 0.3
        drawings.append(_drawing(report, input_tasks, output_tasks, at=(x0, y0)))
        sizes = drawings[-1][0]
        for layer, n in enumerate(sizes):
            ax.text(x0 + layer, y0 - 0.08, str(n), ha="center", va="top", fontsize=10)
        ax.text(x0 + (len(sizes) - 1) / 2, y0 + 1.1, title, ha="center", va="bottom", fontsize=9)
    _draw_networks(ax, drawings)
    ax.set(xlim=(0, cols * width), ylim=(-rows * height, 0))
    colors = task_colors(len(task_names))
    handles = [Line2D([], [], color=c, lw=2) for c in colors] + [Line2D([], [], color=SHARED, lw=2), Line2D([], [], color="#bbbbbb", lw=1, ls=":")]
    fig.legend(handles, list(task_names) + ["several tasks", "inactive / zombie"], loc="lower center", ncol=len(task_names) + 2, frameon=False, fontsize=8)
    return fig


def plot_levels(rows_by_seed: dict, task_names: Sequence[str]) -> Figure:
    """Per seed (one colour each): test accuracy of every task (one line style each),
    and weights remaining (solid) and active (dashed), against the level."""
    fig = figure((11, 4))
    ax_acc, ax_w = fig.subplots(1, 2)
    colors = seed_colors(len(rows_by_seed))
    for color, (seed, rows) in zip(colors, sorted(rows_by_seed.items())):
        levels = [r["level"] for r in rows]
        for t, name in enumerate(task_names):
            ax_acc.plot(levels, [r["accuracy"][t] for r in rows], LINE_STYLES[t % 4], color=color, marker="o", ms=3, label=f"{name} (seed {seed})")
        ax_w.plot(levels, [r["weights_remaining"] for r in rows], "-", color=color, marker="o", ms=3, label=f"remaining (seed {seed})")
        ax_w.plot(levels, [r["active_weights"] for r in rows], "--", color=color, marker="s", ms=3, label=f"active (seed {seed})")
        split = next((r["level"] for r in rows if r["status"] == "split"), None)
        if split is not None:
            ax_acc.axvline(split, color=color, alpha=0.25, lw=3)
    ax_acc.set(xlabel="level", ylabel="test accuracy", title="accuracy per task (band: a seed's first split)")
    ax_w.set(xlabel="level", ylabel="weights", yscale="log", title="weights remaining and active")
    plain_log_ticks(ax_w.yaxis)
    # up to 8 seeds an entry per line; beyond, colours repeat and 4 entries a seed are not read (and cost most of the figure's time)
    styles = ([(name, LINE_STYLES[t % 4]) for t, name in enumerate(task_names)], [("remaining", "-"), ("active", "--")])
    for ax, entries in zip((ax_acc, ax_w), styles):
        ax.grid(alpha=0.3)
        if len(rows_by_seed) <= 8:
            ax.legend(fontsize=7, ncol=2)
        else:
            ax.legend(handles=[Line2D([], [], color="k", ls=ls, label=label) for label, ls in entries], title=f"{len(rows_by_seed)} seeds, a colour each",
                      fontsize=7, title_fontsize=7, handlelength=3.5)
    fig.tight_layout()
    return fig


def plot_categories(rows: Sequence[dict], xlabel: str = "extension level") -> Figure:
    """Stacked bars: the number of runs of each category at every ``x`` (thesis E1-E3)."""
    xs = sorted({r["x"] for r in rows})
    fig = figure((max(6, 0.4 * len(xs) + 2), 4))
    ax = fig.subplots()
    bottom = np.zeros(len(xs))
    for category, color in CATEGORY_COLORS.items():
        counts = np.array([sum(1 for r in rows if r["x"] == x and r["category"] == category) for x in xs])
        ax.bar([str(x) for x in xs], counts, bottom=bottom, color=color, label=category)
        bottom += counts
    ax.set(xlabel=xlabel, ylabel="runs", title="run categories")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def plot_split_grid(rows: Sequence[dict], xlabel: str = "pruning levels", ylabel: str = "width") -> Figure:
    """Heat map of the fraction of runs that separate (E4: widths × numbers of levels)."""
    xs = sorted({r["x"] for r in rows})
    ys = sorted({r["y"] for r in rows})
    grid = np.full((len(ys), len(xs)), np.nan)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            cell = [r for r in rows if r["x"] == x and r["y"] == y]
            if cell:
                grid[i, j] = np.mean([r["category"] in ("Separated", "Separated-Degraded") for r in cell])
    fig = figure((max(5, 0.6 * len(xs) + 2), max(3, 0.5 * len(ys) + 1.5)))
    ax = fig.subplots()
    image = ax.imshow(grid, cmap="Greens", vmin=0, vmax=1, origin="lower", aspect="auto")
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    for i in range(len(ys)):
        for j in range(len(xs)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set(xlabel=xlabel, ylabel=ylabel, title="fraction of runs that split")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return fig


_RATE_STYLE = {"lth_jax": {"marker": "o", "linestyle": "-", "color": "C0", "label": "lth_jax"},
               "thesis_code": {"marker": "s", "linestyle": "--", "color": "C1", "label": "thesis's code"},
               "thesis_published": {"marker": "x", "linestyle": ":", "color": "0.3", "label": "thesis (published)"}}


def plot_split_rates(table: Sequence[dict], *, xlabel: str, titles: dict) -> Figure:
    """Split rate with its 95% interval against ``x``, one series per system, one panel per
    ``group`` (``titles[group]`` above it). Cells as :func:`lth_jax.fidelity.point_table`
    gives them (``system``, ``split_rate``, ``ci_low``, ``ci_high``, ``seeds``), plus ``x``
    and ``group``."""
    groups = sorted({c["group"] for c in table}, key=lambda g: (g is not None, g))
    fig = figure((3.2 * len(groups) + 1, 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(groups), sharey=True))
    for ax, group in zip(axes, groups):
        for i, (system, style) in enumerate(_RATE_STYLE.items()):
            cells = sorted((c for c in table if c["system"] == system and c["group"] == group), key=lambda c: c["x"])
            if not cells:
                continue
            rate = np.array([c["split_rate"] for c in cells])
            error = np.maximum(0.0, [rate - [c["ci_low"] for c in cells], [c["ci_high"] for c in cells] - rate])
            seeds = "/".join(sorted({str(c["seeds"]) for c in table if c["system"] == system}, key=int))
            step = min(np.diff(sorted({c["x"] for c in table})), default=1)
            x = np.array([c["x"] for c in cells], float) + 0.12 * step * (i - 1)  # side by side
            ax.errorbar(x, rate, yerr=error, capsize=3, **{**style, "label": f"{style['label']} ({seeds} seeds)"})
        ax.set(xlabel=xlabel, title=titles.get(group, ""))
        ax.title.set_fontsize(9)
        ax.set_xticks(sorted({c["x"] for c in table}))
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of runs that split")
    legend = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
    axes[0].legend(legend.values(), legend.keys(), fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def plot_input_degree(degrees: Sequence[tuple[str, np.ndarray]], image_shape, task_names) -> Figure:
    """Heat maps of each input pixel's active out-degree (E9), one row per ``(title, degree)``."""
    tasks = len(task_names)
    fig = figure((3.2 * tasks, 3 * len(degrees)))
    axes = fig.subplots(len(degrees), tasks, squeeze=False)
    pixels = int(np.prod(image_shape))
    for row, (title, degree) in enumerate(degrees):
        for t in range(tasks):
            ax = axes[row, t]
            image = ax.imshow(np.asarray(degree[t * pixels : (t + 1) * pixels]).reshape(image_shape), cmap="viridis")
            ax.set_title(f"{task_names[t]}: {title}", fontsize=8)
            ax.axis("off")
            fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def plot_find_ticket(rows: Sequence[dict], layers: Sequence[dict], title: str = "") -> Figure:
    """A find_ticket run: test accuracy against the fraction of weights pruned (log
    axis), and every prunable layer's fraction of weights kept at each level.
    ``rows``: the level rows of ``metrics.jsonl``; ``layers``: per level, the
    :func:`lth_jax.masks.sparsity_report` of its ticket."""
    fig = figure((12, 4.2))
    ax_acc, ax_layers = fig.subplots(1, 2)
    ax_acc.plot([r["fraction_remaining"] for r in rows], [100 * r["test_accuracy"] for r in rows], marker="o", ms=3, color="black")
    sparsity_axis(ax_acc, [r["fraction_remaining"] for r in rows])
    ax_acc.set(ylabel="test accuracy (%)", title=title or "test accuracy per level")
    ax_acc.grid(alpha=0.3)
    levels = [r["level"] for r in rows]
    paths = [layer["path"] for layer in layers[0]["layers"]] if layers else []
    cmap = matplotlib.colormaps["viridis"]
    for i, path in enumerate(paths):
        kept = [next(layer["fraction_remaining"] for layer in report["layers"] if layer["path"] == path) for report in layers]
        ax_layers.plot(levels[: len(kept)], [100 * k for k in kept], marker="o", ms=3, color=cmap(i / max(1, len(paths) - 1)), label=path)
    ax_layers.set(xlabel="level", ylabel="weights kept (%, log scale)", yscale="log", title="per-layer sparsity")
    ax_layers.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    plain_log_ticks(ax_layers.yaxis)
    ax_layers.grid(alpha=0.3)
    ax_layers.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 + len(paths) // 20)
    fig.tight_layout()
    return fig


def save_thesis_figures(figures: epath.Path, data, rows, reports, shape) -> None:
    """A parallel-task experiment's figures in ``figures/``: accuracy and active weights per level,
    each seed's ticket at its split level (MLPs up to 256 units a layer), input degrees (image data)."""
    by_seed: dict[int, list] = {}
    for row in rows:
        by_seed.setdefault(row["seed"], []).append(row)
    save(plot_levels(by_seed, data.task_names), figures / "levels.png")
    if max(shape) <= 256:
        items = []
        for seed, mine in sorted(by_seed.items()):
            split = next((r["level"] for r in mine if r["status"] == "split"), None)
            level = split if split is not None else mine[-1]["level"]
            report = reports.get((seed, level))
            if report is not None:
                items.append((f"seed {seed}, level {level} ({report.status}, {mine[level]['weights_remaining']} weights)", report))
        if items:
            save(plot_networks(items, data.input_tasks, data.output_tasks, data.task_names), figures / "networks.png", crop=False)
    if data.image_shape is not None:
        for seed, mine in sorted(by_seed.items()):
            chosen = sorted({0, len(mine) // 2, len(mine) - 1})
            degrees = [(f"level {mine[i]['level']}", reports[(seed, mine[i]["level"])].input_out_degree) for i in chosen if (seed, mine[i]["level"]) in reports]
            if degrees:
                save(plot_input_degree(degrees, data.image_shape, data.task_names), figures / f"input_degree_seed{seed}.png")
