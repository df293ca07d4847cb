"""A whole thesis IMP run with fixed work: 1 seed against 16 seeds in one vmapped program.

    python benchmarks/bench_parallel_tasks.py [--epochs 100] [--seeds 16]

Moons+Circles, MLP (4, 57, 57, 2) (extension level 9 of (4, 8, 8, 2)), 9
prunings along the extension trajectory, Adam 1e-3, batch 64, ``--epochs`` per
level, no early stopping (evaluation every epoch, as early stopping needs).
Prints JSON lines: wall time (compilation included), the steady-state time of
the levels after the first, and replica-steps per second, for 1 seed and for
``--seeds`` seeds vmapped; and their ratio. If PyTorch is importable (not a
dependency), the same work as an eager PyTorch loop for one seed, and the
ratios against it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, machine  # noqa: E402

from lth_jax import objectives  # noqa: E402
from lth_jax.data.synthetic import moons_circles  # noqa: E402
from lth_jax.imp import PruningPlan, run_imp_seeds  # noqa: E402
from lth_jax.models import MLP  # noqa: E402
from lth_jax.optim import OptimizerRecipe  # noqa: E402
from lth_jax.train import TrainConfig  # noqa: E402
from lth_jax.trajectory import extension_shape, extension_trajectory  # noqa: E402

BASE, LEVEL = (4, 8, 8, 2), 9


def jax_run(data, epochs: int, seeds: list[int], vmap: bool) -> dict:
    config = TrainConfig(epochs=epochs, batch_size=64, optimizer=OptimizerRecipe(name="adam", learning_rate=1e-3), log_every_epochs=0)
    plan = PruningPlan(counts=tuple(extension_trajectory(BASE, LEVEL)))
    started = time.perf_counter()
    results = run_imp_seeds(
        MLP(extension_shape(BASE, LEVEL)), objectives.sigmoid_tasks(2), data.train, data.test, config, plan,
        seeds=seeds, vmap=vmap, log_fn=lambda line: None,
    )
    wall = time.perf_counter() - started
    later = sum(r["seconds"] for r in results[0].records[1:]) * len(seeds)  # per-replica share × replicas
    steps = len(results[0].records) * epochs * data.train.steps_per_epoch(64)
    return {
        "wall_seconds": round(wall, 3),
        "steady_seconds_per_level": round(later / (len(results[0].records) - 1), 4),
        "replica_steps_per_second": round(steps * len(seeds) / wall),
        "final_test_accuracy": results[0].records[-1]["test_accuracy"],
    }


def torch_run(data, epochs: int, seed: int = 0) -> dict | None:
    """The same work in eager PyTorch (``torch_thesis_job.py``): train, evaluate every epoch, prune globally, reset."""
    try:
        import torch
    except ImportError:
        return None
    from torch_thesis_job import run_seed

    torch.set_num_threads(1)
    started = time.perf_counter()
    test_loss = run_seed(torch, data, epochs, seed)
    wall = time.perf_counter() - started
    steps = (LEVEL + 1) * epochs * data.train.steps_per_epoch(64)
    return {"wall_seconds": round(wall, 3), "replica_steps_per_second": round(steps / wall), "torch": torch.__version__, "last_test_loss": test_loss}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=16)
    args = parser.parse_args()
    data = moons_circles()
    common = {"shape": list(extension_shape(BASE, LEVEL)), "levels": LEVEL + 1, "epochs_per_level": args.epochs, **machine()}
    one = jax_run(data, args.epochs, [0], vmap=True)
    emit({"bench": "parallel_tasks_imp", "seeds": 1, "vmap": True, **one, **common})
    many = jax_run(data, args.epochs, list(range(args.seeds)), vmap=True)
    emit({"bench": "parallel_tasks_imp", "seeds": args.seeds, "vmap": True, **many, **common})
    emit(
        {
            "bench": "parallel_tasks_imp_ratio",
            "seeds": args.seeds,
            "wall_ratio_many_to_one": round(many["wall_seconds"] / one["wall_seconds"], 2),
            "steady_ratio_many_to_one": round(many["steady_seconds_per_level"] / one["steady_seconds_per_level"], 2),
            **common,
        }
    )
    torch_result = torch_run(data, args.epochs)
    if torch_result is not None:
        emit({"bench": "parallel_tasks_imp_torch_eager", "seeds": 1, **torch_result, **common})
        emit(
            {
                "bench": "parallel_tasks_imp_vs_torch",
                "jax_one_seed_speedup": round(torch_result["wall_seconds"] / one["wall_seconds"], 2),
                "jax_many_seeds_speedup_vs_torch_sequential": round(args.seeds * torch_result["wall_seconds"] / many["wall_seconds"], 2),
                **common,
            }
        )
    else:
        print("# PyTorch not importable: no eager comparison (pip install torch==2.13.0 to add it)", file=sys.stderr)


if __name__ == "__main__":
    main()
