"""The fidelity harness: its statistics, its reading of the thesis code's output, its split-rule
check, and its lth_jax side on a tiny point (the thesis-code side is a benchmark, not a test)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, script_env
from helpers import assert_one_line_error

from lth_jax import fidelity, fidelity_points, fidelity_report
from lth_jax.errors import UserError
from lth_jax.parallel_tasks import ThesisConfig
from lth_jax.structure import analyze


def test_points_name_the_thesis_grids():
    assert fidelity.point_overrides("w48_L10") == {"shape": (4, 48, 48, 2), "extension_level": None, "levels": 10, "target": 112, "rate": None}
    assert fidelity.point_overrides("ext9")["extension_level"] == 9 and fidelity.point_overrides("ext9")["base_shape"] == (4, 8, 8, 2)
    assert fidelity.point_overrides("e2_ext4")["base_shape"] == (4, 20, 2)
    assert [fidelity.experiment_of(p) for p in ("ext3", "e2_ext12", "w31_L02")] == ["E1", "E2", "E4"]
    # every point makes a valid experiment, with the thesis's trajectory to 112 weights for E4
    for point in fidelity.POINT_SETS["full"]:
        shape, plan = ThesisConfig(**fidelity.point_overrides(point)).network()
        if point.startswith("w"):
            assert plan.trajectory(sum(a * b for a, b in zip(shape, shape[1:])))[-1] == 112
    with pytest.raises(UserError, match="point 'w48L10' is not"):
        fidelity.point_overrides("w48L10")


def test_points_place_themselves_in_their_grids_and_the_report_needs_no_harness():
    assert [fidelity_points.point_axis(p) for p in ("ext3", "e2_ext12", "w31_L02")] == [(3, None), (12, None), (2, 31)]
    assert fidelity.point_overrides is fidelity_points.point_overrides and fidelity.SYSTEMS == fidelity_points.SYSTEMS
    # the tables import the point definitions, not the harness that trains them (which imports the tables)
    code = "import sys, lth_jax.fidelity_report; print('lth_jax.fidelity' in sys.modules, 'lth_jax.parallel_tasks' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, env=script_env())
    assert proc.stdout.split() == ["False", "False"], proc.stderr


def _levels(statuses):
    return [{"status": s, "weights": 100 - i, "active_edges": 50 - i, "test_loss": 0.1 * (i + 1), "epochs": 10} for i, s in enumerate(statuses)]


def test_seed_rows_and_the_point_table():
    rows = [fidelity.seed_row("lth_jax", "w48_L10", seed, _levels(s)) for seed, s in enumerate(
        [["interconnected", "split", "split"], ["interconnected", "split", "degraded"], ["interconnected", "degraded"], ["interconnected"] * 3])]
    assert [r["category"] for r in rows] == ["Separated", "Separated-Degraded", "Degraded", "Interconnected"]
    assert rows[0]["active_at_split"] == 49 and rows[0]["loss_at_split"] == pytest.approx(0.2) and rows[0]["epochs"] == 30
    assert rows[2]["active_at_split"] is None and rows[2]["degradation_level"] == 1
    rows += [fidelity.seed_row("thesis_code", "w48_L10", seed, _levels(["interconnected"] * 3)) for seed in range(4)]
    table = fidelity_report.point_table(rows)
    ours, theirs, published = (next(c for c in table if c["system"] == s) for s in fidelity.SYSTEMS)
    assert (published["seeds"], published["splits"]) == (4, 3)  # the thesis's figure: 3 of 4 at width 48, 10 levels
    assert ours["overlaps_published"] is theirs["overlaps_published"] is True
    assert (ours["seeds"], ours["splits"], ours["split_rate"]) == (4, 2, 0.5)
    assert (ours["Separated"], ours["Separated-Degraded"], ours["Degraded"], ours["Interconnected"]) == (1, 1, 1, 1)
    assert ours["median_split_level"] == 1.0 and ours["median_degradation_level"] == 1.5
    assert theirs["splits"] == 0 and ours["intervals_overlap"] is theirs["intervals_overlap"] is True
    # 0 of 40 against 40 of 40: the intervals do not overlap
    far = [fidelity.seed_row("lth_jax", "ext3", s, _levels(["split"])) for s in range(40)]
    far += [fidelity.seed_row("thesis_code", "ext3", s, _levels(["interconnected"])) for s in range(40)]
    assert {c.get("intervals_overlap") for c in fidelity_report.point_table(far) if c["system"] != "thesis_published"} == {False}


def test_thesis_code_statuses_come_from_its_untapped_potential(tmp_path):
    assert [fidelity.status_of_potential(u) for u in (1.0, 0.0, -0.001, -0.5)] == ["interconnected", "split", "degraded", "degraded"]
    record = {"system": "thesis_code", "point": "ext1", "seed": 3, "levels": [
        {"level": 0, "weights": 160, "untapped_potential": 1.0, "active_edges": 160, "test_loss": 0.01, "epochs": 300},
        {"level": 1, "weights": 112, "untapped_potential": 0.0, "active_edges": 80, "test_loss": 0.02, "epochs": 400}]}
    path = tmp_path / "thesis.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps({**record, "levels": record["levels"][:1]}) + "\n")
    rows, records = fidelity.read_thesis_code([path])
    assert len(rows) == 1 and rows[0]["category"] == "Separated" and rows[0]["active_at_split"] == 80  # the first record of a pair
    with pytest.raises(UserError, match="do not exist"):
        fidelity.read_thesis_code([tmp_path / "missing.jsonl"])


def test_rule_check_compares_the_thesis_status_with_ours():
    # a split 4-4-2 ticket: circles inputs 0,1 -> hidden 0,1 -> output 0; moons inputs 2,3 -> hidden 2,3 -> output 1
    first = np.zeros((4, 4), bool)
    first[:2, :2] = first[2:, 2:] = True
    second = np.zeros((4, 2), bool)
    second[:2, 0] = second[2:, 1] = True
    assert analyze([first, second], [0, 0, 1, 1], [0, 1]).status == "split"
    masks = {"level0_layer0": np.ones((4, 4), bool), "level0_layer1": np.ones((4, 2), bool), "level1_layer0": first, "level1_layer1": second}
    agreeing = {"levels": [{"level": 0, "untapped_potential": 1.0}, {"level": 1, "untapped_potential": 0.0}]}
    assert fidelity.rule_check(agreeing, masks) == 0
    wrong = {"levels": [{"level": 0, "untapped_potential": 0.0}, {"level": 1, "untapped_potential": -1.0}]}
    assert fidelity.rule_check(wrong, masks) == 2
    # E5/E7 level by level: each system's own edge counts, decided ratios from the masks
    record = {"levels": [{"level": 1, "weights": 12, "active_edges": 12, "inactive_edges": 3, "zombie_edges": 1}]}
    ours = [{"level": 1, "weights_remaining": 12, "edges": {"active": 6, "inactive": 6, "zombie": 0, "pruned": 12},
             "decided_output": [0.5], "decided_input": [float("nan")]}]
    rows = fidelity.structure_rows(ours, record, masks)
    assert [r["system"] for r in rows] == ["lth_jax", "thesis_code"]
    assert rows[0]["active_fraction"] == 0.5 and rows[0]["decided_input"] == [None]
    assert rows[1]["active_fraction"] == 0.75 and rows[1]["zombie_fraction"] == 1 / 16
    assert rows[1]["decided_output"] == rows[1]["decided_input"] == [1.0]  # every hidden unit serves one task


def recorded_thesis_code(directory):
    """A thesis-code driver file with one run of point w31_L01 (seed 0): split at level 1."""
    record = {"system": "thesis_code", "point": "w31_L01", "seed": 0, "shape": [4, 31, 31, 2], "trajectory": [1147, 112], "levels": [
        {"level": 0, "weights": 1147, "untapped_potential": 1.0, "active_edges": 1147, "inactive_edges": 0, "zombie_edges": 0,
         "test_loss": 0.01, "epochs": 400},
        {"level": 1, "weights": 112, "untapped_potential": 0.0, "active_edges": 71, "inactive_edges": 39, "zombie_edges": 2,
         "test_loss": 0.008, "epochs": 700}]}
    recorded = directory / "thesis.jsonl"
    recorded.write_text(json.dumps(record) + "\n")
    return recorded


def test_the_lth_jax_side_on_a_tiny_point_writes_the_report(tmp_path):
    """The script as a user runs it: 1 seed, 2 epochs per level, compared with a recorded thesis-code run."""
    recorded = recorded_thesis_code(tmp_path)
    workdir = tmp_path / "run"
    args = [sys.executable, "-m", "experiments.fidelity", f"--workdir={workdir}", "--config.points=w31_L01", "--config.seeds=1",
            "--config.epochs=2", "--config.patience=0", f"--config.thesis_results={recorded}",
            "--config.structure_point=w31_L01"]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, env=script_env())
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (workdir / "rows.jsonl").read_text().splitlines()]
    ours = next(r for r in rows if r["system"] == "lth_jax")
    assert ours["point"] == "w31_L01" and ours["levels_trained"] == 2 and ours["epochs"] == 4 and ours["final_weights"] == 112
    assert next(r for r in rows if r["system"] == "thesis_code")["split"] is True
    report = (workdir / "fidelity.md").read_text()
    assert "| w31_L01 | lth_jax | 1 |" in report and "| w31_L01 | thesis_code | 1 | 1 | 1.00 [0.21, 1.00]" in report
    assert "| w31_L01 | thesis (published) | 4 | 0 | 0.00 [0.00, 0.49]" in report  # the thesis's own grid
    assert "the thesis's code trains the same shape along the same weight counts at every point" in report
    assert "## E5/E7: w31_L01, seed 0" in report and "| 1 | 112 | thesis_code | 0.634 |" in report  # 71 of 112 active
    assert (workdir / "E4.csv").exists() and (workdir / "seeds.csv").exists() and (workdir / "figures" / "E4.png").stat().st_size > 1000
    assert (workdir / "lth_jax" / "w31_L01" / "metrics.jsonl").exists()
    # a point that is not one of the grids' is one line
    bad = subprocess.run(args[:4] + ["--config.points=w31"], cwd=REPO, capture_output=True, text=True, timeout=120, env=script_env())
    assert_one_line_error(bad, "point 'w31' is not extN (E1), e2_extN (E2) or wW_LN (E4)")


def test_the_harness_finishes_each_run_beside_the_rest_of_its_pack(tmp_path, monkeypatch):
    import threading

    from lth_jax import parallel_tasks

    finished, finish = [], parallel_tasks._Experiment.finish

    def tracked(self):
        finished.append((self.workdir.name, threading.current_thread() is threading.main_thread()))
        return finish(self)

    monkeypatch.setattr(parallel_tasks._Experiment, "finish", tracked)
    base = ThesisConfig(epochs=2, patience=None, learning_rate=1e-2)
    rows = fidelity.run_lth_jax(["w31_L01", "w31_L02"], [0], tmp_path, base=base, log_fn=lambda line: None)
    assert [r["levels_trained"] for r in rows] == [2, 3]
    assert finished == [("w31_L01", False), ("w31_L02", False)]  # in the finisher thread, as a sweep's points


def test_row_table_counts_initializations_across_a_row():
    def row(point, seed, split):
        return fidelity.seed_row("lth_jax", point, seed, _levels(["interconnected", "split" if split else "interconnected"]))

    rows = [row("w38_L06", 0, True), row("w38_L10", 0, False), row("w38_L06", 1, False), row("w38_L10", 1, False),
            row("w38_L06", 2, True), row("w38_L10", 2, True), row("w38_L10", 3, True)]  # seed 3 lacks L06: left out
    (cell,) = fidelity_report.row_table(rows)
    assert (cell["width"], cell["level_counts"], cell["seeds"], cell["seeds_that_split"]) == (38, [6, 10], 3, 2)
    assert cell["none_of_4_seeds"] == pytest.approx((1 / 3) ** 4)
    # with the thesis's code at 10 levels only, both rows count the 10-level cell alone
    theirs = fidelity.seed_row("thesis_code", "w38_L10", 0, _levels(["interconnected"] * 2))
    ours, code = fidelity_report.row_table(rows + [theirs])
    assert ours["level_counts"] == code["level_counts"] == [10] and (ours["seeds"], ours["seeds_that_split"]) == (4, 2)
