"""Test setup: the CPU backend; helpers for subprocesses with simulated devices."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run_python(code: str, *, devices: int = 1, timeout: int = 300, cwd=None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with ``devices`` simulated CPU devices."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def python_runner():
    return run_python
