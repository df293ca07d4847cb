"""The thesis's experiments on parallel tasks (SPEC Part 2), as library functions.

:func:`run_parallel_tasks` is one experiment: data, MLP shape and pruning
trajectory (or the network extension), IMP reset to the initialization for
several seeds at once, the structure of every level's ticket, the stop rules,
and the run directory (``config.json``, ``metrics.jsonl``, ``summary.json``,
``figures/``). :func:`run_sweep` runs the E1-E4 grids and :func:`sweep_report`
draws their figures. ``experiments/parallel_tasks.py`` and
``experiments/thesis_sweep.py`` are thin flag parsers over these.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import jax
import numpy as np

from lth_jax import objectives, plots
from lth_jax.data.tasks import load_task_data
from lth_jax.imp import PruningPlan, run_imp_seeds
from lth_jax.models.mlp import MLP, kernels_in_order
from lth_jax.optim import OptimizerRecipe
from lth_jax.results import environment, read_json, read_jsonl, write_json, write_jsonl
from lth_jax.structure import StructureReport, analyze, run_category
from lth_jax.train import TrainConfig, TrainState, evaluate, make_eval_step
from lth_jax.trajectory import extension_shape, extension_trajectory, weight_count

__all__ = ["ThesisConfig", "run_parallel_tasks", "GRIDS", "sweep_points", "run_sweep", "sweep_report", "format_row"]


@dataclasses.dataclass(frozen=True)
class ThesisConfig:
    """One parallel-task experiment (defaults: the thesis's Moons+Circles setting).

    The MLP is either the network extension of ``base_shape`` at
    ``extension_level`` (pruned along ``[P_E, ..., P_1, N]``), or an explicit
    ``shape`` pruned along the trajectory of two of ``rate``, ``levels``,
    ``target``. ``coverage`` is ``"total"`` or ``"output"`` (``None``: output for
    the MNIST+Fashion data, total otherwise). ``validation_split`` holds a
    fraction of the train set out for early stopping instead of the test set.
    """

    dataset: str = "moons_circles"
    num_tasks: int = 3
    base_shape: tuple[int, ...] = (4, 8, 8, 2)
    extension_level: int | None = 9
    shape: tuple[int, ...] | None = None
    rate: float | None = 0.32
    levels: int | None = None
    target: int | None = None
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    epochs: int = 3000
    patience: int | None = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    coverage: str | None = None
    stop_on_degradation: bool = True
    stop_on_split: bool = False
    validation_split: float = 0.0
    data_seed: int = 0
    vmap: bool = True
    data_dir: str | None = None
    download: bool = False
    log_every_epochs: int = 0

    def __post_init__(self):
        for name in ("base_shape", "shape", "seeds"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(v) for v in value))
        if not self.seeds:
            raise ValueError("seeds is empty: give at least one seed")
        if self.rate is not None and not 0.0 < self.rate < 1.0:
            raise ValueError(f"rate={self.rate} is outside the open interval (0, 1)")
        if self.coverage not in (None, "total", "output"):
            raise ValueError(f"coverage={self.coverage!r} is not one of 'total', 'output'")
        if self.extension_level is not None and self.shape is not None:
            raise ValueError("give either a shape or an extension level, not both")
        if self.extension_level is None and self.shape is None:
            raise ValueError("give a shape (with two of rate, levels, target) or an extension level")
        if self.extension_level is not None and (self.levels is not None or self.target is not None):
            raise ValueError("the network extension fixes the trajectory: drop levels and target")
        if not 0.0 <= self.validation_split < 1.0:
            raise ValueError(f"validation_split={self.validation_split} is outside [0, 1)")

    def network(self) -> tuple[tuple[int, ...], PruningPlan]:
        """The MLP shape and the pruning plan."""
        if self.extension_level is not None:
            rate = 0.32 if self.rate is None else self.rate
            shape = extension_shape(self.base_shape, self.extension_level, rate)
            return shape, PruningPlan(counts=tuple(extension_trajectory(self.base_shape, self.extension_level, rate)))
        given = {k: getattr(self, k) for k in ("levels", "target") if getattr(self, k) is not None}
        if len(given) == 2:
            return self.shape, PruningPlan(**given)
        if len(given) == 1 and self.rate is not None:
            return self.shape, PruningPlan(rate=self.rate, **given)
        raise ValueError("with a shape, give two of rate, levels, target")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


ROW_HEADER = f"{'seed':>4}  {'level':>5}  {'weights':>8}  {'active':>7}  {'accuracy':>15}  {'test loss':>9}  {'comps':>5}  {'status':<14}  {'epochs':>6}"


def format_row(row: dict) -> str:
    accuracy = "/".join(f"{a:.3f}" for a in row["accuracy"])
    return (
        f"{row['seed']:>4d}  {row['level']:>5d}  {row['weights_remaining']:>8d}  {row['active_weights']:>7d}  "
        f"{accuracy:>15}  {row['test_loss']:>9.4f}  {row['num_components']:>5d}  {row['status']:<14}  {row['epochs']:>6d}"
    )


def _check_shape(shape, data) -> None:
    if len(shape) < 3:
        raise ValueError(f"shape={shape} needs at least one hidden layer")
    if shape[0] != data.num_inputs or shape[-1] != data.num_outputs:
        raise ValueError(
            f"shape={shape} does not fit the data: it needs {data.num_inputs} inputs and {data.num_outputs} outputs"
        )


def run_parallel_tasks(config: ThesisConfig, workdir: str | Path, *, log_fn: Callable[[str], None] = print) -> dict:
    """Run one experiment into ``workdir`` (resumable) and return its summary."""
    workdir = Path(workdir)
    data = load_task_data(
        config.dataset, data_seed=config.data_seed, num_tasks=config.num_tasks, data_dir=config.data_dir, download=config.download
    )
    shape, plan = config.network()
    _check_shape(shape, data)
    # Image inputs: border pixels may never connect (SPEC §2.6.6), so only outputs decide
    # coverage; under "total" a single-task E9 run would read "degraded" from level 1 on.
    coverage = config.coverage or ("output" if data.image_shape is not None else "total")
    objective = (
        objectives.sigmoid_tasks(data.num_tasks) if set(data.classes) == {2} else objectives.softmax_tasks(data.classes)
    )
    if objective.num_outputs != data.num_outputs:
        raise ValueError(f"dataset {config.dataset} has {data.num_outputs} outputs for classes {data.classes}")
    train_data, eval_data, eval_name = data.train, data.test, "test"
    if config.validation_split:
        train_data, eval_data = data.train.split(config.validation_split, seed=config.data_seed)
        eval_name = "val"
    train = TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        optimizer=OptimizerRecipe(name="adam", learning_rate=config.learning_rate),
        early_stopping_patience=config.patience,
        data_seed=config.data_seed,
        log_every_epochs=config.log_every_epochs,
        checkpoint_every_seconds=300.0,
    )
    model = MLP(shape)
    settings = {"experiment": config.to_dict(), "shape": list(shape), "trajectory": None, "coverage": coverage, "train": train.to_dict()}
    if not (workdir / "config.json").exists():
        write_json(workdir / "config.json", {**settings, "environment": environment()})

    test_eval = make_eval_step(model, objective) if config.validation_split else None
    reports: dict[tuple[int, int], StructureReport] = {}
    rows: list[dict] = []
    log_fn(f"{config.dataset}: MLP {shape}, {len(plan.trajectory(weight_count(shape)))} levels, seeds {list(config.seeds)}, {coverage} coverage")
    log_fn(ROW_HEADER)

    def on_level(result) -> bool:
        report = analyze(kernels_in_order(result.mask), data.input_tasks, data.output_tasks, coverage)
        reports[(result.seed, result.level)] = report
        record = result.record
        row = {
            "seed": result.seed,
            "level": result.level,
            "weights_remaining": record["weights_remaining"],
            "fraction_remaining": record["fraction_remaining"],
            "active_weights": report.active_edges,
            **_test_metrics(record, result, test_eval, data, eval_name),
            "num_components": report.num_components,
            "status": report.status,
            "edges": {"active": report.active_edges, "inactive": report.inactive_edges, "zombie": report.zombie_edges, "pruned": report.pruned_edges},
            "nodes": {"active": report.active_nodes, "inactive": report.inactive_nodes, "zombie": report.zombie_nodes},
            "coverage": report.summary()["coverage"],
            "untapped_potential": report.untapped_potential,
            "decided_output": report.summary()["decided_output"],
            "decided_input": report.summary()["decided_input"],
            "epochs": record["epochs"],
            "stopped_early": record["stopped_early"],
        }
        rows.append(row)
        log_fn(format_row(row))
        return (config.stop_on_degradation and report.status == "degraded") or (config.stop_on_split and report.status == "split")

    run_imp_seeds(
        model,
        objective,
        train_data,
        eval_data,
        train,
        plan,
        seeds=config.seeds,
        vmap=config.vmap,
        rewind=0,
        workdir=workdir / "imp",
        level_callback=on_level,
        ticket_info={"model": "mlp", "shape": list(shape), "dataset": config.dataset, "classes": list(data.classes)},
        eval_name=eval_name,
        log_fn=log_fn,
    )
    rows.sort(key=lambda r: (r["seed"], r["level"]))
    write_jsonl(workdir / "metrics.jsonl", rows)
    summary = _summary(config, shape, plan, rows)
    write_json(workdir / "config.json", {**settings, "trajectory": plan.trajectory(weight_count(shape)), "environment": environment()})
    write_json(workdir / "summary.json", summary)
    _figures(workdir, data, rows, reports, shape)
    for seed in config.seeds:
        s = summary["seeds"][str(seed)]
        log_fn(f"seed {seed}: {s['category']}, split at level {s['split_level']}, degraded at level {s['degradation_level']}")
    return summary


def _test_metrics(record, result, test_eval, data, eval_name) -> dict:
    """The row's test accuracy (per task) and loss; with a validation split, evaluated here."""
    if test_eval is None:
        return {"accuracy": list(record["test_accuracy"]), "test_loss": record["test_loss"]}
    state = TrainState(
        step=np.int32(0), params=result.trained_params, batch_stats=result.trained_batch_stats,
        opt_state=None, mask=result.mask, rng=jax.random.PRNGKey(0),
    )
    test = evaluate(state, test_eval, data.test, min(len(data.test), 1000))
    return {
        "accuracy": list(test["test_accuracy"]),
        "test_loss": test["test_loss"],
        f"{eval_name}_accuracy": record[f"{eval_name}_accuracy"],
        f"{eval_name}_loss": record[f"{eval_name}_loss"],
    }


def _summary(config, shape, plan, rows) -> dict:
    seeds = {}
    for seed in config.seeds:
        mine = [r for r in rows if r["seed"] == seed]
        seeds[str(seed)] = {
            **run_category([r["status"] for r in mine]),
            "levels_trained": len(mine),
            "final_weights": mine[-1]["weights_remaining"] if mine else None,
            "final_accuracy": mine[-1]["accuracy"] if mine else None,
        }
    return {"dataset": config.dataset, "shape": list(shape), "trajectory": plan.trajectory(weight_count(shape)), "seeds": seeds}


def _figures(workdir: Path, data, rows, reports, shape) -> None:
    figures = workdir / "figures"
    by_seed: dict[int, list] = {}
    for row in rows:
        by_seed.setdefault(row["seed"], []).append(row)
    plots.plot_levels(by_seed, data.task_names, figures / "levels.png")
    if max(shape) <= 256:
        items = []
        for seed, mine in sorted(by_seed.items()):
            split = next((r["level"] for r in mine if r["status"] == "split"), None)
            level = split if split is not None else mine[-1]["level"]
            report = reports.get((seed, level))
            if report is not None:
                items.append((f"seed {seed}, level {level} ({report.status}, {mine[level]['weights_remaining']} weights)", report))
        if items:
            plots.plot_networks(items, data.input_tasks, data.output_tasks, data.task_names, figures / "networks.png")
    if data.image_shape is not None:
        for seed, mine in sorted(by_seed.items()):
            chosen = sorted({0, len(mine) // 2, len(mine) - 1})
            degrees = [(f"level {mine[i]['level']}", reports[(seed, mine[i]["level"])].input_out_degree) for i in chosen if (seed, mine[i]["level"]) in reports]
            if degrees:
                plots.plot_input_degree(degrees, data.image_shape, data.task_names, figures / f"input_degree_seed{seed}.png")


# --------------------------------------------------------------------------- sweeps

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
        raise ValueError(f"unknown grid {grid!r}; known grids: {', '.join(GRIDS)}")
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


def run_sweep(grid: str, base: ThesisConfig, workdir: str | Path, *, log_fn=print, **narrow) -> list[dict]:
    """Run every point of ``grid`` into ``workdir/<point>`` (each resumable); write ``sweep.jsonl``."""
    workdir = Path(workdir)
    rows = []
    points = sweep_points(grid, **narrow)
    for i, (name, overrides, x, y) in enumerate(points):
        log_fn(f"[{i + 1}/{len(points)}] {grid} {name}")
        config = dataclasses.replace(base, **overrides)
        summary = run_parallel_tasks(config, workdir / name, log_fn=log_fn)
        for seed, s in summary["seeds"].items():
            rows.append({"grid": grid, "point": name, "x": x, "y": y, "seed": int(seed), **s})
        write_jsonl(workdir / "sweep.jsonl", rows)
    write_json(workdir / "sweep.json", {"grid": grid, "points": [p[0] for p in points], "base": base.to_dict()})
    return rows


def sweep_report(workdir: str | Path) -> list[Path]:
    """The thesis-style figures of a sweep directory, and ``report.md``."""
    workdir = Path(workdir)
    meta = read_json(workdir / "sweep.json")
    rows = read_jsonl(workdir / "sweep.jsonl")
    figures = []
    if meta["grid"] == "e4":
        figures.append(plots.plot_split_grid(rows, workdir / "figures" / "split_grid.png"))
    else:
        figures.append(plots.plot_categories(rows, workdir / "figures" / "categories.png"))
    lines = [f"# Sweep {meta['grid']}", "", "| point | seed | category | split level | degradation level |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['point']} | {r['seed']} | {r['category']} | {r['split_level']} | {r['degradation_level']} |" for r in rows]
    lines += [""] + [f"![{f.stem}](figures/{f.name})" for f in figures]
    (workdir / "report.md").write_text("\n".join(lines) + "\n")
    return figures
