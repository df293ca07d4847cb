"""Instability analysis (Frankle et al. 2020): the error barrier against the rewind step, dense and for IMP tickets.

For a find_ticket run (found here into ``workdir/source``, or an existing one
given as ``source_workdir``), the dense network is trained once along the
run's own level-0 trajectory up to the last rewind step asked for
(``trunk/``); then for every analysed level (0: dense) and every rewind step
``k``, two copies of the level's mask applied to the weights at ``k`` are
trained to the end with different data orders (``level_LL/k_<k>/copy_C``), and
the test error along the straight path between them gives the error barrier
(``level_LL/k_<k>/record.json``). Every one of these is a resumable stage.
Writes ``metrics.jsonl`` (one row per level and ``k``, with the curve),
``instability.csv``, ``summary.json`` (per level the barriers, and the
recommended rewind step: the smallest ``k`` whose barrier is below the
threshold) and ``figures/error_along_path.png`` and ``figures/barrier_vs_k.png``.
"""

from __future__ import annotations

import os
import re
from typing import Callable

import jax
import ml_collections
import numpy as np
from etils import epath

from lth_jax import connectivity
from lth_jax.errors import UserError
from lth_jax.find_ticket import imp_arguments, default_config as find_ticket_config, find_ticket, load_data
from lth_jax.loop import RewindState
from lth_jax.optim import make_optimizer
from lth_jax.results import read_json, write_csv, write_json, write_jsonl
from lth_jax.rng import Streams
from lth_jax.stage import Stage
from lth_jax.masks import count_prunable, init_mask, prunable_rule
from lth_jax.tickets import Ticket, is_imp_run, level_ticket_dir, load_ticket
from lth_jax.train import init_variables, parse_steps

__all__ = ["default_config", "run", "source_recipe", "plot_curves", "plot_barriers", "format_table"]


def default_config(recipe: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
    """Every field of the instability experiment; ``recipe`` is a find_ticket config."""
    c = ml_collections.ConfigDict()
    c.recipe = find_ticket_config() if recipe is None else recipe  # the run whose tickets are analysed (find_ticket)
    c.source_workdir = ""  # an existing find_ticket workdir (its own recipe is used); empty: find the tickets here
    c.rewind_steps = "0,1ep,2ep,4ep"  # k, comma-separated: steps, "Nit" or "Nep"
    c.levels = (0,)  # IMP levels whose tickets are analysed (0: the dense network)
    c.alphas = connectivity.ALPHAS  # points on the path, both ends included
    c.threshold = connectivity.STABLE_BARRIER  # stable: barrier (test error) below this
    c.noise = "data_order"  # what the two copies differ in: data_order | data_order_and_augmentation
    c.vmap = False  # train both copies in one program (in-memory datasets, small models)
    c.eval_batch_size = 1000
    c.bn_batches = 10  # training batches that recompute BatchNorm statistics at every α
    return c


def source_recipe(c) -> tuple[ml_collections.ConfigDict, epath.Path]:
    """The find_ticket config and workdir of the tickets: ``source_workdir``'s own, or ``c.recipe``."""
    if not c.source_workdir:
        return c.recipe, None
    source = epath.Path(c.source_workdir)
    if not is_imp_run(source) or not (source / "config.json").exists():
        raise UserError(f"--config.source_workdir={c.source_workdir} is not a find_ticket workdir (no IMP run with a config.json)")
    return ml_collections.ConfigDict(read_json(source / "config.json")["config"]), source


def check_config(c) -> None:
    """Refuse (``UserError`` naming the field) settings of the analysis that cannot be used."""
    if c.noise not in connectivity.NOISES:
        raise UserError(f"noise={c.noise!r} is not one of {', '.join(connectivity.NOISES)}")
    if not 0 < float(c.threshold) < 1:
        raise UserError(f"threshold={c.threshold} is outside (0, 1): it is a test-error difference")
    if int(c.alphas) < 2:
        raise UserError(f"alphas={c.alphas}: the path needs at least its two ends")
    for k in str(c.rewind_steps).split(","):
        if not re.fullmatch(r"\s*\d+(\.\d*)?\s*(ep|it)?\s*", k):
            raise UserError(f"rewind_steps={c.rewind_steps}: {k.strip()!r} is not a step count, 'Nit' or 'Nep' (e.g. 0,500it,1ep)")


class _Plan:
    """What the experiment trains, from the source run's recipe."""

    def __init__(self, c, workdir: epath.Path, log_fn, data=None):
        check_config(c)
        self.recipe, source = source_recipe(c)
        self.source = workdir / "source" if source is None else source
        self.data = load_data(self.recipe) if data is None else data
        args, kwargs = imp_arguments(self.recipe, self.data)
        self.model, self.objective, self.train_data, self.eval_data, self.config, _ = args
        self.seed, self.preprocess = int(kwargs["seed"]), kwargs["preprocess"]
        spe = self.train_data.steps_per_epoch(self.config.batch_size, self.config.drop_remainder)
        total = self.config.epochs * spe
        given = [k.strip() for k in str(c.rewind_steps).split(",") if k.strip()]
        try:
            self.steps = sorted({parse_steps(k, spe) for k in given})
        except UserError as e:
            raise UserError(f"rewind_steps={c.rewind_steps}: {e}") from None
        if not self.steps or self.steps[-1] >= total:
            raise UserError(f"rewind_steps={c.rewind_steps}: give steps before the end of training ({total} steps)")
        self.levels = sorted({int(level) for level in c.levels})
        if not self.levels or self.levels[0] < 0:
            raise UserError(f"levels={','.join(map(str, c.levels))}: give IMP levels (0 is the dense network)")
        self.tx = make_optimizer(self.config.optimizer, spe, total)
        self.log = log_fn

    def settings(self) -> dict:
        return {"kind": "instability", "recipe": self.recipe.to_dict(), "source": os.fspath(self.source)}


def _row(level: int, ticket_info: dict, k: int, copies: list[dict], curve: dict, threshold: float) -> dict:
    barrier = connectivity.error_barrier(curve["error"])
    return {
        "level": level, "weights_remaining": ticket_info["weights_remaining"], "fraction_remaining": ticket_info["fraction_remaining"],
        "rewind_step": k, "barrier": barrier, "loss_barrier": connectivity.error_barrier(curve["loss"]),
        "stable": barrier < threshold, "end_errors": [curve["error"][0], curve["error"][-1]],
        "copy_epochs": [cp["record"]["epochs"] for cp in copies], "diverged": any(cp["record"]["diverged"] for cp in copies),
        "curve": curve,
    }


def format_table(rows: list[dict]) -> str:
    """The barrier of every level (rows) at every rewind step (columns), in percent of test error."""
    steps = sorted({r["rewind_step"] for r in rows})
    levels = sorted({(r["level"], r["fraction_remaining"]) for r in rows})
    head = f"{'level':>5} {'weights':>8} " + " ".join(f"{'k=' + str(k):>9}" for k in steps)
    lines = [head, "-" * len(head)]
    for level, fraction in levels:
        by_k = {r["rewind_step"]: r for r in rows if r["level"] == level}
        cells = [f"{100 * by_k[k]['barrier']:8.2f}{'*' if by_k[k]['stable'] else ' '}" if k in by_k else f"{'':>9}" for k in steps]
        lines.append(f"{level:>5} {100 * fraction:7.1f}% " + " ".join(cells))
    return "\n".join(lines + ["barrier: test error along the path minus the ends' mean, in %; * stable"])


def run(c, workdir: str | os.PathLike, *, data=None, log_fn: Callable[[str], None] = print) -> dict:
    """The instability experiment of config ``c`` (``experiments/instability.py``); resumable.
    ``data``: the recipe's dataset, already loaded."""
    workdir = epath.Path(workdir)
    plan = _Plan(c, workdir, log_fn, data)
    Stage(workdir, plan.settings()).open()
    if not c.source_workdir and plan.levels != [0]:  # the dense network alone needs no tickets
        find_ticket(plan.recipe, plan.source, data=plan.data, log_fn=log_fn)
    example_x = next(iter(plan.train_data.batches(plan.config.batch_size)))["x"][:1]
    params0, batch_stats0 = init_variables(plan.model, Streams(plan.seed).init(), example_x)
    tickets = {level: _ticket(plan, level, params0) for level in plan.levels}
    trunk = connectivity.trunk_states(plan.model, plan.objective, plan.train_data, plan.eval_data, plan.config, plan.tx, plan.steps,
                                     seed=plan.seed, params0=params0, batch_stats0=batch_stats0,
                                     stage=Stage(workdir / "trunk", {"kind": "trunk", **plan.settings()}).open(),
                                     preprocess=plan.preprocess, log_fn=log_fn)
    _check_rewind(plan, tickets[plan.levels[0]].info, trunk, log_fn)
    rows = []
    for level in plan.levels:
        ticket = tickets[level]
        for k in plan.steps:
            rows.append(_analyse(c, plan, workdir, level, ticket, trunk[k]))
            rows[-1]["stable"] = rows[-1]["barrier"] < float(c.threshold)  # the threshold reads the barrier: changing it retrains nothing
            log_fn(f"level {level} k={k}: barrier {100 * rows[-1]['barrier']:.2f}% ({'stable' if rows[-1]['stable'] else 'unstable'})")
    write_jsonl(workdir / "metrics.jsonl", rows)
    write_csv(workdir / "instability.csv", [{k: v for k, v in r.items() if k != "curve"} for r in rows])
    summary = _summary(c, plan, rows)
    write_json(workdir / "summary.json", summary)
    from lth_jax import plots  # matplotlib: imported when a figure is drawn

    title = f"{plan.recipe.model} on {plan.recipe.dataset} ({plan.recipe.optimizer.name})"
    plots.save(plot_curves(rows, title), workdir / "figures" / "error_along_path.png")
    plots.save(plot_barriers(rows, float(c.threshold), title), workdir / "figures" / "barrier_vs_k.png")
    return summary


def _ticket(plan: _Plan, level: int, params0) -> Ticket:
    """The ticket of ``level`` in the source run; level 0 of a run not found (yet) is the dense mask."""
    directory = plan.source / f"level_{level:02d}" / "ticket"
    if level == 0 and not (directory / "ticket.json").exists():
        total = count_prunable(params0, prunable_rule(tuple(plan.recipe.pruning.exclude)))
        return Ticket(jax.device_get(init_mask(params0)), params0, {}, {"weights_remaining": total, "fraction_remaining": 1.0})
    return load_ticket(level_ticket_dir(plan.source, level))


def _check_rewind(plan: _Plan, info: dict, trunk: dict, log_fn) -> None:
    """The trunk follows the source run's level 0: at its rewind step, the same weights."""
    k = int(info.get("rewind_step", -1))
    rewind = plan.source / "level_00" / "rewind"
    if k not in trunk or not (rewind / "arrays.npz").exists():
        return
    from lth_jax.checkpoint import load_tree

    saved = load_tree(rewind)["params"]
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(trunk[k].params)))
    if not same:
        log_fn(f"note: the dense training here does not reproduce the source run's weights at its rewind step {k} "
               "(another machine, device count or version); the analysis uses the weights trained here")


def _analyse(c, plan: _Plan, workdir: epath.Path, level: int, ticket, start: RewindState) -> dict:
    """The barrier of ``level``'s mask at rewind step ``start.step`` (a stage; its copies are stages)."""
    base = workdir / f"level_{level:02d}" / f"k_{start.step:08d}"
    settings = {"level": level, "rewind_step": start.step, "noise": c.noise, "alphas": int(c.alphas), "bn_batches": int(c.bn_batches),
                "weights_remaining": ticket.info["weights_remaining"]}
    stage = Stage(base, settings).open()
    if stage.done:
        return stage.record()
    copy_stages = [Stage(base / f"copy_{i}", {**settings, "copy": i}, checkpoint_async=plan.config.checkpoint_async) for i in (0, 1)]
    copies = connectivity.train_copies(plan.model, plan.objective, plan.train_data, plan.eval_data, plan.config, plan.tx, start,
                                      ticket.mask, seed=plan.seed, noise=c.noise, stages=copy_stages, vmap=bool(c.vmap),
                                      preprocess=plan.preprocess, log_fn=lambda line: None)
    curve = connectivity.interpolation_curve(plan.model, plan.objective, copies[0]["params"], copies[1]["params"], plan.eval_data,
                                            mask=ticket.mask, batch_stats=copies[0]["batch_stats"], bn_data=plan.train_data,
                                            bn_batches=int(c.bn_batches), alphas=int(c.alphas), batch_size=int(c.eval_batch_size),
                                            preprocess=plan.preprocess)
    row = _row(level, ticket.info, start.step, copies, curve, float(c.threshold))
    stage.finish(row)
    return row


def _summary(c, plan: _Plan, rows: list[dict]) -> dict:
    levels = {}
    for level in plan.levels:
        mine = [r for r in rows if r["level"] == level]
        barriers = {r["rewind_step"]: r["barrier"] for r in mine}
        levels[str(level)] = {"fraction_remaining": mine[0]["fraction_remaining"], "barriers": {str(k): b for k, b in barriers.items()},
                              "recommended_rewind_step": connectivity.recommended_step(barriers, float(c.threshold))}
    return {"model": plan.recipe.model, "dataset": plan.recipe.dataset, "threshold": float(c.threshold), "noise": c.noise,
            "rewind_steps": plan.steps, "levels": levels,
            "recommended_rewind_step": levels[str(plan.levels[0])]["recommended_rewind_step"]}


def plot_curves(rows: list[dict], title: str = ""):
    """Test error along the path between the two copies, one panel per level, one line per rewind step."""
    from lth_jax import plots

    levels = sorted({r["level"] for r in rows})
    fig = plots.figure((4.2 * len(levels), 3.4))
    axes = fig.subplots(1, len(levels), squeeze=False)[0]
    steps = sorted({r["rewind_step"] for r in rows})
    colors = plots.seed_colors(len(steps))
    for ax, level in zip(axes, levels):
        mine = sorted((r for r in rows if r["level"] == level), key=lambda r: r["rewind_step"])
        for r in mine:
            ax.plot(r["curve"]["alpha"], 100 * np.asarray(r["curve"]["error"]), color=colors[steps.index(r["rewind_step"])],
                    label=f"k={r['rewind_step']}")
        ax.set_title(f"level {level}: {100 * mine[0]['fraction_remaining']:.1f}% of weights")
        ax.set_xlabel("α (θ = (1−α)·θ₁ + α·θ₂)")
        ax.set_ylabel("test error (%)")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_barriers(rows: list[dict], threshold: float, title: str = ""):
    """Error barrier against rewind step k, one line per level (sparsity)."""
    from lth_jax import plots

    fig = plots.figure((5.5, 3.8))
    ax = fig.subplots()
    levels = sorted({r["level"] for r in rows})
    for level, color in zip(levels, plots.seed_colors(len(levels))):
        mine = sorted((r for r in rows if r["level"] == level), key=lambda r: r["rewind_step"])
        ax.plot([r["rewind_step"] for r in mine], [100 * r["barrier"] for r in mine], "o-", color=color,
                label=f"{100 * mine[0]['fraction_remaining']:.1f}% of weights")
    ax.axhline(100 * threshold, color="gray", linestyle=":", label=f"stable below {100 * threshold:g}%")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(-0.3, 1.5 * max(max(r["rewind_step"] for r in rows), 1))
    ax.set_xlabel("rewind step k (iterations)")
    ax.set_ylabel("error barrier (% test error)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
