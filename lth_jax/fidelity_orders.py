"""The batch-order study of the fidelity harness: rates on independent and on shared epoch orders.

lth_jax runs every point twice: ``per_seed`` (each seed its own epoch order: independent runs) and on
several shared orders (every seed of a run on one order, as the thesis's code trains; the same seeds,
i.e. initializations, on each order, so orders compare on the same initializations). The thesis's
code ran each point on one order. :func:`order_table` puts, per point:

- per_seed: the rate with Wilson's 95% interval (independent runs);
- shared: the rate of each order, the pooled rate with a two-way cluster bootstrap 95% interval
  (orders and seeds resampled, :func:`lth_jax.stats.cluster_bootstrap`), the spread between orders
  (standard deviation of the orders' rates, Cochran's Q, and the orders' share of a run's variance,
  the ICC: :func:`lth_jax.stats.order_spread`);
- the thesis's code: Wilson's interval as if its seeds were independent, and the same widened by the
  design effect 1 + (m − 1)·ICC of its m seeds on one order, with the ICC measured on lth_jax's shared
  runs at that point (:func:`lth_jax.stats.design_effect_interval`);
- the differences (thesis code − lth_jax per_seed, thesis code − lth_jax shared, shared − per_seed)
  with their 95% interval from the two rates' own intervals (:func:`lth_jax.stats.mover_difference`)
  and whether the two intervals overlap (a difference is reported only when they do not).

:func:`orders_report` writes ``batch_order.md`` and the CSV files.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from etils import epath

from lth_jax.errors import UserError
from lth_jax.fidelity_points import experiment_of, point_axis
from lth_jax.results import write_csv
from lth_jax.stats import cluster_bootstrap, design_effect_interval, intervals_overlap, mover_difference, order_spread, wilson_interval

__all__ = ["RESAMPLES", "shared_outcomes", "shared_interval", "order_table", "rate_rows", "orders_markdown", "orders_report"]

RESAMPLES = 10_000  # bootstrap resamples (seed 0: the same interval every time)


def shared_outcomes(rows: Sequence[dict]) -> np.ndarray:
    """``outcomes[o, s]`` (1: split) of one point's shared-order rows (``order``, ``seed``, ``split`` each), orders and
    seeds in increasing order; every order must hold the same seeds."""
    orders = sorted({r["order"] for r in rows})
    seeds = sorted({r["seed"] for r in rows if r["order"] == orders[0]})
    table = {(r["order"], r["seed"]): r["split"] for r in rows}
    if len(table) != len(orders) * len(seeds) or any((o, s) not in table for o in orders for s in seeds):
        raise UserError(f"the shared orders {orders} do not all hold the seeds {seeds}: each order must run the same seeds")
    return np.array([[int(table[o, s]) for s in seeds] for o in orders])


def shared_interval(outcomes: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float, str]:
    """The 95% interval of the pooled shared rate and how it was made: the two-way cluster bootstrap; where
    every run agrees (all or none split) it has nothing to resample, and Wilson's interval over the fewer of
    orders and seeds (the independent draws of the coarser kind) stands in."""
    if outcomes.min() == outcomes.max():
        units = min(outcomes.shape)
        return (*wilson_interval(int(outcomes.max()) * units, units), f"Wilson over {units} (every run alike)")
    return (*cluster_bootstrap(outcomes, resamples=resamples, seed=seed), "cluster bootstrap")


def _comparison(a: tuple[float, float, float], b: tuple[float, float, float]) -> dict:
    d, low, high = mover_difference(a[0], a[1:], b[0], b[1:])
    return {"difference": d, "low": low, "high": high, "overlap": intervals_overlap(a[1:], b[1:])}


def order_table(rows: Sequence[dict], shared_rows: Sequence[dict], *, resamples: int = RESAMPLES) -> list[dict]:
    """Per point with shared-order rows: the rates, spreads, intervals and comparisons of the module's list.
    ``rows``: per-seed rows of lth_jax's per_seed runs and of the thesis's code (``system``, ``point``, ``split``);
    ``shared_rows``: lth_jax's rows on shared orders (with ``order``)."""
    table = []
    points = sorted({r["point"] for r in shared_rows}, key=lambda p: (experiment_of(p), point_axis(p)[1] or 0, point_axis(p)[0]))
    for point in points:
        outcomes = shared_outcomes([r for r in shared_rows if r["point"] == point])
        spread = order_spread(outcomes)
        low, high, method = shared_interval(outcomes, resamples=resamples)
        cell = {"point": point, "orders": outcomes.shape[0], "seeds_per_order": spread.seeds, "order_splits": list(spread.splits),
                "shared_splits": int(outcomes.sum()), "shared_runs": int(outcomes.size), "shared_rate": spread.pooled,
                "shared_low": low, "shared_high": high, "shared_interval": method, "between_order_std": spread.between_std,
                "cochran_q": spread.cochran_q, "cochran_p": spread.p_value, "icc": spread.icc}
        shared = (spread.pooled, low, high)
        for system in ("lth_jax", "thesis_code"):
            mine = [r for r in rows if r["point"] == point and r["system"] == system]
            k, n = sum(r["split"] for r in mine), len(mine)
            cell[f"{system}_splits"], cell[f"{system}_runs"] = k, n
            if n:
                cell[f"{system}_rate"], (cell[f"{system}_low"], cell[f"{system}_high"]) = k / n, wilson_interval(k, n)
        if cell["lth_jax_runs"]:
            per_seed = (cell["lth_jax_rate"], cell["lth_jax_low"], cell["lth_jax_high"])
            cell["shared_vs_per_seed"] = _comparison(shared, per_seed)
        if cell["thesis_code_runs"]:
            k, n = cell["thesis_code_splits"], cell["thesis_code_runs"]
            low, high, deff = design_effect_interval(k, n, spread.icc) if spread.icc is not None else (*wilson_interval(k, n), None)
            cell.update(thesis_code_widened_low=low, thesis_code_widened_high=high, design_effect=deff)
            thesis = (k / n, low, high)
            if cell["lth_jax_runs"]:
                cell["thesis_vs_per_seed"] = _comparison(thesis, per_seed)
            cell["thesis_vs_shared"] = _comparison(thesis, shared)
        table.append(cell)
    return table


def rate_rows(rows: Sequence[dict], shared_rows: Sequence[dict]) -> list[dict]:
    """One row per point and regime (``per_seed``, ``shared`` order by order, ``thesis_code``): runs, splits, rate."""
    out = []
    for point in sorted({r["point"] for r in shared_rows}):
        groups = [("per_seed", None, [r for r in rows if r["point"] == point and r["system"] == "lth_jax"])]
        groups += [("shared", o, [r for r in shared_rows if r["point"] == point and r["order"] == o])
                   for o in sorted({r["order"] for r in shared_rows if r["point"] == point})]
        groups.append(("thesis_code", None, [r for r in rows if r["point"] == point and r["system"] == "thesis_code"]))
        for regime, order, mine in groups:
            if mine:
                k = sum(r["split"] for r in mine)
                out.append({"point": point, "regime": regime, "order": order, "runs": len(mine), "splits": k, "rate": k / len(mine)})
    return out


def _interval(rate, low, high) -> str:
    return f"{rate:.2f} [{low:.2f}, {high:.2f}]"


def _verdict(c: dict | None) -> str:
    if c is None:
        return "–"
    word = "overlap: no difference reported" if c["overlap"] else "**DIFFER** (the intervals do not overlap)"
    return f"{c['difference']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]; {word}"


def orders_markdown(table: Sequence[dict]) -> str:
    lines = ["# Batch order: lth_jax on independent and on shared epoch orders, and the thesis's code", "",
             "Per point: lth_jax with each seed on its own epoch order (per_seed: independent runs; Wilson's 95% interval); "
             "lth_jax with every seed of a run on one shared order, the same seeds (initializations) on each order (the rate of "
             "each order as splits of its seeds, the pooled rate with a two-way cluster bootstrap 95% interval: orders "
             "and seeds resampled with replacement, 10,000 resamples, seed 0); the spread between orders (standard deviation "
             "of the orders' rates; Cochran's Q test that the orders' rates are equal, paired on the seeds; the ICC, the "
             "orders' share of one run's variance from the two-way variance components); and the thesis's code, whose "
             "seeds all trained on one order: Wilson's interval as if they were independent, and widened by the design "
             "effect 1 + (m − 1)·ICC with the ICC measured here at that point (Wilson at the effective number of runs m / deff).", "",
             "| point | lth_jax per_seed | lth_jax shared: splits per order | shared pooled [95% CI] | between-order std | "
             "Cochran's Q (p) | ICC | thesis code, Wilson | thesis code, widened [deff] |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in table:
        per_seed = (f"{c['lth_jax_splits']}/{c['lth_jax_runs']}, {_interval(c['lth_jax_rate'], c['lth_jax_low'], c['lth_jax_high'])}"
                    if c["lth_jax_runs"] else "–")
        orders = " ".join(f"{k}" for k in c["order_splits"]) + f" (of {c['seeds_per_order']} each)"
        pooled = f"{c['shared_splits']}/{c['shared_runs']}, {_interval(c['shared_rate'], c['shared_low'], c['shared_high'])}"
        if c["shared_interval"] != "cluster bootstrap":
            pooled += f" ({c['shared_interval']})"
        std = "–" if c["between_order_std"] is None else f"{c['between_order_std']:.3f}"
        q = "–" if c["cochran_q"] is None else f"{c['cochran_q']:.1f} ({c['cochran_p']:.2f})"
        icc = "–" if c["icc"] is None else f"{c['icc']:.3f}"
        thesis = widened = "–"
        if c["thesis_code_runs"]:
            thesis = f"{c['thesis_code_splits']}/{c['thesis_code_runs']}, " + _interval(c["thesis_code_rate"], c["thesis_code_low"],
                                                                                      c["thesis_code_high"])
            deff = "no spread measured" if c["design_effect"] is None else f"deff {c['design_effect']:.2f}"
            widened = f"[{c['thesis_code_widened_low']:.2f}, {c['thesis_code_widened_high']:.2f}] ({deff})"
        lines.append(f"| {c['point']} | {per_seed} | {orders} | {pooled} | {std} | {q} | {icc} | {thesis} | {widened} |")
    lines += ["", "Differences, with the 95% interval made from the two rates' own intervals (MOVER: Newcombe's method for two "
              "Wilson intervals; here also with the widened and the bootstrap ones). As in the rest of the report, a difference "
              "is reported only when the two rates' intervals do not overlap.", "",
              "| point | thesis code (widened) − lth_jax per_seed | thesis code (widened) − lth_jax shared "
              "| lth_jax shared − per_seed |",
              "| --- | --- | --- | --- |"]
    for c in table:
        lines.append(f"| {c['point']} | {_verdict(c.get('thesis_vs_per_seed'))} | {_verdict(c.get('thesis_vs_shared'))} "
                     f"| {_verdict(c.get('shared_vs_per_seed'))} |")
    return "\n".join(lines) + "\n"


def orders_report(rows: Sequence[dict], shared_rows: Sequence[dict], out: str | os.PathLike, *,
                  resamples: int = RESAMPLES) -> list[epath.Path]:
    """``out/batch_order.md``, ``out/batch_order.csv`` (per point) and ``out/batch_order_rates.csv`` (per point,
    regime and order); returns the written files."""
    out = epath.Path(out)
    table = order_table(rows, shared_rows, resamples=resamples)
    flat = [{k: v for k, v in c.items() if not isinstance(v, dict)}
            | {f"{name}_{k}": v for name, pair in c.items() if isinstance(pair, dict) for k, v in pair.items()} for c in table]
    fields = list(dict.fromkeys(k for row in flat for k in row))  # a point without the thesis's code lacks its columns
    write_csv(out / "batch_order.csv", [{k: row.get(k) for k in fields} for row in flat])
    write_csv(out / "batch_order_rates.csv", rate_rows(rows, shared_rows))
    (out / "batch_order.md").write_text(orders_markdown(table))
    return [out / "batch_order.md", out / "batch_order.csv", out / "batch_order_rates.csv"]
