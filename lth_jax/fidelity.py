"""Fidelity: the thesis's experiments run by lth_jax and by the thesis's own code, side by side.

A *point* is one experiment of the thesis's grids, named as the thesis-code
driver (``benchmarks/fidelity/thesis_driver.py``) names it: ``extN`` (E1: the
network extension of (4, 8, 8, 2) at level N), ``e2_extN`` (E2: base
(4, 20, 2)) and ``wW_LN`` (E4: width W, N levels pruned to 112 weights); see
:mod:`lth_jax.fidelity_points`. :func:`run_lth_jax` trains many seeds of each
point here; :func:`read_thesis_code` reads the driver's JSON lines (the thesis's
PyTorch code, run in a virtualenv of its own). Both become the same per-seed rows
(:data:`ROW_FIELDS`), and :func:`lth_jax.fidelity_report.report` writes, per
experiment, one Markdown and CSV table (split rate with its binomial 95% interval,
split and degradation levels, categories, active weights at the split, test loss)
and the figures. :func:`run` is ``experiments/fidelity.py``'s experiment (presets
``experiments/configs/fidelity_*.py``); with ``shared_orders`` it also runs every point
on shared epoch orders and compares the regimes (:mod:`lth_jax.fidelity_orders`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import subprocess
import sys
from typing import Callable, Sequence

import ml_collections
import numpy as np
from etils import epath

from lth_jax.errors import UserError
from lth_jax.fidelity_points import ROW_FIELDS, SYSTEMS, THESIS_PUBLISHED, experiment_of, parse_point, point_overrides
from lth_jax.fidelity_orders import orders_report
from lth_jax.fidelity_report import report as write_report
from lth_jax.parallel_tasks import ThesisConfig, pack_groups, train_parallel_tasks_pack
from lth_jax.results import read_json, read_jsonl, write_json, write_jsonl
from lth_jax.rng import SHARED_ORDERS
from lth_jax.structure import analyze, run_category

__all__ = ["POINT_SETS", "THESIS_PUBLISHED", "ROW_FIELDS", "SYSTEMS", "point_overrides", "experiment_of", "seed_row", "point_runs",
           "point_rows", "run_lth_jax", "read_thesis_code", "status_of_potential", "rule_check", "structure_rows", "default_config", "run"]

POINT_SETS = {
    # A few minutes on a 2-core CPU: the two E4 points the thesis's text and ours disagree on most, and E1 at level 3.
    "quick": ("w38_L10", "w48_L10", "ext3"),
    "full": tuple(f"ext{e}" for e in (0, 3, 6, 9, 12))
    + tuple(f"e2_ext{e}" for e in (0, 4, 8, 12))
    + tuple(f"w{w}_L{n:02d}" for w in (31, 38, 48, 57) for n in (2, 4, 6, 8, 10)),
}
def seed_row(system: str, point: str, seed: int, levels: Sequence[dict]) -> dict:
    """One run as a row of :data:`ROW_FIELDS`; ``levels``: per level ``status``, ``weights``,
    ``active_edges``, ``test_loss``, ``epochs`` (in level order)."""
    category = run_category([lv["status"] for lv in levels if lv["status"] != "diverged"])
    if any(lv["status"] == "diverged" for lv in levels):
        category["category"] = "Diverged"
    split = category["split_level"]
    last = levels[-1] if levels else {}
    return {
        "system": system, "point": point, "seed": int(seed), "split": split is not None, **category,
        "levels_trained": len(levels),
        "active_at_split": None if split is None else levels[split]["active_edges"],
        "loss_at_split": None if split is None else levels[split]["test_loss"],
        "final_weights": last.get("weights"), "final_test_loss": last.get("test_loss"),
        "epochs": sum(lv["epochs"] for lv in levels),
    }


def point_runs(points: Sequence[str], seeds: Sequence[int], workdir: str | os.PathLike,
               base: ThesisConfig | None = None) -> list[tuple[str, ThesisConfig, epath.Path]]:
    """``(point, experiment, workdir/<point>)`` of every point: ``base`` with the point's network and ``seeds``."""
    base = base or ThesisConfig()
    return [(p, dataclasses.replace(base, seeds=tuple(seeds), **point_overrides(p)), epath.Path(workdir) / p) for p in points]


def point_rows(point: str, seeds: Sequence[int], workdir: str | os.PathLike) -> list[dict]:
    """The rows of ``seeds`` of a finished lth_jax run of ``point`` in ``workdir``."""
    metrics = read_jsonl(epath.Path(workdir) / "metrics.jsonl")
    rows = []
    for seed in seeds:
        mine = sorted((r for r in metrics if r["seed"] == seed), key=lambda r: r["level"])
        levels = [{"status": r["status"], "weights": r["weights_remaining"], "active_edges": r["active_weights"],
                   "test_loss": r["test_loss"], "epochs": r["epochs"]} for r in mine]
        rows.append(seed_row("lth_jax", point, seed, levels))
    return rows


def run_lth_jax(points: Sequence[str], seeds: Sequence[int], workdir: str | os.PathLike, *,
                base: ThesisConfig | None = None, log_fn: Callable[[str], None] = print,
                also: Sequence[tuple[str, ThesisConfig, epath.Path]] = ()) -> list[dict]:
    """Train ``seeds`` of every point in ``workdir/<point>`` (resumable; the runs of one MLP shape,
    ``also`` (more :func:`point_runs`) included, as one IMP run,
    :func:`lth_jax.parallel_tasks.train_parallel_tasks_pack`, each run finished beside the others'
    training) and return the rows of ``points``."""
    runs = [*point_runs(points, seeds, workdir, base), *also]
    with concurrent.futures.ThreadPoolExecutor(1) as finisher:  # a run's summary and figures beside the pack's training, as a sweep's
        for n, group in enumerate(pack_groups([config for _, config, _ in runs]), 1):
            names = list(dict.fromkeys(runs[i][0] for i in group))
            log_fn(f"[pack {n}] lth_jax {', '.join(names)}: {len(group)} runs, {sum(len(runs[i][1].seeds) for i in group)} seeds")
            train_parallel_tasks_pack([runs[i][1:] for i in group], log_fn=lambda line: None, progress=False, finisher=finisher)()
    return [row for point in points for row in point_rows(point, seeds, epath.Path(workdir) / point)]


def status_of_potential(u: float) -> str:
    """The thesis code's status from its untapped potential: > 0 connected, 0 split, < 0 degraded."""
    return "interconnected" if u > 0 else "split" if u == 0 else "degraded"


def read_thesis_code(paths: Sequence[str | os.PathLike]) -> tuple[list[dict], list[dict]]:
    """Rows of the thesis-code driver's JSON lines, and its raw records (the first of a repeated (point, seed))."""
    records, seen = [], set()
    for path in paths:
        if not epath.Path(path).exists():
            raise UserError(f"thesis-code results {path} do not exist (benchmarks/fidelity/thesis_driver.py writes them)")
        for record in read_jsonl(path):
            key = (record["point"], record["seed"])
            if key not in seen:
                seen.add(key)
                records.append(record)
    rows = []
    for record in records:
        levels = [{**lv, "status": status_of_potential(lv["untapped_potential"])} for lv in record["levels"]]
        rows.append(seed_row("thesis_code", record["point"], record["seed"], levels))
    return rows, records


def _thesis_report(masks: dict, level: int):
    """lth_jax's analysis of level ``level`` of the driver's masks (``level{l}_layer{i}``, ``(fan_in, fan_out)``)."""
    layers = sorted((k for k in masks if k.startswith(f"level{level}_")), key=lambda k: int(k.rsplit("layer", 1)[1]))
    return analyze([np.asarray(masks[k], bool) for k in layers], [0, 0, 1, 1], [0, 1], "total")  # Moons+Circles


def rule_check(record: dict, masks: dict) -> int:
    """Levels of a thesis-code run whose status under lth_jax's analysis of its masks differs from its own."""
    return sum(_thesis_report(masks, lv["level"]).status != status_of_potential(lv["untapped_potential"]) for lv in record["levels"])


def _structure_level(system: str, level: int, weights: int, edges: dict, decided_output, decided_input) -> dict:
    unpruned = edges["active"] + edges["inactive"] + edges["zombie"]
    return {"system": system, "level": level, "weights": weights,
            **{f"{k}_fraction": edges[k] / unpruned if unpruned else None for k in ("active", "inactive", "zombie")},
            "decided_output": [None if r is None or r != r else round(float(r), 4) for r in decided_output],
            "decided_input": [None if r is None or r != r else round(float(r), 4) for r in decided_input]}


def structure_rows(lth_metrics: Sequence[dict], record: dict | None, masks: dict | None) -> list[dict]:
    """E5/E7 of one seed of one point, level by level, for both systems: the fractions of unpruned
    weights that are active, inactive and zombie (each system's own count) and the decided ratios
    per hidden layer (lth_jax's analysis; for the thesis's code, of its masks: its own code for them
    is switched off at the published commit)."""
    rows = [_structure_level("lth_jax", r["level"], r["weights_remaining"], r["edges"], r["decided_output"], r["decided_input"])
            for r in sorted(lth_metrics, key=lambda r: r["level"])]
    for lv in (record or {}).get("levels", []):
        edges = {"active": lv["active_edges"], "inactive": lv["inactive_edges"], "zombie": lv["zombie_edges"]}
        decided = ([], [])
        if masks is not None:
            report = _thesis_report(masks, lv["level"])
            decided = (report.decided_output, report.decided_input)
        rows.append(_structure_level("thesis_code", lv["level"], lv["weights"], edges, *decided))
    return sorted(rows, key=lambda r: (r["level"], r["system"]))


def default_config(points: str = "quick") -> ml_collections.ConfigDict:
    """The harness: which points, how many lth_jax seeds, and where the thesis-code side comes from."""
    c = ml_collections.ConfigDict()
    c.points = POINT_SETS[points]  # extN (E1), e2_extN (E2), wW_LN (E4); or "quick" / "full"
    c.seeds = 32  # lth_jax seeds 0..seeds-1 at every point
    c.epochs = 3000  # the thesis's maximum epochs per level (lower it only for a smoke test)
    c.patience = 30  # the thesis's early-stopping patience (0: train every epoch)
    c.thesis_results = ()  # the thesis-code driver's JSON-lines files to compare with
    c.thesis_python = ""  # a Python with torch (and the driver's packages): runs the thesis's code here
    c.thesis_repo = ""  # a checkout of maxburger4real/structure-of-lottery-tickets
    c.thesis_seeds = 2  # seeds 0..thesis_seeds-1 of the thesis's code per point, when thesis_python is given
    c.structure_point = "ext3"  # E5/E7: the run compared level by level (when both systems have it)
    c.structure_seed = 0
    c.experiment = ml_collections.ConfigDict()  # the settings of every point's lth_jax experiment (ThesisConfig fields)
    c.experiment.batch_order = "per_seed"  # per_seed: independent seeds; shared: one epoch order for every seed, as the thesis's code
    c.experiment.shared_order = 0  # with batch_order=shared: which order (0, 1, ...; the data stay the same)
    c.shared_orders = 0  # > 0: also run every point on shared orders 0..shared_orders-1 (lth_jax_shared/order_K), and compare
    c.shared_seeds = 16  # seeds 0..shared_seeds-1 in every shared order: the same initializations on each order
    return c


DRIVER = epath.Path(__file__).resolve().parents[1] / "benchmarks" / "fidelity" / "thesis_driver.py"
RECORDED_THESIS_CODE = DRIVER.parent / "results" / "thesis_code.jsonl"  # the thesis code's runs recorded with the driver


def _points(value) -> tuple[str, ...]:
    names = [n.strip() for v in ((value,) if isinstance(value, str) else value) for n in str(v).split(",") if n.strip()]
    points = tuple(p for name in names for p in POINT_SETS.get(name, (name,)))
    for point in points:
        parse_point(point)
    return points


def run(c, workdir: str | os.PathLike, *, log_fn: Callable[[str], None] = print) -> list[epath.Path]:
    """Run the lth_jax side (and the thesis's code, when configured), compare, and write the report."""
    workdir = epath.Path(workdir)
    points = _points(c.points)
    if int(c.seeds) < 1:
        raise UserError(f"--config.seeds={c.seeds}: give a number of seeds of at least 1")
    # every point's lth_jax experiment: a bad setting is refused before the thesis's code runs
    base = ThesisConfig(epochs=int(c.epochs), patience=int(c.patience) or None, batch_order=str(c.experiment.batch_order),
                        shared_order=c.experiment.shared_order)
    study = _shared_runs(c, points, base, workdir)
    results = [str(p) for p in c.thesis_results]
    for path in results:
        if not epath.Path(path).exists():
            raise UserError(f"--config.thesis_results: {path} does not exist (benchmarks/fidelity/thesis_driver.py writes such files)")
    if c.thesis_python:
        if not c.thesis_repo:
            raise UserError("--config.thesis_python needs --config.thesis_repo (a checkout of the thesis's repository)")
        if not DRIVER.exists():
            raise UserError(f"{DRIVER} is missing: the thesis-code side runs from a clone of lth_jax's repository")
        out = workdir / "thesis_code.jsonl"
        command = [c.thesis_python, str(DRIVER), f"--thesis_repo={c.thesis_repo}", f"--seeds=0-{int(c.thesis_seeds) - 1}",
                   f"--out={out}", *(f"--point={p}" for p in points)]
        log_fn(f"thesis's code: {len(points)} points × {c.thesis_seeds} seeds")
        if subprocess.run(command, stdout=sys.stdout, stderr=sys.stderr).returncode:
            raise UserError(f"the thesis-code driver failed (its error is above): {' '.join(command)}")
        results.append(str(out))
    also = {"also": [r for _, r in study]} if study else {}  # the shared orders train in the same packs
    rows = run_lth_jax(points, range(int(c.seeds)), workdir / "lth_jax", base=base, log_fn=log_fn, **also)
    notes, records, masks_of = [], [], {}
    if base.batch_order == "shared":
        notes.append(f"lth_jax's seeds share one epoch order (batch_order=shared, order {base.shared_order}, as the thesis's code): they "
                     "are not independent draws, and an interval over them is too narrow.")
    if results:
        thesis_rows, records = read_thesis_code(results)
        rows += [r for r in thesis_rows if r["point"] in points]
        checked = differ = 0
        for record in records:
            for path in results:
                npz = epath.Path(os.path.splitext(path)[0] + "_masks") / f"{record['point']}_seed{record['seed']}.npz"
                if record["point"] in points and npz.exists():
                    with np.load(npz) as masks:
                        masks_of[(record["point"], record["seed"])] = dict(masks)
        for record in records:
            masks = masks_of.get((record["point"], record["seed"]))
            if masks is not None:
                differ += rule_check(record, masks)
                checked += len(record["levels"])
        ours = {p: read_json(workdir / "lth_jax" / p / "config.json") for p in points}
        differing = sorted({r["point"] for r in records if r["point"] in ours
                            and (r["trajectory"] != ours[r["point"]]["trajectory"] or r["shape"] != ours[r["point"]]["shape"])})
        notes.append("Shapes and trajectories: " + (f"DIFFER at {', '.join(differing)}." if differing else
                     "the thesis's code trains the same shape along the same weight counts at every point."))
        if checked:
            notes.append(f"Split rule: lth_jax's analysis of the thesis code's own masks gives the thesis code's status at "
                         f"{checked - differ} of {checked} levels.")
    structure = None
    key = (str(c.structure_point), int(c.structure_seed))
    if key[0] in points and key[1] < int(c.seeds):
        metrics = [r for r in read_jsonl(workdir / "lth_jax" / key[0] / "metrics.jsonl") if r["seed"] == key[1]]
        record = next((r for r in records if (r["point"], r["seed"]) == key), None)
        structure = (f"{key[0]}, seed {key[1]}", structure_rows(metrics, record, masks_of.get(key)))
    extra = []
    if study:
        shared = [{**row, "order": order} for order, (point, config, path) in study for row in point_rows(point, config.seeds, path)]
        write_jsonl(workdir / "shared_rows.jsonl", shared)
        extra = orders_report(rows, shared, workdir)
        notes.append(f"Batch order: every point also ran on {int(c.shared_orders)} shared orders × {int(c.shared_seeds)} seeds; "
                     "rates per order, their spread and the intervals that fit each design are in [batch_order.md](batch_order.md).")
    write_jsonl(workdir / "rows.jsonl", rows)
    write_json(workdir / "points.json",
               {"points": list(points), "seeds": int(c.seeds), "batch_order": base.batch_order, "shared_order": base.shared_order,
                "shared_orders": int(c.shared_orders), "shared_seeds": int(c.shared_seeds), "thesis_results": results})
    return write_report(rows, workdir, notes=notes, structure=structure) + extra


def _shared_runs(c, points: Sequence[str], base: ThesisConfig, workdir: epath.Path) -> list[tuple[int, tuple]]:
    """``(order, point run)`` of the batch-order study (``c.shared_orders`` orders × ``c.shared_seeds`` seeds), checked."""
    orders, seeds = int(c.shared_orders), int(c.shared_seeds)
    if not 0 <= orders <= SHARED_ORDERS:
        raise UserError(f"--config.shared_orders={c.shared_orders}: give a number of shared orders from 0 to {SHARED_ORDERS}")
    if orders and base.batch_order != "per_seed":
        raise UserError(f"--config.shared_orders={orders} runs the shared orders beside the per_seed runs: "
                        f"leave --config.experiment.batch_order=per_seed (not {base.batch_order!r})")
    if orders and seeds < 1:
        raise UserError(f"--config.shared_seeds={c.shared_seeds}: give a number of seeds of at least 1")
    return [(k, run) for k in range(orders) for run in point_runs(points, range(seeds), workdir / "lth_jax_shared" / f"order_{k}",
                                                                  dataclasses.replace(base, batch_order="shared", shared_order=k))]
