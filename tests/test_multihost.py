"""--multihost: two JAX processes on this machine (loopback coordinator, gloo collectives)
find the same tickets as one process with the same two devices."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np

from conftest import REPO
from lth_jax.checkpoint import load_ticket

ARGS = ["--config=experiments/configs/digits_lenet.py", "--config.training.epochs=2", "--config.pruning.levels=1",
        "--config.training.batch_size=64"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_ticket(workdir, *extra, devices=1):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    return subprocess.Popen([sys.executable, "-m", "experiments.find_ticket", *ARGS, f"--workdir={workdir}", *extra], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rows(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_find_the_tickets_of_one_process_with_two_devices(tmp_path):
    address = f"--coordinator_address=127.0.0.1:{free_port()}"
    procs = [find_ticket(tmp_path / "multi", "--multihost", address, "--num_processes=2", f"--process_id={i}") for i in (0, 1)]
    single = find_ticket(tmp_path / "single", devices=2)
    for proc in procs + [single]:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "level  1  weights" in out
    multi, one = rows(tmp_path / "multi"), rows(tmp_path / "single")
    assert [r["level"] for r in multi] == [0, 1]
    for a, b in zip(multi, one):
        assert a["weights_remaining"] == b["weights_remaining"]
        np.testing.assert_allclose([a["test_loss"], a["train_loss"], a["test_accuracy"]], [b["test_loss"], b["train_loss"], b["test_accuracy"]], rtol=1e-5)
    masks = [load_ticket(tmp_path / run / "level_01" / "ticket").mask for run in ("multi", "single")]
    jax.tree.map(np.testing.assert_array_equal, *masks)
