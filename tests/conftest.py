"""Test setup: the CPU backend, a temporary directory inside the repository, the
compilation cache; helpers for subprocesses with simulated devices."""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = Path(__file__).resolve().parents[1]
# XLA's persistent compilation cache, shared by the suite and its subprocesses: the
# scripts and runs of the tests compile the same small programs again and again.
COMPILATION_CACHE = {
    "JAX_COMPILATION_CACHE_DIR": str(REPO / ".cache" / "jax_tests"),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}
os.environ.update(COMPILATION_CACHE)
# Everything the tests (their subprocesses, TFDS's mock, pytest's tmp_path) put in a
# temporary directory goes to .cache/tmp, removed when the session ends: nothing is
# left in the system's temporary directory.
TEMPORARY = REPO / ".cache" / "tmp"
TEMPORARY.mkdir(parents=True, exist_ok=True)
os.environ["TMPDIR"] = str(TEMPORARY)
tempfile.tempdir = str(TEMPORARY)

import pytest  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    if not hasattr(session.config, "workerinput") and exitstatus == 0:  # the controller, after its workers; kept on failure
        shutil.rmtree(TEMPORARY, ignore_errors=True)


def script_env(**extra) -> dict:
    """The environment of a script run as a user runs it: the CPU backend, the repository
    on the path, nothing else of the test process (but the compilation cache and TMPDIR)."""
    return {"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "TMPDIR": str(TEMPORARY), **COMPILATION_CACHE, **extra}


def run_python(code: str, *, devices: int = 1, timeout: int = 300, cwd=None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with ``devices`` simulated CPU devices."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), **COMPILATION_CACHE)
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


# The longest tests start first, so that the workers finish together instead of one
# running a two-minute test alone at the end (pytest-xdist hands tests out in order).
LONGEST_FIRST = (
    "test_regression.py",
    "test_crash.py",
    "test_multihost.py",
    "test_install.py",
    "test_transfer.py::test_script_bad_input_is_one_line_and_loses_nothing",
    "test_transfer.py::test_a_grouped_transfer_killed_at_every_write_resumes_to_the_same_results",
    "test_find_ticket.py::test_seeds_trained_together_killed_at_every_write_resume_to_the_same_results",
    "test_parallel_tasks.py::test_sweeps_and_their_report",
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        for i, name in enumerate(LONGEST_FIRST):
            if name in item.nodeid:
                return i
        return len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the others keep their order
