"""Instability analysis (Frankle et al. 2020): the error barrier against the rewind step, dense and for IMP tickets.

The tickets come from an IMP run of ``c.experiment``: ``find_ticket`` (image
classifiers; the recipe's seed, or every seed of ``c.seeds``, one run
directory each) or ``parallel_tasks`` (the thesis's MLPs; every seed of the
run, or ``c.seeds``), found here (``workdir/source``) or read from
``c.source_workdir``. For each seed the dense network is trained once along
the run's own level-0 trajectory up to the last rewind step asked for
(``seed_S/trunk``); then for every analysed level (0: dense) and rewind step
``k``, two copies of the level's mask applied to the weights at ``k`` are
trained with different SGD noise (``seed_S/level_LL/k_<k>/copy_C``), and the
test error along the straight path between them gives the error barrier
(``seed_S/level_LL/k_<k>/record.json``). Every one of these is a resumable stage.

Writes ``metrics.jsonl`` (one row per seed, level and ``k``, with the curve),
``instability.csv``, ``summary.json`` (per level and ``k``: the mean barrier,
the seeds stable with a 95% interval; per level the recommended rewind step
and the every-seed one; each parallel-task seed's split level) and figures
(:mod:`lth_jax.instability_plots`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from etils import epath

from lth_jax import connectivity, find_ticket, parallel_tasks
from lth_jax import recipe as recipe_lib
from lth_jax.checkpoint import load_tree
from lth_jax.errors import UserError
from lth_jax.loop import RewindState
from lth_jax.masks import count_prunable, init_mask, prunable_rule, random_mask
from lth_jax.models import MLP
from lth_jax.optim import make_optimizer
from lth_jax.sizes import BYTES_PER_PARAMETER, memory_bytes
from lth_jax.results import read_json, write_csv, write_json, write_jsonl
from lth_jax.rng import Streams, order_name
from lth_jax.stage import Stage
from lth_jax.instability_summary import by_level, format_recommendation, format_table  # noqa: F401  (importable from here)
from lth_jax.tickets import Ticket, is_imp_run, level_ticket_dir, load_ticket
from lth_jax.train import init_variables, parse_steps
from lth_jax.trajectory import weight_count

__all__ = ["EXPERIMENTS", "default_config", "image_preset", "check_config", "run", "format_table", "format_recommendation"]

EXPERIMENTS = ("find_ticket", "parallel_tasks")  # the experiments whose tickets can be analysed


def default_config(recipe: ml_collections.ConfigDict | None = None, experiment: str = "find_ticket") -> ml_collections.ConfigDict:
    """Every field of the instability experiment; ``recipe`` is a config of ``experiment``."""
    c = ml_collections.ConfigDict()
    c.experiment = experiment  # find_ticket | parallel_tasks: the experiment of the recipe
    c.recipe = recipe_lib.default_config() if recipe is None else recipe  # the IMP run whose tickets are analysed
    c.source_workdir = ""  # an existing workdir of that experiment (its own recipe is used); empty: run it here
    c.seeds = ()  # find_ticket: one run per seed (empty: the recipe's seed); parallel_tasks: the run's seeds (empty: all)
    c.rewind_steps = "0,1ep,2ep,4ep"  # k, comma-separated: steps, "Nit" or "Nep"
    c.levels = (0,)  # IMP levels whose tickets are analysed (0: the dense network)
    c.alphas = connectivity.ALPHAS  # points on the path, both ends included
    c.threshold = connectivity.STABLE_BARRIER  # stable: barrier (test error) below this
    c.noise = "data_order"  # what the two copies differ in: data_order | data_order_and_augmentation
    c.vmap = False  # train copies as replicas of one program (in-memory datasets, small models)
    c.pairs_per_program = 0  # with vmap: pairs of copies per program, of one rewind step (0: auto, see _analyse)
    c.random_tickets = False  # also each sparse level's random ticket: its layers' counts, a random mask, the same weights
    c.eval_batch_size = 1000
    c.bn_batches = 10  # training batches that recompute BatchNorm statistics at every α
    return c


def image_preset(recipe: ml_collections.ConfigDict, levels: tuple[int, ...]) -> ml_collections.ConfigDict:
    """The CIFAR presets' analysis of a find_ticket ``recipe``: tickets found with late resetting to
    epoch 1 up to the last of ``levels``, rewind steps 0-10000 iterations, SGD noise of data order
    and augmentation (the paper's)."""
    recipe.rewind = "1ep"
    recipe.pruning.levels = max(levels)
    c = default_config(recipe)
    c.levels = tuple(levels)
    c.rewind_steps = "0,100it,500it,2000it,10000it"
    c.noise = "data_order_and_augmentation"
    return c


def check_config(c) -> None:
    """Refuse (``UserError`` naming the field) settings of the analysis that cannot be used."""
    if c.experiment not in EXPERIMENTS:
        raise UserError(f"experiment={c.experiment!r} is not one of {', '.join(EXPERIMENTS)}")
    if c.noise not in connectivity.NOISES:
        raise UserError(f"noise={c.noise!r} is not one of {', '.join(connectivity.NOISES)}")
    if not 0 < float(c.threshold) < 1:
        raise UserError(f"threshold={c.threshold} is outside (0, 1): it is a test-error difference")
    if int(c.pairs_per_program) < 0:
        raise UserError(f"pairs_per_program={c.pairs_per_program} is negative: give 0 (all that fit) or a count")
    if int(c.alphas) < 2:
        raise UserError(f"alphas={c.alphas}: the path needs at least its two ends")
    for k in str(c.rewind_steps).split(","):
        if not re.fullmatch(r"\s*\d+(\.\d*)?\s*(ep|it)?\s*", k):
            raise UserError(f"rewind_steps={c.rewind_steps}: {k.strip()!r} is not a step count, 'Nit' or 'Nep' (e.g. 0,500it,1ep)")
    if not c.levels or min(int(level) for level in c.levels) < 0:
        raise UserError(f"levels={','.join(map(str, c.levels))}: give IMP levels (0 is the dense network)")


# ---------------------------------------------------------------------------- where the tickets come from


@dataclasses.dataclass
class _Source:
    """An IMP run's recipe as the library's objects, and where its seeds' runs are."""

    recipe: ml_collections.ConfigDict
    directory: epath.Path
    model: Any
    objective: Any
    train_data: Any
    eval_data: Any  # what a training early-stops on (the recipe's own choice)
    test_data: Any  # what the error along the path is measured on
    config: Any  # TrainConfig
    preprocess: Any
    seeds: list[int]
    exclude: tuple
    title: str
    find: Callable[[Callable], dict]  # runs (or resumes) the experiment into ``directory``
    runs: dict  # seed -> the directory of that seed's IMP run
    max_level: int  # the recipe's last pruning level
    per_seed_runs: bool = False  # parallel_tasks: one run of every seed, stopping at its split or degradation

    def run_dir(self, seed: int) -> epath.Path:
        return self.runs[seed]


def _read_recipe(c, check: Callable[[epath.Path], bool]) -> tuple[ml_collections.ConfigDict, epath.Path | None]:
    if not c.source_workdir:
        return c.recipe, None
    source = epath.Path(c.source_workdir)
    if not check(source) or not (source / "config.json").exists():
        raise UserError(f"--config.source_workdir={c.source_workdir} is not a {c.experiment} workdir (no finished run with a config.json)")
    saved = read_json(source / "config.json")
    return ml_collections.ConfigDict(saved["config"] if c.experiment == "find_ticket" else saved["experiment"]), source


def _find_ticket_source(c, workdir: epath.Path, data) -> _Source:
    """One find_ticket run (the recipe's seed), or with ``c.seeds`` (or a source run of several
    seeds) one per seed (``source/seed_<s>``)."""
    base = epath.Path(c.source_workdir) if c.source_workdir else None
    given = [int(s) for s in c.seeds]
    if base is not None and not given and not is_imp_run(base) and (base / "config.json").exists():
        given = [int(s) for s in read_json(base / "config.json").get("config", {}).get("seeds") or ()]  # find_ticket --config.seeds
    several = bool(given) and not (base is not None and is_imp_run(base))
    seeds = given if several else None
    if base is not None and several:  # a directory of seed_<s> runs
        missing = [s for s in seeds if not is_imp_run(base / f"seed_{s}")]
        if missing:
            raise UserError(f"--config.source_workdir={c.source_workdir} has no find_ticket run for seed {missing[0]} "
                            f"(expected {os.fspath(base / f'seed_{missing[0]}')})")
        recipe = ml_collections.ConfigDict(read_json(base / f"seed_{seeds[0]}" / "config.json")["config"])
    else:
        recipe, base = _read_recipe(c, is_imp_run)
        if base is not None and c.seeds and [int(s) for s in c.seeds] != [int(recipe.seed)]:
            raise UserError(f"seeds={','.join(map(str, c.seeds))}: {c.source_workdir} is one run, of seed {recipe.seed}: "
                            f"give --config.seeds={recipe.seed}, or a directory of seed_<s> runs")
    directory = workdir / "source" if base is None else base
    seeds = seeds or [int(recipe.seed)]
    runs = {s: directory / f"seed_{s}" for s in seeds} if several else {seeds[0]: directory}
    data = recipe_lib.load_data(recipe) if data is None else data
    args, kwargs = recipe_lib.imp_arguments(recipe, data)
    model, objective, train_data, eval_data, config, _ = args

    def find(log_fn) -> dict:  # every seed in one run: replicas of one program where they fit
        grouped = ml_collections.ConfigDict(recipe.to_dict())
        grouped.seed, grouped.seeds = seeds[0], tuple(seeds) if several else ()
        find_ticket.find_ticket(grouped, directory if several else runs[seeds[0]], data=data, log_fn=log_fn)
        return {}

    return _Source(recipe, directory, model, objective, train_data, eval_data, eval_data, config, kwargs["preprocess"], seeds,
                   tuple(recipe.pruning.exclude), f"{recipe.model} on {recipe.dataset} ({recipe.optimizer.name})", find, runs,
                   len(recipe_lib.planned_trajectory(recipe)) - 1)


def _parallel_tasks_source(c, workdir: epath.Path) -> _Source:
    recipe, source = _read_recipe(c, lambda d: (d / "imp").exists())
    directory = workdir / "source" if source is None else source
    thesis = parallel_tasks.ThesisConfig.from_config(recipe)
    data = parallel_tasks.load_task_data(thesis.dataset, data_seed=thesis.data_seed, num_tasks=thesis.num_tasks,
                                         data_dir=thesis.data_dir, download=thesis.download)
    setup = parallel_tasks._Setup.build(thesis, data)
    seeds = [int(s) for s in (c.seeds or thesis.seeds)]
    missing = sorted(set(seeds) - set(int(s) for s in thesis.seeds))
    if missing:
        raise UserError(f"seeds={','.join(map(str, c.seeds))}: the run has no seed {missing[0]} (its seeds: {list(thesis.seeds)})")
    return _Source(recipe, directory, MLP(setup.shape), setup.objective, setup.train_data, setup.eval_data, data.test, setup.train, None,
                   seeds, (), f"MLP {'-'.join(map(str, setup.shape))} on {thesis.dataset}",
                   lambda log_fn: parallel_tasks.run_parallel_tasks(thesis, directory, log_fn=log_fn),
                   {s: directory / "imp" / f"seed_{s}" for s in seeds}, len(setup.plan.trajectory(weight_count(setup.shape))) - 1,
                   per_seed_runs=True)


class _Plan:
    """What the experiment trains."""

    def __init__(self, c, workdir: epath.Path, data=None):
        check_config(c)
        self.source = _find_ticket_source(c, workdir, data) if c.experiment == "find_ticket" else _parallel_tasks_source(c, workdir)
        config = self.source.config
        spe = self.source.train_data.steps_per_epoch(config.batch_size, config.drop_remainder)
        total = config.epochs * spe
        try:
            self.steps = sorted({parse_steps(k.strip(), spe) for k in str(c.rewind_steps).split(",")})
        except UserError as e:
            raise UserError(f"rewind_steps={c.rewind_steps}: {e}") from None
        if self.steps[-1] >= total:
            raise UserError(f"rewind_steps={c.rewind_steps}: give steps before the end of training ({total} steps)")
        self.config = c
        self.levels = sorted({int(level) for level in c.levels})
        if self.levels[-1] > self.source.max_level:  # before the source's IMP runs
            raise UserError(f"levels={','.join(map(str, c.levels))}: the recipe prunes {self.source.max_level} levels "
                            f"(levels 0-{self.source.max_level}); give levels in that range or more pruning levels in the recipe")
        self.tx = make_optimizer(config.optimizer, spe, total)

    def settings(self, kind: str = "instability") -> dict:
        return {"kind": kind, "experiment": self.source.title, "recipe": self.source.recipe.to_dict(),
                "source": os.fspath(self.source.directory)}


# ---------------------------------------------------------------------------- the experiment


def run(c, workdir: str | os.PathLike, *, data=None, log_fn: Callable[[str], None] = print) -> dict:
    """The instability experiment of config ``c`` (``experiments/instability.py``); resumable.
    ``data``: a find_ticket recipe's dataset, already loaded."""
    workdir = epath.Path(workdir)
    plan = _Plan(c, workdir, data)
    source = plan.source
    Stage(workdir, plan.settings()).open()
    found = None
    if not c.source_workdir and plan.levels != [0]:  # the dense network alone needs no tickets
        found = source.find(log_fn)
    rows, pairs = [], []
    for seed in source.seeds:
        example_x = next(iter(source.train_data.batches(source.config.batch_size)))["x"][:1]
        params0, batch_stats0 = init_variables(source.model, Streams(seed).init(str(source.recipe.get("init_stream", "source"))), example_x)
        levels = [level for level in plan.levels if level == 0 or not source.per_seed_runs
                  or (source.run_dir(seed) / f"level_{level:02d}" / "ticket" / "ticket.json").exists()]
        if levels != plan.levels:  # a parallel-task seed stops at its split or degradation
            log_fn(f"seed {seed}: the run stopped before level {min(set(plan.levels) - set(levels))}; "
                   + (f"its levels {levels} are analysed" if levels else "it has none of the levels asked for"))
        if not levels:
            continue
        tickets = {level: _ticket(source, seed, level, params0) for level in levels}
        trunk = connectivity.trunk_states(source.model, source.objective, source.train_data, source.eval_data, source.config, plan.tx,
                                          plan.steps, seed=seed, params0=params0, batch_stats0=batch_stats0,
                                          stage=Stage(workdir / f"seed_{seed}" / "trunk", plan.settings("trunk")).open(),
                                          preprocess=source.preprocess, log_fn=log_fn,
                                          batch_order=order_name(source.recipe.get("batch_order", "per_seed"),
                                                                 source.recipe.get("shared_order", 0)))
        _check_rewind(source, seed, tickets[levels[0]].info, trunk, log_fn)
        kinds = [(level, "imp") for level in levels] + [(level, "random") for level in levels if level > 0 and c.random_tickets]
        for level, kind in kinds:
            ticket = tickets[level] if kind == "imp" else _random_ticket(source, seed, level, tickets[level])
            for k in plan.steps:
                base = workdir / f"seed_{seed}" / f"level_{level:02d}" / ("" if kind == "imp" else "random") / f"k_{k:08d}"
                pairs.append(_Pair(c, base, seed, level, kind, ticket, trunk[k], source.config.checkpoint_async))
    for pair, row in zip(pairs, _analyse(plan, pairs, bool(c.vmap), log_fn)):
        row["stable"] = row["barrier"] < float(c.threshold)  # read from the barrier: a new threshold retrains nothing
        rows.append(row)
        log_fn(f"seed {pair.seed} level {pair.level}{' random' if pair.kind == 'random' else ''} k={pair.start.step}: "
               f"barrier {100 * row['barrier']:.2f}% ({'stable' if row['stable'] else 'unstable'})")
    if not rows:
        raise UserError(f"levels={','.join(map(str, c.levels))}: no seed of the source run reached any of them "
                        "(a parallel-task seed stops at its split or degradation); give earlier levels")
    write_jsonl(workdir / "metrics.jsonl", rows)
    write_csv(workdir / "instability.csv", [{k: v for k, v in r.items() if k != "curve"} for r in rows])
    summary = _summary(c, plan, rows, _split_levels(source, found))
    write_json(workdir / "summary.json", summary)
    from lth_jax import instability_plots, plots  # matplotlib: imported when a figure is drawn

    plots.save(instability_plots.plot_curves(rows, source.title), workdir / "figures" / "error_along_path.png")
    plots.save(instability_plots.plot_barriers(rows, float(c.threshold), source.title), workdir / "figures" / "barrier_vs_k.png")
    if c.experiment == "parallel_tasks":
        figure = instability_plots.plot_barrier_by_level(rows, summary["split_levels"], float(c.threshold), source.title)
        plots.save(figure, workdir / "figures" / "barrier_vs_level.png")
    return summary


def _ticket(source: _Source, seed: int, level: int, params0) -> Ticket:
    """The ticket of ``level`` in the source run; level 0 of a run not found (yet) is the dense mask."""
    directory = source.run_dir(seed) / f"level_{level:02d}" / "ticket"
    if level == 0 and not (directory / "ticket.json").exists():
        total = count_prunable(params0, prunable_rule(source.exclude))
        return Ticket(jax.device_get(init_mask(params0)), params0, {}, {"weights_remaining": total, "fraction_remaining": 1.0})
    return load_ticket(level_ticket_dir(source.run_dir(seed), level))


def _random_ticket(source: _Source, seed: int, level: int, ticket: Ticket) -> Ticket:
    """The random ticket of ``level``: each layer keeps the IMP ticket's count, at random places (the
    seed's random-ticket stream); the weights are those at each rewind step, as the IMP ticket's."""
    mask = random_mask(ticket.mask, Streams(seed).random_ticket(level), scope="layer", prunable=prunable_rule(source.exclude))
    return Ticket(jax.device_get(mask), ticket.params, ticket.batch_stats, {**ticket.info, "kind": "random"})


def _check_rewind(source: _Source, seed: int, info: dict, trunk: dict, log_fn) -> None:
    """The trunk follows the source run's level 0: at its rewind step, the same weights."""
    k = int(info.get("rewind_step", -1))
    rewind = source.run_dir(seed) / "level_00" / "rewind"
    if k not in trunk or not (rewind / "arrays.npz").exists():
        return
    saved = load_tree(rewind)["params"]
    if not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(trunk[k].params))):
        log_fn(f"note: seed {seed}: the dense training here does not reproduce the source run's weights at its rewind step {k} "
               "(another machine, device count, executor or version); the analysis uses the weights trained here")


class _Pair:
    """The barrier of a ticket's mask at one rewind step: a stage, and its two copies' stages."""

    def __init__(self, c, base: epath.Path, seed: int, level: int, kind: str, ticket: Ticket, start: RewindState,
                 checkpoint_async: bool = False):
        self.seed, self.level, self.kind, self.ticket, self.start = seed, level, kind, ticket, start
        self.settings = {"seed": seed, "level": level, "rewind_step": start.step, "noise": c.noise, "alphas": int(c.alphas),
                         "bn_batches": int(c.bn_batches), "weights_remaining": ticket.info["weights_remaining"],
                         **({"ticket": kind} if kind != "imp" else {})}
        self.stage = Stage(base, self.settings)
        self.copies = [Stage(base / f"copy_{i}", {**self.settings, "copy": i}, checkpoint_async=checkpoint_async) for i in (0, 1)]


def _analyse(plan: _Plan, pairs: list[_Pair], vmap: bool, log_fn) -> list[dict]:
    """The row of every pair: read back where done; else its copies trained (every pair's of one rewind
    step together, as replicas of one program with ``vmap``, in chunks that fit in memory) and the
    error along the path between them measured on the test set."""
    source, c = plan.source, plan.config
    rows: list[dict | None] = [({"ticket": p.kind, **p.stage.record()} if p.stage.open().done else None) for p in pairs]
    todo = [i for i, row in enumerate(rows) if row is None]
    parameters = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(pairs[0].ticket.params)) if pairs else 0
    # Pairs a program trains: as asked (at most what fits in memory); by default all that fit on an accelerator, and one on
    # a CPU, where a replica costs its full arithmetic and larger programs were slower (BUILD_NOTES, "Instability analysis").
    fit = max(1, memory_bytes() // 2 // max(1, 2 * BYTES_PER_PARAMETER * parameters))
    asked = int(c.pairs_per_program) or (1 if jax.default_backend() == "cpu" else fit)
    chunk = min(fit, asked) if vmap else 1
    for k in sorted({pairs[i].start.step for i in todo}):
        at_k = [i for i in todo if pairs[i].start.step == k]
        for group in (at_k[j:j + chunk] for j in range(0, len(at_k), chunk)):
            trained = connectivity.train_copy_pairs(
                source.model, source.objective, source.train_data, source.eval_data, source.config, plan.tx,
                [connectivity.CopyPair(pairs[i].start, pairs[i].ticket.mask, pairs[i].seed, pairs[i].copies) for i in group],
                noise=c.noise, vmap=vmap, preprocess=source.preprocess, log_fn=lambda line: None)
            for i, copies in zip(group, trained):
                rows[i] = _row(plan, pairs[i], copies)
    return rows


def _row(plan: _Plan, pair: _Pair, copies: list[dict]) -> dict:
    """A pair's row from its trained copies: the curve on the test set, the barriers (its stage finished)."""
    source, c = plan.source, plan.config
    curve = connectivity.interpolation_curve(source.model, source.objective, copies[0]["params"], copies[1]["params"], source.test_data,
                                             mask=pair.ticket.mask, batch_stats=copies[0]["batch_stats"], bn_data=source.train_data,
                                             bn_batches=int(c.bn_batches), alphas=int(c.alphas), batch_size=int(c.eval_batch_size),
                                             preprocess=source.preprocess)
    row = {
        "seed": pair.seed, "level": pair.level, "ticket": pair.kind, "weights_remaining": pair.ticket.info["weights_remaining"],
        "fraction_remaining": pair.ticket.info["fraction_remaining"], "rewind_step": pair.start.step,
        "barrier": connectivity.error_barrier(curve["error"]), "loss_barrier": connectivity.error_barrier(curve["loss"]),
        "end_errors": [curve["error"][0], curve["error"][-1]], "copy_epochs": [cp["record"]["epochs"] for cp in copies],
        "diverged": any(cp["record"]["diverged"] for cp in copies), "curve": curve,
    }
    pair.stage.finish(row)
    return row


def _split_levels(source: _Source, found: dict | None) -> dict:
    """Per seed, the level at which a parallel-task run split (``None``: never)."""
    if not source.per_seed_runs:
        return {}
    path = source.directory / "summary.json"
    summary = found if found is not None else (read_json(path) if path.exists() else {})
    seeds = summary.get("seeds", {})
    return {str(s): seeds[str(s)]["split_level"] for s in source.seeds if str(s) in seeds}


def _summary(c, plan: _Plan, rows: list[dict], split_levels: dict) -> dict:
    threshold, seeds = float(c.threshold), plan.source.seeds
    levels = by_level([r for r in rows if r["ticket"] == "imp"], plan.steps, seeds, threshold)
    random = by_level([r for r in rows if r["ticket"] == "random"], plan.steps, seeds, threshold)
    first = next((level for level in plan.levels if str(level) in levels), None)  # no seed may reach a level asked for
    return {"experiment": plan.source.title, "threshold": threshold, "noise": c.noise, "seeds": seeds,
            "rewind_steps": plan.steps, "levels": levels, **({"random_tickets": random} if random else {}), "split_levels": split_levels,
            "recommended_rewind_step": None if first is None else levels[str(first)]["recommended_rewind_step"],
            "every_seed_stable_step": None if first is None else levels[str(first)]["every_seed_stable_step"],
            "recommended_for_level": first}
