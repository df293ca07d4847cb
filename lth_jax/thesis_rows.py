"""The rows of a parallel-task experiment (:mod:`lth_jax.parallel_tasks`): one per seed
and level (the level's record and its ticket's structure), the progress line of a
row, and the per-seed summary (split and degradation levels, category)."""

from __future__ import annotations

import jax
import numpy as np

from lth_jax import parallel
from lth_jax.structure import StructureReport, run_category
from lth_jax.train import TrainState, evaluate

__all__ = ["ROW_HEADER", "LEVEL_SCALARS", "format_row", "level_row", "test_metrics", "summary"]


ROW_HEADER = f"{'seed':>4}  {'level':>5}  {'weights':>8}  {'active':>7}  {'accuracy':>15}  {'test loss':>9}  {'comps':>5}  {'status':<14}  {'epochs':>6}"


def format_row(row: dict) -> str:
    accuracy = "/".join(f"{a:.3f}" for a in row["accuracy"])
    return (
        f"{row['seed']:>4d}  {row['level']:>5d}  {row['weights_remaining']:>8d}  {row['active_weights']:>7d}  "
        f"{accuracy:>15}  {row['test_loss']:>9.4f}  {row['num_components']:>5d}  {row['status']:<14}  {row['epochs']:>6d}"
    )


# The per-level TensorBoard scalars of a thesis run (and edges/active, .../zombie, ...).
LEVEL_SCALARS = ("weights_remaining", "active_weights", "accuracy", "test_loss", "num_components", "untapped_potential", "epochs",
                 "decided_output", "decided_input")


def level_row(result, report: StructureReport, test_metrics: dict) -> dict:
    record = result.record
    summary = report.summary()
    return {
        "seed": result.seed,
        "level": result.level,
        "weights_remaining": record["weights_remaining"],
        "fraction_remaining": record["fraction_remaining"],
        "active_weights": report.active_edges,
        **test_metrics,
        "num_components": report.num_components,
        "status": report.status,
        "edges": {"active": report.active_edges, "inactive": report.inactive_edges, "zombie": report.zombie_edges, "pruned": report.pruned_edges},
        "nodes": {"active": report.active_nodes, "inactive": report.inactive_nodes, "zombie": report.zombie_nodes},
        "coverage": summary["coverage"],
        "untapped_potential": report.untapped_potential,
        "decided_output": summary["decided_output"],
        "decided_input": summary["decided_input"],
        "epochs": record["epochs"],
        "stopped_early": record["stopped_early"],
    }


def test_metrics(record, result, test_eval, data, eval_name) -> dict:
    """The row's test accuracy (per task) and loss; with a validation split, evaluated here."""
    if test_eval is None:
        return {"accuracy": list(record["test_accuracy"]), "test_loss": record["test_loss"]}
    state = TrainState(
        step=np.int32(0), params=result.trained_params, batch_stats=result.trained_batch_stats,
        opt_state=None, mask=result.mask, rng=jax.random.PRNGKey(0),
    )
    test = evaluate(state, test_eval, data.test, min(len(data.test), 1000), parallel.data_mesh(jax.local_devices()[:1]))
    return {
        "accuracy": list(test["test_accuracy"]),
        "test_loss": test["test_loss"],
        f"{eval_name}_accuracy": record[f"{eval_name}_accuracy"],
        f"{eval_name}_loss": record[f"{eval_name}_loss"],
    }


def _category(rows) -> dict:
    """The run's split and degradation levels and category; a run that diverged is ``Diverged``."""
    category = run_category([r["status"] for r in rows if r["status"] != "diverged"])
    diverged = next((r["level"] for r in rows if r["status"] == "diverged"), None)
    return {**category, "diverged_level": diverged, **({"category": "Diverged"} if diverged is not None else {})}


def summary(config, shape, trajectory, rows) -> dict:
    seeds = {}
    for seed in config.seeds:
        mine = [r for r in rows if r["seed"] == seed]
        seeds[str(seed)] = {
            **_category(mine),
            "levels_trained": len(mine),
            "final_weights": mine[-1]["weights_remaining"] if mine else None,
            "final_accuracy": mine[-1]["accuracy"] if mine else None,
        }
    return {"dataset": config.dataset, "shape": list(shape), "trajectory": trajectory, "seeds": seeds}
