"""Wall time of the thesis sweeps (E1 and a reduced E4), variants side by side.

    python benchmarks/bench_sweeps.py [--grids e1,e4] [--e1-levels 0-12] [--e1-seeds 4]
        [--widths 38,48] [--level-counts 2,4,6,8,10] [--e4-seeds 32] [--repeats 1]
        [--variants packed,single] [--baseline DIR]

Each run is a whole ``python -m experiments.thesis_sweep`` process into a fresh
workdir (nothing resumed). Variants: ``packed`` (the default sweep: the points
of one E4 width in one IMP run, two points or packs at once in threads),
``unpacked`` (``--config.pack=false``: points in two threads), ``single``
(``--config.pack=false --config.workers=1``: one point after the other), ``baseline`` (the default sweep of another checkout,
``--baseline DIR``, e.g. ``git archive <rev> | tar -x -C DIR``, run with
``PYTHONPATH=DIR``). Runs alternate between the variants (A B A B) so that a
shared machine's load hits them alike; a warm-up sweep of each variant
(patience 1) fills the compilation cache first. Prints a JSON line per run
(wall seconds, seed-epochs trained) and one per grid with the ratio of each
variant's median to the first variant's, and how many per-seed rows
(``metrics.jsonl``: status, weights, epochs) differ from the first variant's, and
the seeds that split per point. ``--keep DIR`` keeps the sweep directories.
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
from bench_e1_grid import levels_arg  # noqa: E402
from common import emit, machine  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def grid_flags(grid: str, args) -> list[str]:
    if grid == "e1":
        return [f"--config.extension_levels={','.join(map(str, args.e1_levels))}",
                f"--config.experiment.seeds={','.join(map(str, range(args.e1_seeds)))}"]
    return [f"--config.widths={','.join(map(str, args.widths))}", f"--config.level_counts={','.join(map(str, args.level_counts))}",
            f"--config.experiment.seeds={','.join(map(str, range(args.e4_seeds)))}"]


def sweep(grid: str, variant: str, workdir: str, args, extra: tuple[str, ...] = ()) -> float:
    """Seconds of one whole sweep process."""
    env = dict(os.environ)
    cwd = ROOT
    flags = list(extra)
    if variant == "single":
        flags += ["--config.pack=false", "--config.workers=1"]
    if variant == "unpacked":
        flags.append("--config.pack=false")
    if variant == "baseline":
        cwd = env["PYTHONPATH"] = os.path.abspath(args.baseline)
    command = [sys.executable, "-u", "-m", "experiments.thesis_sweep", f"--config=experiments/configs/thesis_sweep_{grid}.py",
               f"--workdir={workdir}", *grid_flags(grid, args), *flags]
    began = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the {variant} {grid} sweep failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - began


def rows(workdir: str) -> dict:
    """Every point's per-seed rows of a sweep directory: ``(point, seed, level) -> (status, weights, epochs)``."""
    out = {}
    for point in sorted(os.listdir(workdir)):
        path = os.path.join(workdir, point, "metrics.jsonl")
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    if line.strip():
                        r = json.loads(line)
                        out[(point, r["seed"], r["level"])] = (r["status"], r["weights_remaining"], r["epochs"])
    return out


def splits(workdir: str) -> dict:
    """Seeds that split, per point of a sweep directory (``sweep.jsonl``)."""
    with open(os.path.join(workdir, "sweep.jsonl")) as f:
        found: dict = {}
        for r in (json.loads(line) for line in f if line.strip()):
            found[r["point"]] = found.get(r["point"], 0) + (r["split_level"] is not None)
    return found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--grids", default="e1,e4")
    parser.add_argument("--e1-levels", type=levels_arg, default=list(range(13)), help="extension levels: 0-12 or 0,3,6")
    parser.add_argument("--e1-seeds", type=int, default=4)
    parser.add_argument("--widths", type=lambda t: [int(v) for v in t.split(",")], default=[38, 48])
    parser.add_argument("--level-counts", type=lambda t: [int(v) for v in t.split(",")], default=[2, 4, 6, 8, 10])
    parser.add_argument("--e4-seeds", type=int, default=32)
    parser.add_argument("--variants", default="packed,single")
    parser.add_argument("--baseline", default=None, help="a checkout to run as the 'baseline' variant")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--keep", default=None, help="sweep directories go here (kept) instead of a temporary directory")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if "baseline" in variants and not args.baseline:
        parser.error("the baseline variant needs --baseline DIR")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.keep or tmp
        for grid in args.grids.split(","):
            if not args.no_warmup:
                for variant in variants:
                    sweep(grid, variant, os.path.join(tmp, f"warm_{grid}_{variant}"), args, ("--config.experiment.patience=1",))
            seconds: dict[str, list[float]] = {v: [] for v in variants}
            results: dict[str, dict] = {}
            for repeat in range(args.repeats):
                for variant in variants:
                    workdir = os.path.join(tmp, f"{grid}_{variant}_{repeat}")
                    seconds[variant].append(sweep(grid, variant, workdir, args))
                    results[variant] = rows(workdir)
                    emit({"bench": "sweeps", **machine(), "grid": grid, "variant": variant, "repeat": repeat,
                          "wall_seconds": round(seconds[variant][-1], 2), "levels_trained": len(results[variant]),
                          "seed_epochs": sum(e for _, _, e in results[variant].values())})
            first = variants[0]
            medians = {v: statistics.median(s) for v, s in seconds.items()}
            emit({"bench": "sweeps", **machine(), "grid": grid, "summary": True, "median_seconds": {v: round(m, 2) for v, m in medians.items()},
                  "ratio_to_first": {v: round(m / medians[first], 3) for v, m in medians.items()},
                  "rows_differing_from_first": {v: sum(results[v].get(k) != r for k, r in results[first].items())
                                                + len(set(results[v]) - set(results[first])) for v in variants},
                  "splits": {v: splits(os.path.join(tmp, f"{grid}_{v}_0")) for v in variants}})


if __name__ == "__main__":
    main()
