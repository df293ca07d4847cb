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

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from etils import epath  # noqa: E402

from lth_jax import plots  # noqa: E402
from lth_jax.errors import UserError  # noqa: E402
from lth_jax.overlap import overlap_table, plot_overlaps, source_label, ticket_overlaps  # noqa: E402
from lth_jax.plots import mean_std_curve, percent_pruned, sparsity_axis  # noqa: E402
from lth_jax.results import read_jsonl, write_jsonl  # noqa: E402

__all__ = [
    "ROW_KEYS",
    "study_row",
    "StudyMetrics",
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
    "write_report",
]

TICKET_KINDS = ("winning", "random", "target_own", "dense")
GROUP_KEYS = ("source", "source_optimizer", "target", "target_optimizer", "ticket", "level")
REQUIRED_KEYS = GROUP_KEYS + ("fraction_remaining", "test_accuracy", "test_loss", "seed", "model")
DEFAULT_SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.99)
SPARSITY_TOLERANCE = 0.25  # a level stands for a sparsity when |Δ remaining| / remaining is below this
OWN_COLOR = "black"


ROW_KEYS = ("source", "source_optimizer", "target", "target_optimizer", "ticket", "level", "fraction_remaining",
            "weights_remaining", "test_accuracy", "test_loss", "train_loss", "epoch", "seed", "model", "ticket_dir")
_ROW_ID = ("source", "source_optimizer", "target", "target_optimizer", "ticket", "level", "seed")


# --------------------------------------------------------------------------- rows


def _check_row(row: dict, where: str) -> None:
    missing = [key for key in REQUIRED_KEYS if key not in row]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}")
    if row["ticket"] not in TICKET_KINDS:
        raise UserError(f"{where} has an unknown ticket kind {row['ticket']!r}; known kinds: {', '.join(TICKET_KINDS)}")


def _workdir_list(workdirs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    workdirs = [workdirs] if isinstance(workdirs, (str, os.PathLike)) else list(workdirs)
    if not workdirs:
        raise UserError("no workdirs given")
    return [str(workdir) for workdir in workdirs]


def load_rows(workdirs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict]:
    """The rows of every workdir's ``metrics.jsonl``, each with a ``workdir`` key
    (the workdir as given, so ``ticket_dir`` can be resolved against it).

    An experiment that several workdirs hold (the same group and seed: e.g. the
    dense and own tickets of a target that two studies, one per source, both
    trained) counts once, from the first workdir that has it.
    """
    workdirs = _workdir_list(workdirs)
    rows, seen = [], set()
    for workdir in workdirs:
        path = epath.Path(workdir) / "metrics.jsonl"
        if not path.is_file():
            raise UserError(f"workdir {workdir} has no metrics.jsonl ({path} does not exist)")
        for i, row in enumerate(read_jsonl(path)):
            _check_row(row, f"row {i} of {path}")
            key = tuple(row[k] for k in GROUP_KEYS) + (row["seed"],)
            if key not in seen:
                seen.add(key)
                rows.append({**row, "workdir": workdir})
    if not rows:
        raise UserError(f"no rows in the metrics.jsonl of {', '.join(workdirs)}")
    return rows


def study_row(record: dict, ticket_kind: str, seed: int, model: str, ticket_dir, workdir, **names) -> dict:
    """A ``metrics.jsonl`` row of a transfer study from a trained ticket's record."""
    row = {**names, "ticket": ticket_kind, "level": record["level"], "epoch": record["epochs"], "seed": seed, "model": model}
    row.update({k: record.get(k) for k in ("fraction_remaining", "weights_remaining", "test_accuracy", "test_loss", "train_loss")})
    row["ticket_dir"] = None if ticket_dir is None else os.path.relpath(os.fspath(ticket_dir), os.fspath(workdir))
    return {k: row[k] for k in ROW_KEYS}


class StudyMetrics:
    """``metrics.jsonl``, rewritten after every stage; rows of earlier runs are kept."""

    def __init__(self, path):
        self.path = path
        self.rows = {tuple(r[k] for k in _ROW_ID): r for r in (read_jsonl(path) if path.exists() else [])}

    def add(self, row: dict) -> None:
        self.rows[tuple(row[k] for k in _ROW_ID)] = row
        write_jsonl(self.path, self.all())

    def all(self) -> list[dict]:
        return [self.rows[k] for k in sorted(self.rows, key=lambda key: tuple(map(str, key[:5])) + key[5:])]


def _describe(group: tuple) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in zip(GROUP_KEYS, group))


def _summarize(group: tuple, members: list[dict]) -> dict:
    """Mean and population std over the seeds of one group (rows in seed order, so
    the result does not depend on the order the rows came in)."""
    members = sorted(members, key=lambda row: row["seed"])
    seeds = [row["seed"] for row in members]
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise UserError(f"seed {repeated[0]} appears more than once for {_describe(group)}")
    models = sorted({row["model"] for row in members})
    if len(models) > 1:
        raise UserError(f"several models ({', '.join(models)}) for {_describe(group)}: report one model at a time")
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
        raise UserError("no rows to aggregate")
    groups: dict[tuple, list[dict]] = {}
    for i, row in enumerate(rows):
        _check_row(row, f"row {i}")
        groups.setdefault(tuple(row[key] for key in GROUP_KEYS), []).append(row)
    return [_summarize(group, groups[group]) for group in sorted(groups)]


def _targets(summary: Sequence[dict]) -> list[tuple[str, str]]:
    return sorted({(row["target"], row["target_optimizer"]) for row in summary})


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
        raise UserError(f"no rows for target {target!r}; targets: {', '.join(targets)}")
    if target_optimizer is None:
        if len(optimizers) > 1:
            raise UserError(f"target {target!r} was trained with several optimizers ({', '.join(optimizers)}): pass target_optimizer")
        return optimizers[0]
    if target_optimizer not in optimizers:
        raise UserError(f"no rows for target {target!r} with optimizer {target_optimizer!r}; its optimizers: {', '.join(optimizers)}")
    return target_optimizer


def plot_target(rows: Sequence[dict], target: str, path, target_optimizer: str | None = None) -> epath.Path:
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
        mean_std_curve(ax, points, **accuracy, color=color, label=label, **_CURVE_STYLES[kind])
    for dense in (row for row in mine if row["ticket"] == "dense"):
        mean, std = 100 * dense["test_accuracy_mean"], 100 * dense["test_accuracy_std"]
        ax.axhline(mean, color="grey", ls=":", lw=1.5, label="dense")
        ax.axhspan(mean - std, mean + std, color="grey", alpha=0.12, lw=0)
    sparsity_axis(ax, [row["fraction_remaining"] for row in mine])
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


# --------------------------------------------------------------------------- report


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def write_report(workdirs: str | os.PathLike | Iterable[str | os.PathLike], out, sparsities: Sequence[float] = DEFAULT_SPARSITIES) -> epath.Path:
    """Everything about a transfer study in ``out``: ``accuracy_<target>_<optimizer>.png``
    per target, ``overlap.png`` when winning tickets can be compared, and
    ``report.md`` (the workdirs, every figure, the transfer table and the overlap
    table). Returns the path of ``report.md``."""
    workdirs = _workdir_list(workdirs)
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
