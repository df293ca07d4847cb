"""Wall time of the thesis's E1 grid as one whole process (``experiments.thesis_sweep``).

    python benchmarks/bench_e1_grid.py [--levels 0-12] [--seeds 4] [--repeats 1] [--cold]

E1 runs the network extension of the MLP (4, 8, 8, 2) at each extension level
(``lth_jax.trajectory.extension_shape``), each point a parallel-task
experiment on Moons+Circles with the thesis defaults (Adam 1e-3, batch 64, early
stopping with patience 30, at most 3000 epochs per level, the seeds vmapped
over the cores), then the sweep's report. Each repeat is a fresh workdir, so
nothing is resumed. ``--cold`` starts with an empty compilation cache (the
first run of a new machine); otherwise a short warm-up sweep of the same
points (early stopping after two epochs) fills it first. Prints one JSON line per run: the wall time, the
points, seeds, levels trained, epochs trained and the time per point from the
sweep's log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, machine  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def levels_arg(text: str) -> list[int]:
    match = re.fullmatch(r"(\d+)-(\d+)", text)
    if match:
        return list(range(int(match[1]), int(match[2]) + 1))
    return [int(v) for v in text.split(",")]


def sweep_command(workdir: str, levels: list[int], seeds: int, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        sys.executable, "-u", "-m", "experiments.thesis_sweep", "--config=experiments/configs/thesis_sweep_e1.py",
        f"--workdir={workdir}", f"--config.extension_levels={','.join(map(str, levels))}",
        f"--config.experiment.seeds={','.join(map(str, range(seeds)))}", *extra,
    ]


def run(command: list[str], env: dict) -> tuple[float, list[tuple[float, str]]]:
    """Seconds of the whole process, and ``(time since start, line)`` of every point's start."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marks = []
    for line in proc.stdout:
        if re.match(r"\[\d+/\d+\] e1 ", line):
            marks.append((time.perf_counter() - started, line.split()[-1]))
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise SystemExit(f"the sweep failed:\n{err[-2000:]}")
    return time.perf_counter() - started, marks


def trained(workdir: str) -> dict:
    """Levels and epochs trained, summed over the points and seeds of a sweep directory."""
    levels = epochs = 0
    for point in sorted(os.listdir(workdir)):
        path = os.path.join(workdir, point, "metrics.jsonl")
        if os.path.exists(path):
            with open(path) as f:
                rows = [json.loads(line) for line in f if line.strip()]
            levels += len(rows)
            epochs += sum(int(r["epochs"]) for r in rows)
    return {"levels_trained": levels, "epochs_trained": epochs}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", type=levels_arg, default=list(range(13)), help="extension levels: 0-12 or 0,3,6")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cold", action="store_true", help="an empty compilation cache (a first run)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        if args.cold:
            env["JAX_COMPILATION_CACHE_DIR"] = os.path.join(tmp, "xla")
        else:  # the programs of every point compiled once: the same schedule, levels stopped after two epochs
            run(sweep_command(os.path.join(tmp, "warmup"), args.levels, args.seeds, ("--config.experiment.patience=1",)), env)
        for repeat in range(args.repeats):
            workdir = os.path.join(tmp, f"r{repeat}")
            seconds, marks = run(sweep_command(workdir, args.levels, args.seeds), env)
            starts = [t for t, _ in marks] + [seconds]
            per_point = {name: round(starts[i + 1] - t, 2) for i, (t, name) in enumerate(marks)}
            emit({"bench": "e1_grid", **machine(), "script_cpu_devices": len(os.sched_getaffinity(0)), "cold_cache": args.cold,
                  "repeat": repeat, "extension_levels": args.levels, "seeds": args.seeds, "wall_seconds": round(seconds, 2),
                  **trained(workdir), "point_seconds": per_point})


if __name__ == "__main__":
    main()
