"""Mask overlap of winning tickets from different sources (Morcos et al. 2019).

How much do the masks of tickets found on different datasets or optimizers
agree? :func:`ticket_overlaps` measures the IoU of the kept weights of every
pair of winning tickets (the targets' own included) of the same model, level
and seed; :func:`chance_iou` is what two independent random masks of that
density would share; :func:`plot_overlaps` and :func:`overlap_table` show both.

Chance fits a pair only when its two tickets start from independent
initializations. Every ticket records the stream its initialization came from
(``init_stream`` in ``ticket.json``: ``source`` or ``target_own``), so a pair of
one seed is ``shared`` when both name the same stream (two sources of a seed, or
a source and the target's own ticket run with ``shared_init``) and
``independent`` otherwise. Magnitude pruning of one set of initial weights makes
masks agree before any training has shaped them, so no closed-form chance line
exists for a shared pair: the reports leave its chance blank and mark the pair.
"""

from __future__ import annotations

import itertools
import operator
import os
from typing import Any, Callable, Sequence

import matplotlib
import matplotlib.ticker as ticker
import numpy as np
from etils import epath
from matplotlib.figure import Figure

from lth_jax import plots
from lth_jax.errors import UserError
from lth_jax.masks import Prunable, default_prunable, mask_overlap
from lth_jax.pytree import named_leaves
from lth_jax.results import read_json
from lth_jax.sparsity_axes import log_ticks, mean_std_curve, sparsity_axis
from lth_jax.stats import mean_std
from lth_jax.tickets import load_ticket

__all__ = ["source_label", "chance_iou", "init_relation", "ticket_overlaps", "plot_overlaps", "overlap_table", "overlap_rows"]


def source_label(row: dict) -> str:
    """``"cifar100 (sgd)"``: the source dataset and the optimizer the ticket was found with."""
    return f"{row['source']} ({row['source_optimizer']})"


def chance_iou(density: float | np.ndarray) -> float | np.ndarray:
    """Expected IoU of two independent random masks that each keep a fraction
    ``density`` of the weights: ``d² / (2d - d²) = d / (2 - d)``."""
    return density / (2 - density)


def init_relation(info_a: dict, info_b: dict) -> str:
    """``"shared"`` when two tickets' ``ticket.json`` name the same seed and initialization
    stream (a ticket made before streams were recorded counts as ``source``), else ``"independent"``."""
    stream = lambda info: (info.get("seed"), info.get("init_stream", "source"))  # noqa: E731
    return "shared" if stream(info_a) == stream(info_b) else "independent"


def _chance(row: dict) -> float | None:
    """The chance IoU of a pair row, ``None`` unless its tickets' initializations are independent."""
    return float(chance_iou(row["fraction_remaining"])) if row["init"] == "independent" else None


def _overlap_label(row: dict) -> str | None:
    """The name of a row's winning ticket for the overlaps (``None``: not a winning ticket)."""
    if row["ticket"] == "winning":
        return source_label(row)
    if row["ticket"] == "target_own":
        return f"{row['target']} ({row['target_optimizer']}, own)"
    return None


def _ticket_labels(rows: Sequence[dict], workdir_of_row: Callable[[dict], str | os.PathLike]) -> dict[epath.Path, str]:
    """Each winning ticket directory (resolved, so several workdirs naming it count
    once) and its name; a directory used both as a source ticket and as a target's
    own ticket is named as the source."""
    names: dict[epath.Path, set[tuple[bool, str]]] = {}
    for row in rows:
        label = _overlap_label(row)
        if label is not None and row.get("ticket_dir") is not None:
            directory = epath.Path(workdir_of_row(row)) / row["ticket_dir"]
            directory = directory.resolve() if "://" not in os.fspath(directory) else directory
            names.setdefault(directory, set()).add((row["ticket"] != "winning", label))
    return {directory: min(labels)[1] for directory, labels in names.items()}


def _group_tickets(labels: dict[epath.Path, str]) -> dict[tuple, dict[str, epath.Path]]:
    """Ticket directories by (model, level, seed) of their ``ticket.json``, then by name.
    Only the JSON is read here, so the masks of one group at a time are in memory."""
    groups: dict[tuple, dict[str, epath.Path]] = {}
    for directory in sorted(labels):
        if not (directory / "ticket.json").is_file():
            raise UserError(f"{directory} is not a ticket directory (no ticket.json)")
        info = read_json(directory / "ticket.json")
        missing = [key for key in ("model", "level", "seed") if key not in info]
        if missing:
            raise UserError(f"{directory / 'ticket.json'} lacks {', '.join(missing)}")
        group = groups.setdefault((info["model"], info["level"], info["seed"]), {})
        label = labels[directory]
        if label in group:
            raise UserError(f"two tickets named {label!r} at level {info['level']}, seed {info['seed']}: {group[label]} and {directory}")
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
        raise UserError(f"two tickets share no prunable layer of equal shape (layers: {', '.join(skipped)})")
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
    workdir_of_row: Callable[[dict], str | os.PathLike] | None = None,
    prunable: Prunable | None = None,
) -> list[dict]:
    """Mask overlap between the winning tickets of different sources (the targets' own
    tickets included, named e.g. ``"cifar10 (sgd, own)"``) of the same model, IMP
    level and seed (read from each ``ticket.json``).

    ``workdir_of_row(row)`` is the directory a row's ``ticket_dir`` is relative to
    (default: the ``workdir`` key that :func:`load_rows` adds). Every ticket
    directory is loaded once and every pair counted once, however many targets
    used it. Rows: ``{a, b, model, level, seed, init, fraction_remaining, iou, layers:
    [{path, iou}], skipped: [paths]}`` where ``init`` is :func:`init_relation` and ``iou`` is over the kept weights of the
    prunable layers of equal shape (``skipped``: the others) and
    ``fraction_remaining`` the two masks' mean density over those layers.
    """
    if workdir_of_row is None:
        if any("workdir" not in row for row in rows):
            raise UserError("rows lack a 'workdir' key: load them with load_rows or pass workdir_of_row")
        workdir_of_row = operator.itemgetter("workdir")
    overlaps = []
    for (model, level, seed), tickets in sorted(_group_tickets(_ticket_labels(rows, workdir_of_row)).items()):
        loaded = {label: load_ticket(directory) for label, directory in tickets.items()}
        for a, b in itertools.combinations(sorted(loaded), 2):
            pair = _pair_overlap(loaded[a].mask, loaded[b].mask, prunable or default_prunable)
            overlaps.append({"a": a, "b": b, "model": model, "level": level, "seed": seed,
                             "init": init_relation(loaded[a].info, loaded[b].info), **pair})
    return overlaps


def _overlap_means(overlaps: Sequence[dict]) -> list[dict]:
    """Overlaps averaged over seeds per (model, a, b, level): how the pair's initializations
    relate (``mixed`` when the seeds differ), mean fraction remaining, IoU mean and population
    std, seeds, skipped layers."""
    if not overlaps:
        raise UserError("no mask overlaps (no two winning tickets share a model, level and seed)")
    groups: dict[tuple, list[dict]] = {}
    for row in overlaps:
        groups.setdefault((row["model"], row["a"], row["b"], row["level"]), []).append(row)
    means = []
    for (model, a, b, level), members in sorted(groups.items()):
        iou_mean, iou_std = mean_std([row["iou"] for row in sorted(members, key=lambda row: row["seed"])])
        inits = {row.get("init", "independent") for row in members}
        means.append({
            "model": model, "a": a, "b": b, "level": level, "init": inits.pop() if len(inits) == 1 else "mixed",
            "fraction_remaining": float(np.mean([row["fraction_remaining"] for row in members])),
            "iou_mean": iou_mean, "iou_std": iou_std,
            "seeds": sorted(row["seed"] for row in members),
            "skipped": sorted({path for row in members for path in row["skipped"]}),
        })
    return means


def _pair_name(row: dict, several_models: bool) -> str:
    shared = "" if row["init"] == "independent" else f" ({row['init']} init)"
    return (f"{row['model']}: " if several_models else "") + f"{row['a']} vs {row['b']}{shared}"


def plot_overlaps(overlaps: Sequence[dict]) -> Figure:
    """Overall mask IoU against the fraction of weights pruned, one curve per pair of
    tickets (mean ± std over seeds; dotted: the two tickets share their initialization),
    and the IoU of two independent random masks of that density (dashed grey), the
    reference for the pairs with independent initializations; both axes log-scale."""
    means = _overlap_means(overlaps)
    several_models = len({row["model"] for row in means}) > 1
    fig = plots.figure((8, 4.5))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["tab10"]
    pairs: dict[str, list[dict]] = {}
    for row in means:
        pairs.setdefault(_pair_name(row, several_models), []).append(row)
    for i, (name, points) in enumerate(pairs.items()):
        style = "-" if points[0]["init"] == "independent" else ":"
        mean_std_curve(ax, points, mean="iou_mean", std="iou_std", color=cmap(i % 10), lw=1.5, ls=style, label=name)
    sparsity_axis(ax, [row["fraction_remaining"] for row in means])
    density = np.geomspace(ax.get_xlim()[1], 1, 200)
    ax.plot(density, chance_iou(density), color="grey", ls="--", lw=1.2, label="chance, independent inits: d / (2 - d)")
    # log: at 99% pruned both IoU and chance are ~0.01, and their ratio is what matters
    ax.set(ylabel="IoU of the kept weights (log scale)", yscale="log", title="Mask overlap of winning tickets (same level and seed)")
    bottom, top = ax.get_ylim()
    ticks = [t for t in log_ticks(bottom) if bottom <= t <= top]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])  # 0.01 rather than 10⁻², also within a decade
    ax.yaxis.set_minor_locator(ticker.NullLocator())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def overlap_rows(overlaps: Sequence[dict]) -> list[dict]:
    """The rows of :func:`overlap_table` (for CSV): model, pair, initializations, level,
    fraction remaining, IoU mean and std, chance IoU (empty unless independent), seeds."""
    return [{"model": row["model"], "a": row["a"], "b": row["b"], "init": row["init"], "level": row["level"],
             "fraction_remaining": row["fraction_remaining"], "iou_mean": row["iou_mean"], "iou_std": row["iou_std"], "chance_iou": _chance(row),
             "seeds": " ".join(map(str, row["seeds"]))} for row in _overlap_means(overlaps)]


def overlap_table(overlaps: Sequence[dict]) -> str:
    """A Markdown table of the overlaps averaged over seeds: pair (marked when its tickets
    share an initialization), level, remaining %, overall IoU (mean ± std), chance IoU
    (``–`` for a shared initialization, where it does not apply), seeds; then the layers
    skipped per pair."""
    means = _overlap_means(overlaps)
    several_models = len({row["model"] for row in means}) > 1
    lines = ["| pair | level | remaining % | IoU | chance IoU | seeds |", "|---|---|---|---|---|---|"]
    for row in means:
        lines.append(
            f"| {_pair_name(row, several_models)} | {row['level']} | {100 * row['fraction_remaining']:.2f} | "
            f"{row['iou_mean']:.3f} ± {row['iou_std']:.3f} | {'–' if _chance(row) is None else f'{_chance(row):.3f}'} | "
            f"{', '.join(str(seed) for seed in row['seeds'])} |"
        )
    skipped = {_pair_name(row, several_models): row["skipped"] for row in means if row["skipped"]}
    if skipped:
        lines += ["", "Layers left out because their shapes differ between the two tickets:", ""]
        lines += [f"- {name}: {', '.join(paths)}" for name, paths in skipped.items()]
    return "\n".join(lines)
