"""Runs many command lines of the experiment scripts quickly: imports the heavy packages once, then
forks a child per case that runs ``python -m experiments.<script> <args>`` as a user would.

    python tests/fuzz_runner.py cases.json results.json

``cases.json``: ``[{"script": "parallel_tasks", "args": [...], "env": {...}, "cwd": ...}, ...]`` (``cwd``:
the directory the case runs in, default the runner's); writes, per case,
``{"returncode": ..., "stdout": ..., "stderr": ...}``. The parent never starts a JAX backend, so each
child starts its own (a forked XLA client would not be safe).
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import tempfile
import time
import traceback


def _warm() -> None:
    import absl.flags  # noqa: F401
    import flax.linen  # noqa: F401
    import jax  # noqa: F401
    import matplotlib  # noqa: F401
    import ml_collections  # noqa: F401
    import optax  # noqa: F401

    import lth_jax.find_ticket  # noqa: F401
    import lth_jax.parallel_tasks  # noqa: F401
    import lth_jax.thesis_sweep  # noqa: F401
    import lth_jax.transfer  # noqa: F401


def _child(case: dict, out: int, err: int) -> None:
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.environ.update(case.get("env", {}))
    if case.get("cwd"):
        os.chdir(case["cwd"])
    module = f"experiments.{case['script']}"
    sys.argv = [module, *case["args"]]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            code = 1
        else:
            code = e.code or 0
    except BaseException:  # noqa: BLE001 - a crash is reported as the interpreter would
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_case(case: dict, timeout: float = 60.0, scratch: str | None = None) -> dict:
    """One case; its output is caught in files in ``scratch`` (default: the temporary directory)."""
    with tempfile.TemporaryFile(dir=scratch) as out, tempfile.TemporaryFile(dir=scratch) as err:
        pid = os.fork()
        if pid == 0:
            _child(case, out.fileno(), err.fileno())
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:  # a case that was not refused and went on to train
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(0.02)
        out.seek(0)
        err.seek(0)
        return {"returncode": os.waitstatus_to_exitcode(status), "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace")}


def main() -> None:
    cases_path, results_path = sys.argv[1:3]
    _warm()
    with open(cases_path) as f:
        cases = json.load(f)
    with open(results_path, "w") as f:
        json.dump([run_case(case, scratch=os.path.dirname(os.path.abspath(results_path))) for case in cases], f)


if __name__ == "__main__":
    main()
