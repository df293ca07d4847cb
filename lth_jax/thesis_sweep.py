"""The thesis's grids of parallel-task experiments (E1-E4) and their report.

E1-E3 run the network extension of a base MLP at every extension level (two,
one and three hidden layers); E4 crosses widths with numbers of levels pruned
to a fixed target of 112 weights. Every point is one
:func:`lth_jax.parallel_tasks.run_parallel_tasks` experiment in
``workdir/<point>`` (resumable; the points of one MLP shape train as one IMP
run, :func:`lth_jax.parallel_tasks.run_parallel_tasks_pack`); ``sweep.jsonl`` collects each seed's run
category, and :func:`sweep_report` draws the thesis's figures and
``report.md``. :func:`run` is ``experiments/thesis_sweep.py``'s experiment
(presets: ``experiments/configs/thesis_sweep_e*.py``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from typing import Callable, Sequence

import ml_collections
from etils import epath
from ml_collections import config_dict

from lth_jax.errors import UserError
from lth_jax.parallel_tasks import ThesisConfig, pack_groups, train_parallel_tasks_pack
from lth_jax.parallel_tasks import default_config as experiment_config
from lth_jax.results import read_json, read_jsonl, remove_temporaries, write_csv, write_json, write_jsonl
from lth_jax.trajectory import weight_count

__all__ = ["GRIDS", "sweep_points", "run_sweep", "sweep_report", "default_config", "run"]

GRIDS = {
    # E1: extension levels of the two-hidden-layer base; E2: one hidden layer; E3: three.
    "e1": {"base_shape": (4, 8, 8, 2), "extension_levels": tuple(range(26))},
    "e2": {"base_shape": (4, 20, 2), "extension_levels": tuple(range(17))},
    "e3": {"base_shape": (4, 8, 8, 8, 2), "extension_levels": tuple(range(26))},
    # E4: widths × numbers of levels, pruned to a fixed target of 112 weights (p varies).
    "e4": {"widths": (31, 38, 48, 57), "level_counts": tuple(range(1, 11)), "target": 112},
}


def sweep_points(grid: str, *, extension_levels: Sequence[int] | None = None, widths=None, level_counts=None, target=None):
    """``[(name, overrides, x, y)]`` of a grid; the optional arguments narrow or change it."""
    if grid not in GRIDS:
        raise UserError(f"unknown grid {grid!r}; known grids: {', '.join(GRIDS)}")
    spec = GRIDS[grid]
    if "extension_levels" in spec:
        levels = spec["extension_levels"] if extension_levels is None else tuple(extension_levels)
        return [(f"ext_{e:02d}", {"base_shape": spec["base_shape"], "extension_level": e}, e, None) for e in levels]
    widths = spec["widths"] if widths is None else tuple(widths)
    level_counts = spec["level_counts"] if level_counts is None else tuple(level_counts)
    target = spec["target"] if target is None else target
    return [
        (f"w{w}_L{n:02d}", {"shape": (4, w, w, 2), "extension_level": None, "levels": n, "target": target, "rate": None}, n, w)
        for w in widths
        for n in level_counts
    ]


def run_sweep(grid: str, base: ThesisConfig, workdir: str | os.PathLike, *, log_fn: Callable[[str], None] = print, pack: bool = True,
              workers: int = 1, **narrow) -> list[dict]:
    """Run every point of ``grid`` into ``workdir/<point>`` (each resumable); write ``sweep.jsonl``.

    ``pack``: the points of one MLP shape (E4's numbers of levels at a width) train
    as one IMP run (:func:`lth_jax.parallel_tasks.run_parallel_tasks_pack`), otherwise
    one point at a time. ``workers``: that many points (or packs) train at once, in
    threads, the costliest first: each keeps the devices busy while another waits
    for a last seed or works on the host; another thread writes each point's
    summaries and figures as soon as its last level is trained. Neither changes
    what a point computes."""
    workdir = epath.Path(workdir)
    remove_temporaries(workdir)
    rows: list[dict] = []
    points = sweep_points(grid, **narrow)
    configs = [dataclasses.replace(base, **overrides) for _, overrides, _, _ in points]
    groups = pack_groups(configs, pack)

    def train_group(group: list[int]) -> Callable[[], list[dict]]:
        for i in group:
            log_fn(f"[{i + 1}/{len(points)}] {grid} {points[i][0]}")
        return train_parallel_tasks_pack([(configs[i], workdir / points[i][0]) for i in group], log_fn=log_fn,
                                         progress=None if workers == 1 else False, finisher=finisher)

    def point_rows(group: list[int], summaries: list[dict]) -> list[dict]:
        return [{"grid": grid, "point": points[i][0], "x": points[i][2], "y": points[i][3], "seed": int(seed), **s}
                for i, summary in zip(group, summaries) for seed, s in summary["seeds"].items()]

    # The costliest packs first (the workers then end together), and each point's summaries and
    # figures finished in their own thread as soon as its last level is trained.
    order = sorted(range(len(groups)), key=lambda g: -sum(_cost(configs[i]) for i in groups[g]))
    done: dict[int, list[dict]] = {}
    with concurrent.futures.ThreadPoolExecutor(1) as finisher, concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        trained = {g: pool.submit(train_group, groups[g]) for g in order}
        try:
            for g in order:
                done[g] = point_rows(groups[g], trained[g].result()())
                rows = [row for k in sorted(done) for row in done[k]]  # in the order of the points
                write_jsonl(workdir / "sweep.jsonl", rows)
        finally:
            for future in trained.values():  # after an error: the points not started yet are not run
                future.cancel()
    write_json(workdir / "sweep.json", {"grid": grid, "points": [p[0] for p in points], "base": base.to_dict()})
    return rows


def _cost(config: ThesisConfig) -> int:
    """A point's training cost, for ordering: weights × levels × seeds."""
    shape, plan = config.network()
    weights = weight_count(shape)
    return weights * len(plan.trajectory(weights)) * len(config.seeds)


def sweep_report(workdir: str | os.PathLike) -> list[epath.Path]:
    """The thesis-style figures of a sweep directory, and ``report.md``."""
    from lth_jax import plots  # matplotlib: imported when a figure is drawn

    workdir = epath.Path(workdir)
    meta = read_json(workdir / "sweep.json")
    rows = read_jsonl(workdir / "sweep.jsonl")
    figures = []
    if meta["grid"] == "e4":
        figures.append(plots.save(plots.plot_split_grid(rows), workdir / "figures" / "split_grid.png"))
    else:
        figures.append(plots.save(plots.plot_categories(rows), workdir / "figures" / "categories.png"))
    table = [{k: r[k] for k in ("point", "seed", "category", "split_level", "degradation_level")} for r in rows]
    write_csv(workdir / "report.csv", table)
    lines = [f"# Sweep {meta['grid']}", "", "| point | seed | category | split level | degradation level |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['point']} | {r['seed']} | {r['category']} | {r['split_level']} | {r['degradation_level']} |" for r in rows]
    lines += ["", "(also in `report.csv`)", ""] + [f"![{f.stem}](figures/{f.name})" for f in figures]
    (workdir / "report.md").write_text("\n".join(lines) + "\n")
    return figures


def default_config(grid: str = "e1") -> ml_collections.ConfigDict:
    """The sweep ``grid`` with the thesis's values: the grid's axes (narrow them,
    e.g. ``--config.extension_levels=0,1,2``) and the experiment every point runs
    (``--config.experiment.seeds=0,1``; ``--config.experiment.batch_order=shared``:
    every seed of a point on one epoch order, as the thesis's code)."""
    if grid not in GRIDS:
        raise UserError(f"unknown grid {grid!r}; known grids: {', '.join(GRIDS)}")
    spec = GRIDS[grid]
    c = ml_collections.ConfigDict()
    c.grid = grid
    c.extension_levels = spec.get("extension_levels", ())  # E1-E3
    c.widths = spec.get("widths", ())  # E4
    c.level_counts = spec.get("level_counts", ())  # E4
    c.target = config_dict.placeholder(int)  # E4: weights after the last level (default 112)
    if "target" in spec:
        c.target = spec["target"]
    c.pack = True  # the points of one MLP shape as one IMP run (the same results); False: one point at a time
    c.workers = 2  # points (or packs) trained at once, in threads (the same results); 1: one after the other
    c.experiment = experiment_config()
    return c


def run(c, workdir: str | os.PathLike, *, log_fn: Callable[[str], None] = print) -> list[epath.Path]:
    """Run (or resume) the sweep of config ``c`` and draw its report; returns the figures."""
    base = ThesisConfig.from_config(c.experiment)
    if "extension_levels" in GRIDS[c.grid]:
        narrow = {"extension_levels": tuple(c.extension_levels)}
    else:
        narrow = {"widths": tuple(c.widths), "level_counts": tuple(c.level_counts), "target": c.target}
    run_sweep(c.grid, base, workdir, log_fn=log_fn, pack=c.pack, workers=c.workers, **narrow)
    return sweep_report(workdir)
