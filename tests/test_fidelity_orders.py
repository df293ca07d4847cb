"""The batch-order study's statistics on known tables (spread between orders, cluster bootstrap, design
effect, the interval of a difference), its table and report, and the harness's shared-order runs."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, script_env
from test_batch_order import harness_call
from test_fidelity import recorded_thesis_code

from lth_jax import fidelity, fidelity_orders
from lth_jax.errors import UserError
from lth_jax.stats import cluster_bootstrap, design_effect_interval, mover_difference, order_spread, wilson_interval

# 3 orders × 4 seeds, worked by hand: order rates 0.5, 0.25, 0; seed totals 2, 1, 0, 0
TABLE = [[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]


def test_the_spread_between_orders_of_a_table_worked_by_hand():
    spread = order_spread(TABLE)
    assert spread.splits == (2, 1, 0) and spread.seeds == 4 and spread.pooled == 0.25
    assert spread.between_std == pytest.approx(0.25)  # the sample std of 0.5, 0.25, 0
    # Cochran's Q = (k − 1)(k ΣC² − N²) / (k N − ΣR²) = 2 (3·5 − 9) / (3·3 − 5) = 3, chi-square with 2 dof: p = exp(−1.5)
    assert spread.cochran_q == pytest.approx(3.0) and spread.p_value == pytest.approx(math.exp(-1.5))
    # MS_order = 0.25, MS_seed = 0.30556, MS_residual = 0.83333 / 6: σ²_order = 1/36, σ²_seed = 1/18, σ²_res = 5/36 → 1/8
    assert spread.icc == pytest.approx(0.125)
    # the orders carry everything: ICC 1; the seeds carry everything: ICC 0, Q 0
    by_order = order_spread([[1] * 16] * 4 + [[0] * 16] * 4)
    assert by_order.icc == pytest.approx(1.0) and by_order.p_value < 1e-10
    by_seed = order_spread([[1] * 8 + [0] * 8] * 8)
    assert by_seed.icc == 0.0 and by_seed.cochran_q == 0.0 and by_seed.between_std == 0.0


def test_edge_cases_every_order_0_of_16_and_one_order():
    none = order_spread(np.zeros((8, 16)))
    assert (none.pooled, none.between_std, none.cochran_q, none.p_value, none.icc) == (0.0, 0.0, 0.0, 1.0, 0.0)
    assert cluster_bootstrap(np.zeros((8, 16))) == (0.0, 0.0)
    assert fidelity_orders.shared_interval(np.zeros((8, 16))) == (*wilson_interval(0, 8), "Wilson over 8 (every run alike)")
    assert fidelity_orders.shared_interval(np.ones((2, 16)))[:2] == wilson_interval(2, 2)
    one = order_spread([[1, 0, 0, 0]])
    assert one.splits == (1,) and one.pooled == 0.25 and one.between_std is one.cochran_q is one.p_value is one.icc is None
    low, high = cluster_bootstrap([[1, 0, 0, 0]], resamples=2000)  # one order: only the seeds vary
    assert low == 0.0 and 0.5 <= high <= 0.75
    with pytest.raises(UserError, match="a table of 0/1"):
        order_spread([[0, 2]])
    with pytest.raises(UserError, match="a table of 0/1"):
        order_spread([])


def test_the_cluster_bootstrap_is_fixed_by_its_seed_and_widens_with_the_spread_between_orders():
    rng = np.random.default_rng(7)
    mixed = (rng.random((8, 16)) < 0.3).astype(int)
    assert cluster_bootstrap(mixed, seed=3) == cluster_bootstrap(mixed, seed=3)
    assert cluster_bootstrap(mixed, seed=3, resamples=50) != cluster_bootstrap(mixed, seed=4, resamples=50)
    low, high = cluster_bootstrap(mixed)
    assert low < mixed.mean() < high
    # the same 64 splits of 128 runs: spread over the seeds (about the binomial width), or carried by 4 of 8 orders
    by_seed, by_order = np.array([[1] * 8 + [0] * 8] * 8), np.array([[1] * 16] * 4 + [[0] * 16] * 4)
    width = lambda t: np.subtract(*cluster_bootstrap(t)[::-1])  # noqa: E731
    assert 0.35 < width(by_seed) < 0.6 and 0.6 < width(by_order) < 0.8  # 4 orders of 8 carry all: about ±0.35
    assert width(by_seed) > np.subtract(*wilson_interval(64, 128)[::-1])  # 16 initializations, not 128 runs
    low, high = cluster_bootstrap(by_order, same_seeds=False)
    assert (low, high) == pytest.approx(cluster_bootstrap(by_order), abs=0.07)  # within an order every seed agrees


def test_the_design_effect_widens_wilson_and_the_difference_interval_is_newcombes():
    assert design_effect_interval(1, 16, 0.0) == (*wilson_interval(1, 16), 1.0)
    low, high, deff = design_effect_interval(1, 16, 0.1)
    assert deff == pytest.approx(2.5) and (low, high) == pytest.approx(wilson_interval(0.4, 6.4))
    assert low < wilson_interval(1, 16)[0] and high > wilson_interval(1, 16)[1]
    assert design_effect_interval(4, 16, 1.0)[:2] == pytest.approx(wilson_interval(0.25, 1.0))  # all 16 runs are one draw
    with pytest.raises(UserError, match="icc=1.5"):
        design_effect_interval(1, 16, 1.5)
    # Newcombe (1998), Statistics in Medicine 17:873, 56/70 − 48/80, method 10: 0.0524 to 0.3339
    d, low, high = mover_difference(56 / 70, wilson_interval(56, 70), 48 / 80, wilson_interval(48, 80))
    assert d == pytest.approx(0.2) and low == pytest.approx(0.0524, abs=5e-4) and high == pytest.approx(0.3339, abs=5e-4)


def _row(system, point, seed, split, order=None):
    row = {"system": system, "point": point, "seed": seed, "split": bool(split)}
    return row if order is None else {**row, "order": order}


def test_the_table_puts_both_regimes_and_the_widened_thesis_interval_side_by_side(tmp_path):
    point = "w38_L10"
    shared = [_row("lth_jax", point, s, TABLE[o][s], o) for o in range(3) for s in range(4)]
    rows = [_row("lth_jax", point, s, s < 7, None) for s in range(32)] + [_row("thesis_code", point, s, s == 0) for s in range(16)]
    (cell,) = fidelity_orders.order_table(rows, shared, resamples=2000)
    assert cell["order_splits"] == [2, 1, 0] and (cell["shared_splits"], cell["shared_runs"]) == (3, 12)
    assert cell["icc"] == pytest.approx(0.125) and cell["design_effect"] == pytest.approx(1 + 15 * 0.125)
    assert (cell["lth_jax_splits"], cell["lth_jax_runs"], cell["thesis_code_splits"], cell["thesis_code_runs"]) == (7, 32, 1, 16)
    assert (cell["thesis_code_widened_low"], cell["thesis_code_widened_high"]) == pytest.approx(design_effect_interval(1, 16, 0.125)[:2])
    versus = cell["thesis_vs_per_seed"]
    assert versus["difference"] == pytest.approx(1 / 16 - 7 / 32) and versus["low"] < 0 < versus["high"] and versus["overlap"]
    assert cell["shared_interval"] == "cluster bootstrap" and cell["shared_low"] <= 0.25 <= cell["shared_high"]
    rates = fidelity_orders.rate_rows(rows, shared)
    assert [(r["regime"], r["order"], r["splits"], r["runs"]) for r in rates] == [
        ("per_seed", None, 7, 32), ("shared", 0, 2, 4), ("shared", 1, 1, 4), ("shared", 2, 0, 4), ("thesis_code", None, 1, 16)]
    written = fidelity_orders.orders_report(rows, shared, tmp_path, resamples=2000)
    text = (tmp_path / "batch_order.md").read_text()
    assert "| w38_L10 | 7/32, 0.22 [0.11, 0.39] | 2 1 0 (of 4 each) | 3/12, 0.25 [" in text
    assert "| 1/16, 0.06 [0.01, 0.28] | [" in text and "(deff 2.88) |" in text and "overlap: no difference reported" in text
    assert [p.name for p in written] == ["batch_order.md", "batch_order.csv", "batch_order_rates.csv"]
    with pytest.raises(UserError, match="each order must run the same seeds"):
        fidelity_orders.shared_outcomes(shared[:-1])


def test_the_harness_runs_the_shared_orders_beside_per_seed_in_the_same_packs(tmp_path, monkeypatch):
    c = fidelity.default_config()
    c.points, c.seeds, c.shared_orders, c.shared_seeds = ("w38_L06", "ext9"), 4, 3, 2
    call = harness_call(c, tmp_path, monkeypatch)
    points, base = call["points"], call["base"]
    assert points == ("w38_L06", "ext9") and call["seeds"] == [0, 1, 2, 3] and call["workdir"] == tmp_path / "lth_jax"
    assert base.batch_order == "per_seed"
    assert [(p, cfg.batch_order, cfg.shared_order, cfg.seeds, str(path.relative_to(tmp_path))) for p, cfg, path in call["also"]] == [
        (p, "shared", k, (0, 1), f"lth_jax_shared/order_{k}/{p}") for k in range(3) for p in points]
    for field, value, message in (("shared_orders", -1, "--config.shared_orders=-1: give a number of shared orders from 0 to 65536"),
                                  ("shared_seeds", 0, "--config.shared_seeds=0: give a number of seeds of at least 1")):
        bad = fidelity.default_config()
        bad.shared_orders = 2
        bad[field] = value
        with pytest.raises(UserError, match=f"^{message}$"):
            fidelity.run(bad, tmp_path)
    bad = fidelity.default_config()
    bad.shared_orders, bad.experiment.batch_order = 2, "shared"
    with pytest.raises(UserError, match=r"leave --config.experiment.batch_order=per_seed \(not 'shared'\)$"):
        fidelity.run(bad, tmp_path)


def test_the_batch_order_preset_on_a_tiny_point_writes_both_reports(tmp_path):
    recorded = recorded_thesis_code(tmp_path)
    workdir = tmp_path / "run"
    args = [sys.executable, "-m", "experiments.fidelity", "--config=fidelity_batch_order", f"--workdir={workdir}",
            "--config.points=w31_L01", "--config.seeds=2", "--config.shared_orders=2", "--config.shared_seeds=2", "--config.epochs=2", "--config.patience=0",
            f"--config.thesis_results={recorded}", "--config.structure_point=w31_L01"]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, env=script_env())
    assert proc.returncode == 0, proc.stderr
    assert "[batch_order.md](batch_order.md)" in (workdir / "fidelity.md").read_text()
    text = (workdir / "batch_order.md").read_text()
    assert "| w31_L01 | 0/2, 0.00 [0.00, 0.66] | 0 0 (of 2 each) |" in text and "| 1/1, 1.00 [0.21, 1.00] |" in text
    shared = [json.loads(line) for line in (workdir / "shared_rows.jsonl").read_text().splitlines()]
    assert sorted((r["order"], r["seed"]) for r in shared) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    settings = json.loads((workdir / "lth_jax_shared" / "order_1" / "w31_L01" / "imp" / "seed_0" / "settings.json").read_text())
    assert settings["batch_order"] == "shared:1"
    points = json.loads((workdir / "points.json").read_text())
    assert (points["shared_orders"], points["shared_seeds"], points["batch_order"]) == (2, 2, "per_seed")
