"""--multihost: two JAX processes on this machine (loopback coordinator, gloo collectives)
write a mid-level checkpoint, are killed, resume, and find the tickets of one process
with the same two devices."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
from conftest import REPO

from lth_jax.tickets import load_ticket

ARGS = ["--config=experiments/configs/find_ticket_digits_lenet.py", "--config.training.epochs=6", "--config.pruning.levels=1",
        "--config.training.batch_size=64", "--config.training.checkpoint_every_epochs=1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_ticket(workdir, *extra, devices=1):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    return subprocess.Popen([sys.executable, "-m", "experiments.find_ticket", *ARGS, f"--workdir={workdir}", *extra], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def two_processes(workdir):
    address = f"--coordinator_address=127.0.0.1:{free_port()}"
    return [find_ticket(workdir, "--multihost", address, "--num_processes=2", f"--process_id={i}") for i in (0, 1)]


def rows(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def committed_checkpoints(level_dir):
    directory = level_dir / "checkpoints"
    return [p for p in directory.iterdir() if p.name.isdigit() and (p / "commit_success.txt").exists()] if directory.exists() else []


def test_two_processes_killed_mid_level_resume_to_the_tickets_of_one_process(tmp_path):
    single = find_ticket(tmp_path / "single", devices=2)
    multi = tmp_path / "multi"
    procs = two_processes(multi)
    deadline = time.monotonic() + 300
    while not committed_checkpoints(multi / "level_01") and time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.01)
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert committed_checkpoints(multi / "level_01"), "no mid-level checkpoint was written before the processes ended"
    assert not (multi / "level_01" / "record.json").exists()  # killed in the middle of level 1

    resumed = two_processes(multi)
    outputs = [proc.communicate(timeout=300) for proc in resumed + [single]]
    for proc, (out, err) in zip(resumed + [single], outputs):
        assert proc.returncode == 0, err
        assert "level  1  weights" in out
    assert "resuming from step" in outputs[0][0]
    one = rows(tmp_path / "single")
    assert [r["level"] for r in rows(multi)] == [0, 1]
    for a, b in zip(rows(multi), one):
        assert a["weights_remaining"] == b["weights_remaining"]
        np.testing.assert_allclose([a["test_loss"], a["train_loss"], a["test_accuracy"]], [b["test_loss"], b["train_loss"], b["test_accuracy"]], rtol=1e-5)
    for level in ("level_00", "level_01"):
        masks = [load_ticket(tmp_path / run / level / "ticket").mask for run in ("multi", "single")]
        jax.tree.map(np.testing.assert_array_equal, *masks)
    assert not (multi / "level_01" / "checkpoints").exists()
    assert not [p for p in multi.rglob("*") if p.name.endswith(".tmp") or "orbax-checkpoint-tmp" in p.name]
