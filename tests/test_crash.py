"""Crash at every write: a run killed at any moment of any file or checkpoint write
(or deletion), then run again with the same command, ends with the masks and
metrics of an uninterrupted run, and no temporary file remains.

For each scenario (IMP, the thesis experiment, a transfer study) one
uninterrupted run records, at every moment a kill could interrupt, what a
killed process would leave on disk (``tests/faults.py``); the same command is
then run on each of those directories. One scenario is also killed for real
(``Killed`` raised mid-write) to check that the snapshots stand for kills.
"""

import functools
import json
import re
from pathlib import Path

import jax
import numpy as np
import pytest
from faults import Faults, Killed, temporaries
from helpers import vector_data

from experiments.configs import find_ticket_digits_lenet
from lth_jax import objectives, parallel_tasks
from lth_jax.find_ticket import find_ticket
from lth_jax.imp import run_imp
from lth_jax.models import MLP
from lth_jax.optim import OptimizerRecipe
from lth_jax.parallel_tasks import ThesisConfig, run_parallel_tasks
from lth_jax.tickets import load_ticket
from lth_jax.train import TrainConfig
from lth_jax.trajectory import PruningPlan
from lth_jax.transfer import TransferStudy, run_transfer_study

QUIET = dict(log_fn=lambda line: None)
TIMING = ("seconds", "examples_per_second")


def imp_run(workdir):
    config = TrainConfig(epochs=2, batch_size=16, optimizer=OptimizerRecipe(name="adam", learning_rate=1e-2), log_every_epochs=0,
                         checkpoint_every_epochs=1)
    run_imp(MLP((4, 8, 2)), objectives.sigmoid_tasks(2), vector_data(n=32), vector_data(n=16, seed=1), config,
            PruningPlan(rate=0.5, levels=2), rewind="1ep", workdir=workdir, **QUIET)


def thesis_run(workdir):
    config = ThesisConfig(extension_level=1, seeds=(0,), epochs=2, patience=None, learning_rate=1e-2, checkpoint_every_epochs=1)
    run_parallel_tasks(config, workdir, **QUIET)


def packed_sweep(workdir):
    """Two E4 points of one shape (1 and 2 levels), seed 0: one IMP run, level 0 trained once."""
    from lth_jax import thesis_sweep

    base = ThesisConfig(extension_level=1, seeds=(0,), epochs=2, patience=None, learning_rate=1e-2)
    thesis_sweep.run_sweep("e4", base, workdir, widths=(6,), level_counts=(1, 2), target=30, pack=True, **QUIET)


def tiny_digits():
    c = find_ticket_digits_lenet.get_config()
    c.model = "lenet_16"
    c.rewind = "0"
    c.training.update(epochs=2, checkpoint_every_epochs=1)
    c.pruning.levels = 1
    return c


@pytest.fixture(scope="module")
def source_tickets(tmp_path_factory):
    """The tickets of a finished find_ticket run: the study reuses them (as the second
    study of ``make transfer_demo`` does); killing IMP runs is the IMP scenario."""
    workdir = tmp_path_factory.mktemp("source")
    c = tiny_digits()
    c.dataset = "digits_a"
    find_ticket(c, workdir, **QUIET)
    return workdir


def transfer_run(workdir, source):
    # One transferred ticket and the dense baseline of the target (a random ticket's stage is of the same kind).
    study = TransferStudy(source=None, targets=["digits_b"], baselines=(), levels=[1], source_workdir=str(source))
    run_transfer_study(tiny_digits(), study, workdir, **QUIET)


def _files(root) -> set[str]:
    """The files under ``root``, with the random parts of names (temporaries, orbax's
    data files) blanked."""
    names = set()
    for p in root.rglob("*"):
        name = re.sub(r"tmp-\d+", "tmp-*", str(p.relative_to(root)))
        names.add(re.sub(r"[0-9a-f]{32}", "*", re.sub(r"\.[0-9a-f]{8}\.tmp$", ".*.tmp", name)))
    return names


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def outcome(workdir) -> dict:
    """The masks of every ticket and every record and metrics row, without wall times."""
    root = Path(workdir)
    found = {}
    for path in sorted(root.rglob("ticket.json")):
        mask = load_ticket(path.parent).mask
        found[str(path.parent.relative_to(root))] = [np.asarray(m).tolist() for m in jax.tree.leaves(mask)]
    for name in ("record.json", "metrics.jsonl", "summary.json"):
        for path in sorted(root.rglob(name)):
            text = path.read_text()
            rows = [json.loads(line) for line in text.splitlines() if line.strip()] if name.endswith("l") else json.loads(text)
            found[str(path.relative_to(root))] = _without_timing(rows)
    return found


def crash_everywhere(run, tmp_path, monkeypatch):
    snapshots = tmp_path / "killed"
    reference = snapshots / "reference"  # at the depth of the snapshots: relative paths out of them agree
    with monkeypatch.context() as patch:
        moments = Faults(snapshots=(reference, snapshots)).install(patch).moments
        run(reference)
    expected = outcome(reference)
    assert moments and expected and temporaries(reference) == []
    for k, moment in enumerate(moments, start=1):
        workdir = snapshots / f"{k:04d}"  # absent: killed before anything was written
        run(workdir)  # the same command again
        assert outcome(workdir) == expected, f"killed {moment} (moment {k} of {len(moments)})"
        assert temporaries(workdir) == [], f"killed {moment}"
    return moments


def test_a_real_kill_leaves_what_the_snapshot_says(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        moments = Faults(snapshots=(tmp_path / "reference", tmp_path / "snapshots")).install(patch).moments
        imp_run(tmp_path / "reference")
    for k in (len(moments) // 3, 2 * len(moments) // 3):
        with monkeypatch.context() as patch:
            Faults(kill_at=k).install(patch)
            with pytest.raises(Killed):
                imp_run(tmp_path / f"killed_{k}")
        snapshot, killed = tmp_path / "snapshots" / f"{k:04d}", tmp_path / f"killed_{k}"
        assert _files(killed) == _files(snapshot), moments[k - 1]


def test_imp_killed_at_every_write_resumes_to_the_same_tickets(tmp_path, monkeypatch):
    moments = crash_everywhere(imp_run, tmp_path, monkeypatch)
    assert any("while checkpointing" in m for m in moments) and any("rewind" in m for m in moments)


def test_the_thesis_experiment_killed_at_every_write_resumes_to_the_same_results(tmp_path, monkeypatch):
    # The figures are drawn anew at the end of every run and are not part of what resumes;
    # drawing them at every moment would only cost time.
    from lth_jax import plots

    monkeypatch.setattr(plots, "save_thesis_figures", lambda *args: None)
    moments = crash_everywhere(thesis_run, tmp_path, monkeypatch)
    assert any("summary.json" in m for m in moments) and any("seed_0/level_01" in m for m in moments)


def test_a_packed_sweep_killed_at_every_write_resumes_to_the_same_results(tmp_path, monkeypatch):
    from lth_jax import plots

    monkeypatch.setattr(plots, "save_thesis_figures", lambda *args: None)
    moments = crash_everywhere(packed_sweep, tmp_path, monkeypatch)
    assert any("w6_L01/imp/seed_0/level_00" in m for m in moments) and any("w6_L02/imp/seed_0/level_02" in m for m in moments)
    assert any("sweep.jsonl" in m for m in moments)


def test_a_transfer_study_killed_at_every_write_resumes_to_the_same_results(tmp_path, monkeypatch, source_tickets):
    moments = crash_everywhere(functools.partial(transfer_run, source=source_tickets), tmp_path, monkeypatch)
    assert any("winning_level_01" in m for m in moments)
    assert any("metrics.jsonl" in m for m in moments) and any("target/digits_b_sgd" in m for m in moments)
