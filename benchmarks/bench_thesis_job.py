"""The thesis job as whole processes: lth_jax against an eager PyTorch loop, paired A B A B.

    python benchmarks/bench_thesis_job.py --seeds 1 8 --repeats 2 [--torch_python PATH]
    python benchmarks/bench_thesis_job.py --seeds 1 64 512 --torch_python=none   # a GPU: lth_jax alone

A: ``python -m experiments.parallel_tasks`` on Moons+Circles, MLP (4, 57, 57, 2),
the 10 trained levels of the network extension, 100 epochs per level with
evaluation every epoch (no early stopping, no stop rule), Adam 1e-3, batch 64,
structure analysis, tickets, TensorBoard events and figures; the seeds in one
run. B: ``benchmarks/torch_thesis_job.py``, the same training, evaluation and
pruning as an eager PyTorch loop (tensors in memory, fused Adam, one thread),
the seeds one after the other. PyTorch is not a dependency: give the Python of
an environment that has it with ``--torch_python`` (default: this one, if it
imports torch). A warm-up run of A per seed count fills the compilation cache
first (every script has it on); the runs are interleaved so that machine noise hits both.
Prints one JSON line per run and one per seed count with the medians and the
speed-up (B / A). With ``--torch_python=none`` only A runs, and a last line
gives each seed count's time over the smallest count's (vmapped seeds on an
accelerator: how far from free the extra seeds are).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, machine  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lth_jax_command(workdir: str, seeds: int, epochs: int) -> list[str]:
    return [
        sys.executable, "-m", "experiments.parallel_tasks", f"--workdir={workdir}", f"--config.epochs={epochs}",
        "--config.patience=0", "--config.stop_on_degradation=False", f"--config.seeds={','.join(map(str, range(seeds)))}",
        "--config.log_every_epochs=0",
    ]


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{command[:3]} failed:\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--torch_python", default=sys.executable)
    args = parser.parse_args()
    with_torch = args.torch_python != "none"
    if with_torch and subprocess.run([args.torch_python, "-c", "import torch"], capture_output=True).returncode != 0:
        raise SystemExit(f"{args.torch_python} cannot import torch: pass --torch_python (pip install torch==2.13.0), or none")
    torch_command = [args.torch_python, os.path.join(ROOT, "benchmarks", "torch_thesis_job.py"), f"--epochs={args.epochs}"]
    # machine() describes this process; the script gives itself one CPU device per core
    common = {"bench": "thesis_job", "epochs_per_level": args.epochs, "levels": 10, **machine(), "script_cpu_devices": len(os.sched_getaffinity(0))}
    with tempfile.TemporaryDirectory() as tmp:
        alone = {}
        for seeds in args.seeds:
            times: dict[str, list[float]] = {"lth_jax": [], "torch": []}
            timed(lth_jax_command(os.path.join(tmp, f"warmup_{seeds}"), seeds, args.epochs))  # fills the compilation cache
            for repeat in range(args.repeats):
                workdir = os.path.join(tmp, f"s{seeds}_r{repeat}")
                seconds, _ = timed(lth_jax_command(workdir, seeds, args.epochs))
                times["lth_jax"].append(seconds)
                emit({**common, "run": "lth_jax", "seeds": seeds, "repeat": repeat, "wall_seconds": round(seconds, 2)})
                if not with_torch:
                    continue
                seconds, out = timed(torch_command + [f"--seeds={seeds}"])
                times["torch"].append(seconds)
                emit({**common, "run": "torch_eager", "seeds": seeds, "repeat": repeat, "wall_seconds": round(seconds, 2), **json.loads(out)})
            alone[seeds] = a = statistics.median(times["lth_jax"])
            if not with_torch:
                continue
            b = statistics.median(times["torch"])
            emit({**common, "run": "ratio", "seeds": seeds, "lth_jax_seconds": round(a, 2), "torch_seconds": round(b, 2),
                  "speedup": round(b / a, 2)})
        if not with_torch:
            smallest = min(alone)
            emit({**common, "run": "scaling", "seconds": {str(k): round(v, 2) for k, v in alone.items()},
                  "over_smallest": {str(k): round(v / alone[smallest], 2) for k, v in alone.items()}})


if __name__ == "__main__":
    main()
