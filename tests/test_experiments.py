"""The small IMP example script, run as a user runs it; user errors against internal errors (its bad flags,
one line each: the fuzz cases of test_bad_input.py)."""

import json
import subprocess
import sys

from conftest import REPO, script_env


def run_script(module, *args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env=script_env(),
    )


def test_imp_mlp_prints_a_table_and_writes_its_outputs(tmp_path):
    workdir = tmp_path / "run"
    proc = run_script("experiments.imp_mlp", f"--workdir={workdir}", "--config.epochs=3", "--config.levels=2", "--config.shape=4,16,2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["level", "weights", "kept"])
    rows = [line.split() for line in lines[header + 1 : header + 4]]
    assert [r[0] for r in rows] == ["0", "1", "2"]
    assert [int(r[1]) for r in rows] == [96, 65, 44]  # 4*16 + 16*2 at rate 0.32
    metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [m["level"] for m in metrics] == [0, 1, 2] and len(metrics[0]["test_accuracy"]) == 2
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["trajectory"] == [96, 65, 44]
    config = json.loads((workdir / "config.json").read_text())
    assert config["config"]["epochs"] == 3 and config["environment"]["packages"]["jax"]
    assert (workdir / "imp" / "level_02" / "ticket" / "ticket.json").exists()
    # the same command again resumes: nothing is trained, the same table is printed
    again = run_script("experiments.imp_mlp", f"--workdir={workdir}", "--config.epochs=3", "--config.levels=2", "--config.shape=4,16,2")
    assert again.returncode == 0 and [line.split()[:2] for line in again.stdout.splitlines()[header + 1 : header + 4]] == [r[:2] for r in rows]


def test_rejected_settings_leave_the_run_intact(tmp_path):
    args = [f"--workdir={tmp_path}", "--config.epochs=1", "--config.levels=1", "--config.shape=4,8,2"]
    assert run_script("experiments.imp_mlp", *args).returncode == 0
    before = (tmp_path / "config.json").read_text()
    proc = run_script("experiments.imp_mlp", *args, "--config.rate=0.5")
    assert proc.returncode == 1 and "holds a run with plan.rate=0.32; this run asks plan.rate=0.5" in proc.stderr
    assert (tmp_path / "config.json").read_text() == before


def test_internal_errors_keep_their_traceback(tmp_path):
    """Only user mistakes are one line: a bug inside the library (here a ValueError
    from numpy) is reported with its traceback so that it can be debugged."""
    code = f"""
import sys
sys.argv = ["imp_mlp", "--workdir={tmp_path}", "--config.epochs=1", "--config.levels=1"]
import numpy as np
from lth_jax import imp_mlp
def broken(*args, **kwargs):
    np.zeros(3).reshape(2, 2)  # a shape bug
imp_mlp.run_imp = broken
from experiments import cli, imp_mlp as script
cli.run(script.main)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=script_env())
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr and "cannot reshape array of size 3" in proc.stderr
    assert not any(line.startswith("error: ") for line in proc.stderr.splitlines())
