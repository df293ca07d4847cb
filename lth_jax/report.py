"""The report of a ticket-transfer study (Morcos et al. 2019; SPEC §1.2-1.5).

A transfer workdir holds ``metrics.jsonl``: one row per finished training of a
ticket on a *target* (dataset, optimizer), with the *source* the ticket came
from, the kind of ticket (``winning``, ``random``, ``target_own``, ``dense``),
its IMP level, the seed and the test accuracy. From the rows of one or more
workdirs this module draws what the paper shows:

- :func:`plot_target`: per target, test accuracy against the fraction of weights
  pruned, one curve per source ticket, the target's own ticket, random tickets
  and the dense network, mean ± std over seeds;
- :func:`transfer_table`: the same numbers at a few chosen sparsities, as Markdown;
- :func:`ticket_overlaps` / :func:`plot_overlaps` / :func:`overlap_table`: how
  much the masks of winning tickets from different sources agree (IoU of the
  kept weights), against what two independent random masks would share;
- :func:`write_report`: all of it into one directory with ``report.md``.

Sparsity axes are log-scale in the fraction *remaining* (IMP removes 20% of
what remains per level, so levels are evenly spaced), inverted so that
sparsity grows to the right, and labelled in percent *pruned*, as in the paper.
"""

from __future__ import annotations

import itertools
import operator
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402

from lth_jax import plots  # noqa: E402
from lth_jax.checkpoint import load_ticket  # noqa: E402
from lth_jax.masks import Prunable, default_prunable, mask_overlap  # noqa: E402
from lth_jax.pytree import named_leaves  # noqa: E402
from lth_jax.results import read_json, read_jsonl  # noqa: E402

__all__ = [
    "TICKET_KINDS",
    "GROUP_KEYS",
    "DEFAULT_SPARSITIES",
    "SPARSITY_TOLERANCE",
    "load_rows",
    "aggregate",
    "source_label",
    "percent_pruned",
    "plot_target",
    "transfer_table",
    "chance_iou",
    "ticket_overlaps",
    "plot_overlaps",
    "overlap_table",
    "write_report",
]

TICKET_KINDS = ("winning", "random", "target_own", "dense")
GROUP_KEYS = ("source", "source_optimizer", "target", "target_optimizer", "ticket", "level")
REQUIRED_KEYS = GROUP_KEYS + ("fraction_remaining", "test_accuracy", "test_loss", "seed", "model")
DEFAULT_SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.99)
SPARSITY_TOLERANCE = 0.25  # a level stands for a sparsity when |Δ remaining| / remaining is below this
X_MARGIN = 1.08  # room beyond the extreme fractions remaining on a log axis
TICK_REACH = 1.5  # the sparse end of an axis reaches on to a round tick this close beyond the sparsest point
OWN_COLOR = "black"


# --------------------------------------------------------------------------- rows


def _check_row(row: dict, where: str) -> None:
    missing = [key for key in REQUIRED_KEYS if key not in row]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}")
    if row["ticket"] not in TICKET_KINDS:
        raise ValueError(f"{where} has an unknown ticket kind {row['ticket']!r}; known kinds: {', '.join(TICKET_KINDS)}")


def _workdir_list(workdirs: str | Path | Iterable[str | Path]) -> list[str]:
    workdirs = [workdirs] if isinstance(workdirs, (str, Path)) else list(workdirs)
    if not workdirs:
        raise ValueError("no workdirs given")
    return [str(workdir) for workdir in workdirs]


def load_rows(workdirs: str | Path | Iterable[str | Path]) -> list[dict]:
    """The rows of every workdir's ``metrics.jsonl``, each with a ``workdir`` key
    (the workdir as given, so ``ticket_dir`` can be resolved against it).

    An experiment that several workdirs hold (the same group and seed: e.g. the
    dense and own tickets of a target that two studies, one per source, both
    trained) counts once, from the first workdir that has it.
    """
    workdirs = _workdir_list(workdirs)
    rows, seen = [], set()
    for workdir in workdirs:
        path = Path(workdir) / "metrics.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"workdir {workdir} has no metrics.jsonl ({path} does not exist)")
        for i, row in enumerate(read_jsonl(path)):
            _check_row(row, f"row {i} of {path}")
            key = tuple(row[k] for k in GROUP_KEYS) + (row["seed"],)
            if key not in seen:
                seen.add(key)
                rows.append({**row, "workdir": workdir})
    if not rows:
        raise ValueError(f"no rows in the metrics.jsonl of {', '.join(workdirs)}")
    return rows


def _describe(group: tuple) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in zip(GROUP_KEYS, group))


def _summarize(group: tuple, members: list[dict]) -> dict:
    """Mean and population std over the seeds of one group (rows in seed order, so
    the result does not depend on the order the rows came in)."""
    members = sorted(members, key=lambda row: row["seed"])
    seeds = [row["seed"] for row in members]
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise ValueError(f"seed {repeated[0]} appears more than once for {_describe(group)}")
    models = sorted({row["model"] for row in members})
    if len(models) > 1:
        raise ValueError(f"several models ({', '.join(models)}) for {_describe(group)}: report one model at a time")
    accuracy = np.array([row["test_accuracy"] for row in members], dtype=np.float64)
    return {
        **dict(zip(GROUP_KEYS, group)),
        "fraction_remaining": float(np.mean([row["fraction_remaining"] for row in members])),
        "test_accuracy_mean": float(np.mean(accuracy)),
        "test_accuracy_std": float(np.std(accuracy)),
        "test_loss_mean": float(np.mean([row["test_loss"] for row in members])),
        "seeds": seeds,
        "n": len(members),
    }


def aggregate(rows: Sequence[dict]) -> list[dict]:
    """One row per (source, source_optimizer, target, target_optimizer, ticket, level):
    those keys, ``fraction_remaining`` (mean), ``test_accuracy_mean``,
    ``test_accuracy_std`` (population std, 0 for one seed), ``test_loss_mean``,
    ``seeds`` (sorted) and ``n``; sorted by the group keys. A seed that appears
    twice in a group is an error (it would count twice in the mean)."""
    if not rows:
        raise ValueError("no rows to aggregate")
    groups: dict[tuple, list[dict]] = {}
    for i, row in enumerate(rows):
        _check_row(row, f"row {i}")
        groups.setdefault(tuple(row[key] for key in GROUP_KEYS), []).append(row)
    return [_summarize(group, groups[group]) for group in sorted(groups)]


def source_label(row: dict) -> str:
    """``"cifar100 (sgd)"``: the source dataset and the optimizer the ticket was found with."""
    return f"{row['source']} ({row['source_optimizer']})"


def _targets(summary: Sequence[dict]) -> list[tuple[str, str]]:
    return sorted({(row["target"], row["target_optimizer"]) for row in summary})


# --------------------------------------------------------------------------- sparsity axis


def percent_pruned(fraction_remaining: float) -> str:
    """``0.001`` → ``"99.9%"``: the fraction pruned in percent, without trailing zeros."""
    return np.format_float_positional(round(100 * (1 - fraction_remaining), 4), trim="-") + "%"


# (longest span in decades, tick mantissas per decade): fewer ticks on longer axes, so labels never touch
_TICKS_BY_SPAN = ((1.0, (1, 0.8, 0.5, 0.2)), (2.0, (1, 0.5, 0.2)), (3.5, (1, 0.5)), (np.inf, (1,)))


def _log_ticks(lowest: float) -> list[float]:
    """Round tick positions for a log axis from 1 down to a decade past ``lowest``."""
    decades = np.log10(1 / lowest)
    mantissas = next(m for span, m in _TICKS_BY_SPAN if decades <= span)
    return [m * 10.0**-e for e in range(int(decades) + 2) for m in mantissas]


def _pruned_ticks(lowest_remaining: float) -> tuple[list[float], float]:
    """Tick positions (fractions remaining) from 1 down to the sparse end of the axis,
    and that end: just past ``lowest_remaining``, or on the next round tick when it
    is near (so that 0.8**30 = 0.0012 remaining ends on the 99.9% tick)."""
    candidates = _log_ticks(lowest_remaining)
    beyond = max(t for t in candidates if t < lowest_remaining)
    end = lowest_remaining / X_MARGIN
    if lowest_remaining / beyond <= TICK_REACH:
        end = min(end, beyond)
    return [t for t in candidates if t >= end], end


def _sparsity_axis(ax, fractions_remaining: Iterable[float]) -> None:
    """Log scale in the fraction remaining, dense on the left, ticks in percent pruned."""
    ticks, end = _pruned_ticks(min(fractions_remaining))
    ax.set_xscale("log")
    ax.set_xticks(ticks, [percent_pruned(t) for t in ticks], fontsize=9)
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlim(X_MARGIN, end)  # left > right: sparsity grows to the right
    ax.set_xlabel("weights pruned (log scale in the fraction remaining)")


def _curve(ax, points: Sequence[dict], *, mean: str, std: str, scale: float = 1.0, **style) -> None:
    """Mean against fraction remaining, with a ± std band in the line's colour."""
    points = sorted(points, key=lambda p: -p["fraction_remaining"])
    x = np.array([p["fraction_remaining"] for p in points])
    y = scale * np.array([p[mean] for p in points])
    spread = scale * np.array([p[std] for p in points])
    (line,) = ax.plot(x, y, marker="o", ms=3, **style)
    ax.fill_between(x, y - spread, y + spread, color=line.get_color(), alpha=0.15, lw=0)


# --------------------------------------------------------------------------- accuracy figure


def _source_colors(summary: Sequence[dict]) -> dict[tuple[str, str], Any]:
    """A tab10 colour per (source, optimizer) of the whole study, so a source keeps
    its colour in every target's figure."""
    sources = sorted({(row["source"], row["source_optimizer"]) for row in summary if row["ticket"] in ("winning", "random")})
    cmap = plt.get_cmap("tab10")
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
        raise ValueError(f"no rows for target {target!r}; targets: {', '.join(targets)}")
    if target_optimizer is None:
        if len(optimizers) > 1:
            raise ValueError(f"target {target!r} was trained with several optimizers ({', '.join(optimizers)}): pass target_optimizer")
        return optimizers[0]
    if target_optimizer not in optimizers:
        raise ValueError(f"no rows for target {target!r} with optimizer {target_optimizer!r}; its optimizers: {', '.join(optimizers)}")
    return target_optimizer


def plot_target(rows: Sequence[dict], target: str, path: str | Path, target_optimizer: str | None = None) -> Path:
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
    fig, ax = plt.subplots(figsize=(8, 4.5))
    accuracy = {"mean": "test_accuracy_mean", "std": "test_accuracy_std", "scale": 100.0}
    for (kind, source, optimizer), points in _by_ticket(mine):
        color = OWN_COLOR if kind == "target_own" or (source, optimizer) == own else colors[(source, optimizer)]
        label = {"winning": f"{source} ({optimizer})", "target_own": f"{target} (own)", "random": f"random, {source} ({optimizer})"}[kind]
        _curve(ax, points, **accuracy, color=color, label=label, **_CURVE_STYLES[kind])
    for dense in (row for row in mine if row["ticket"] == "dense"):
        mean, std = 100 * dense["test_accuracy_mean"], 100 * dense["test_accuracy_std"]
        ax.axhline(mean, color="grey", ls=":", lw=1.5, label="dense")
        ax.axhspan(mean - std, mean + std, color="grey", alpha=0.12, lw=0)
    _sparsity_axis(ax, [row["fraction_remaining"] for row in mine])
    seeds = sorted({seed for row in mine for seed in row["seeds"]})
    ax.set(ylabel="test accuracy (%)", title=f"Tickets trained on {target} with {target_optimizer} (mean ± std over {len(seeds)} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return plots.save(fig, path)


# --------------------------------------------------------------------------- transfer table


def _check_sparsities(sparsities: Sequence[float]) -> list[float]:
    sparsities = [float(s) for s in sparsities]
    if not sparsities:
        raise ValueError("no sparsities asked for")
    for sparsity in sparsities:
        if not 0 <= sparsity < 1:
            raise ValueError(f"sparsity {sparsity} is not a fraction pruned in [0, 1)")
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


def _optimizer_table(summary: Sequence[dict], optimizer: str, sparsities: Sequence[float], tolerance: float) -> str:
    targets = sorted({row["target"] for row in summary})
    curves: dict[tuple[int, str], dict[str, list[dict]]] = {}
    for row in summary:
        if row["ticket"] in _KIND_ORDER:
            label = (_KIND_ORDER[row["ticket"]], _table_label(row))
            curves.setdefault(label, {}).setdefault(row["target"], []).append(row)
    header = ["ticket"] + [f"{target} {percent_pruned(1 - s)}" for target in targets for s in sparsities]
    lines = [
        f"Trained on the target with **{optimizer}**: test accuracy (%), mean ± std over seeds, "
        "at the level nearest each fraction pruned (– where no level is near).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * len(header)) + "|",
    ]
    for (_, label), by_target in sorted(curves.items()):
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


# --------------------------------------------------------------------------- mask overlap


def chance_iou(density: float | np.ndarray) -> float | np.ndarray:
    """Expected IoU of two independent random masks that each keep a fraction
    ``density`` of the weights: ``d² / (2d - d²) = d / (2 - d)``."""
    return density / (2 - density)


def _overlap_label(row: dict) -> str | None:
    """The name of a row's winning ticket for the overlaps (``None``: not a winning ticket)."""
    if row["ticket"] == "winning":
        return source_label(row)
    if row["ticket"] == "target_own":
        return f"{row['target']} ({row['target_optimizer']}, own)"
    return None


def _ticket_labels(rows: Sequence[dict], workdir_of_row: Callable[[dict], str | Path]) -> dict[Path, str]:
    """Each winning ticket directory (resolved, so several workdirs naming it count
    once) and its name; a directory used both as a source ticket and as a target's
    own ticket is named as the source."""
    names: dict[Path, set[tuple[bool, str]]] = {}
    for row in rows:
        label = _overlap_label(row)
        if label is not None and row.get("ticket_dir") is not None:
            directory = (Path(workdir_of_row(row)) / row["ticket_dir"]).resolve()
            names.setdefault(directory, set()).add((row["ticket"] != "winning", label))
    return {directory: min(labels)[1] for directory, labels in names.items()}


def _group_tickets(labels: dict[Path, str]) -> dict[tuple, dict[str, Path]]:
    """Ticket directories by (model, level, seed) of their ``ticket.json``, then by name.
    Only the JSON is read here, so the masks of one group at a time are in memory."""
    groups: dict[tuple, dict[str, Path]] = {}
    for directory in sorted(labels):
        if not (directory / "ticket.json").is_file():
            raise FileNotFoundError(f"{directory} is not a ticket directory (no ticket.json)")
        info = read_json(directory / "ticket.json")
        missing = [key for key in ("model", "level", "seed") if key not in info]
        if missing:
            raise ValueError(f"{directory / 'ticket.json'} lacks {', '.join(missing)}")
        group = groups.setdefault((info["model"], info["level"], info["seed"]), {})
        label = labels[directory]
        if label in group:
            raise ValueError(f"two tickets named {label!r} at level {info['level']}, seed {info['seed']}: {group[label]} and {directory}")
        group[label] = directory
    return groups


def _prunable_layers(mask: Any, prunable: Prunable) -> dict[str, np.ndarray]:
    named, _ = named_leaves(mask)
    return {"/".join(path): np.asarray(leaf, dtype=bool) for path, leaf in named if prunable(path, leaf)}


def _every_leaf(path: tuple[str, ...], leaf: Any) -> bool:
    return True


def _pair_overlap(mask_a: Any, mask_b: Any, prunable: Prunable) -> dict:
    """IoU over the prunable layers the two masks share with equal shapes; the others
    (e.g. an output layer for a different number of classes) are listed as skipped."""
    layers_a, layers_b = _prunable_layers(mask_a, prunable), _prunable_layers(mask_b, prunable)
    shared = sorted(p for p in layers_a.keys() & layers_b.keys() if layers_a[p].shape == layers_b[p].shape)
    skipped = sorted((layers_a.keys() | layers_b.keys()) - set(shared))
    if not shared:
        raise ValueError(f"two tickets share no prunable layer of equal shape (layers: {', '.join(skipped)})")
    overlap = mask_overlap({p: layers_a[p] for p in shared}, {p: layers_b[p] for p in shared}, _every_leaf)
    kept = [sum(int(np.count_nonzero(layers[p])) for p in shared) for layers in (layers_a, layers_b)]
    total = sum(layers_a[p].size for p in shared)
    return {
        "fraction_remaining": float(np.mean(kept) / total),
        "iou": overlap["iou"],
        "layers": [{"path": layer["path"], "iou": layer["iou"]} for layer in overlap["layers"]],
        "skipped": skipped,
    }


def ticket_overlaps(
    rows: Sequence[dict],
    workdir_of_row: Callable[[dict], str | Path] | None = None,
    prunable: Prunable | None = None,
) -> list[dict]:
    """Mask overlap between the winning tickets of different sources (the targets' own
    tickets included, named e.g. ``"cifar10 (sgd, own)"``) of the same model, IMP
    level and seed (read from each ``ticket.json``).

    ``workdir_of_row(row)`` is the directory a row's ``ticket_dir`` is relative to
    (default: the ``workdir`` key that :func:`load_rows` adds). Every ticket
    directory is loaded once and every pair counted once, however many targets
    used it. Rows: ``{a, b, model, level, seed, fraction_remaining, iou, layers:
    [{path, iou}], skipped: [paths]}`` where ``iou`` is over the kept weights of the
    prunable layers of equal shape (``skipped``: the others) and
    ``fraction_remaining`` the two masks' mean density over those layers.
    """
    if workdir_of_row is None:
        if any("workdir" not in row for row in rows):
            raise ValueError("rows lack a 'workdir' key: load them with load_rows or pass workdir_of_row")
        workdir_of_row = operator.itemgetter("workdir")
    overlaps = []
    for (model, level, seed), tickets in sorted(_group_tickets(_ticket_labels(rows, workdir_of_row)).items()):
        masks = {label: load_ticket(directory).mask for label, directory in tickets.items()}
        for a, b in itertools.combinations(sorted(masks), 2):
            pair = _pair_overlap(masks[a], masks[b], prunable or default_prunable)
            overlaps.append({"a": a, "b": b, "model": model, "level": level, "seed": seed, **pair})
    return overlaps


def _overlap_means(overlaps: Sequence[dict]) -> list[dict]:
    """Overlaps averaged over seeds per (model, a, b, level): mean fraction remaining,
    IoU mean and population std, seeds, skipped layers."""
    if not overlaps:
        raise ValueError("no mask overlaps (no two winning tickets share a model, level and seed)")
    groups: dict[tuple, list[dict]] = {}
    for row in overlaps:
        groups.setdefault((row["model"], row["a"], row["b"], row["level"]), []).append(row)
    means = []
    for (model, a, b, level), members in sorted(groups.items()):
        iou = np.array([row["iou"] for row in sorted(members, key=lambda row: row["seed"])])
        means.append({
            "model": model, "a": a, "b": b, "level": level,
            "fraction_remaining": float(np.mean([row["fraction_remaining"] for row in members])),
            "iou_mean": float(np.mean(iou)), "iou_std": float(np.std(iou)),
            "seeds": sorted(row["seed"] for row in members),
            "skipped": sorted({path for row in members for path in row["skipped"]}),
        })
    return means


def _pair_name(row: dict, several_models: bool) -> str:
    return (f"{row['model']}: " if several_models else "") + f"{row['a']} vs {row['b']}"


def plot_overlaps(overlaps: Sequence[dict], path: str | Path) -> Path:
    """Overall mask IoU against the fraction of weights pruned, one curve per pair of
    tickets (mean ± std over seeds), and the IoU of two independent random masks
    of that density (dashed grey) for reference; both axes log-scale."""
    means = _overlap_means(overlaps)
    several_models = len({row["model"] for row in means}) > 1
    fig, ax = plt.subplots(figsize=(8, 4.5))
    cmap = plt.get_cmap("tab10")
    pairs: dict[str, list[dict]] = {}
    for row in means:
        pairs.setdefault(_pair_name(row, several_models), []).append(row)
    for i, (name, points) in enumerate(pairs.items()):
        _curve(ax, points, mean="iou_mean", std="iou_std", color=cmap(i % 10), lw=1.5, label=name)
    _sparsity_axis(ax, [row["fraction_remaining"] for row in means])
    density = np.geomspace(ax.get_xlim()[1], 1, 200)
    ax.plot(density, chance_iou(density), color="grey", ls="--", lw=1.2, label="chance: d / (2 - d)")
    # log: at 99% pruned both IoU and chance are ~0.01, and their ratio is what matters
    ax.set(ylabel="IoU of the kept weights (log scale)", yscale="log", title="Mask overlap of winning tickets (same level and seed)")
    bottom, top = ax.get_ylim()
    ticks = [t for t in _log_ticks(bottom) if bottom <= t <= top]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])  # 0.01 rather than 10⁻², also within a decade
    ax.yaxis.set_minor_locator(ticker.NullLocator())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return plots.save(fig, path)


def overlap_table(overlaps: Sequence[dict]) -> str:
    """A Markdown table of the overlaps averaged over seeds: pair, level, remaining %,
    overall IoU (mean ± std), chance IoU, seeds; then the layers skipped per pair."""
    means = _overlap_means(overlaps)
    several_models = len({row["model"] for row in means}) > 1
    lines = ["| pair | level | remaining % | IoU | chance IoU | seeds |", "|---|---|---|---|---|---|"]
    for row in means:
        lines.append(
            f"| {_pair_name(row, several_models)} | {row['level']} | {100 * row['fraction_remaining']:.2f} | "
            f"{row['iou_mean']:.3f} ± {row['iou_std']:.3f} | {chance_iou(row['fraction_remaining']):.3f} | "
            f"{', '.join(str(seed) for seed in row['seeds'])} |"
        )
    skipped = {_pair_name(row, several_models): row["skipped"] for row in means if row["skipped"]}
    if skipped:
        lines += ["", "Layers left out because their shapes differ between the two tickets:", ""]
        lines += [f"- {name}: {', '.join(paths)}" for name, paths in skipped.items()]
    return "\n".join(lines)


# --------------------------------------------------------------------------- report


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def write_report(workdirs: str | Path | Iterable[str | Path], out: str | Path, sparsities: Sequence[float] = DEFAULT_SPARSITIES) -> Path:
    """Everything about a transfer study in ``out``: ``accuracy_<target>_<optimizer>.png``
    per target, ``overlap.png`` when winning tickets can be compared, and
    ``report.md`` (the workdirs, every figure, the transfer table and the overlap
    table). Returns the path of ``report.md``."""
    workdirs = _workdir_list(workdirs)
    rows = load_rows(workdirs)
    table = transfer_table(rows, sparsities)  # what can fail on bad input, before anything is written
    overlaps = ticket_overlaps(rows)
    summary = aggregate(rows)
    out = Path(out)
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
        figure = plot_target(rows, target, out / _file_name(f"accuracy_{target}_{optimizer}.png"), optimizer)
        lines += [f"**{target}**, trained with {optimizer}:", "", f"![accuracy on {target} with {optimizer}]({figure.name})", ""]
    lines += ["## Transfer table", "", table, "", "## Mask overlap of winning tickets", ""]
    if overlaps:
        figure = plot_overlaps(overlaps, out / "overlap.png")
        lines += [
            "IoU of the kept weights of two winning tickets at the same level and seed, over their prunable layers "
            "of equal shape; chance: the IoU d / (2 - d) of two independent random masks of density d.",
            "",
            f"![mask overlap]({figure.name})",
            "",
            overlap_table(overlaps),
        ]
    else:
        lines.append("No two winning tickets share a level and seed: nothing to compare.")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
