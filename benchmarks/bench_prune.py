"""Global magnitude pruning of a ResNet-50-sized tree against a one-pass floor.

    python benchmarks/bench_prune.py [--repeats 5]

Prints JSON lines: the prune time (from a dense mask and from a 90%-sparse one)
and the memory-bound floor of one pass over the same weights (abs and sum), both
measured in this process, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, interleaved, machine  # noqa: E402

from lth_jax import masks  # noqa: E402


def resnet50_kernel_shapes(num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """HWIO conv kernels and the dense head of ResNet-50 (bottleneck, [3, 4, 6, 3])."""
    shapes = {"stem": (7, 7, 3, 64)}
    in_ch = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        for block in range(blocks):
            name = f"stage{stage}_block{block}"
            shapes[f"{name}_conv1"] = (1, 1, in_ch, width)
            shapes[f"{name}_conv2"] = (3, 3, width, width)
            shapes[f"{name}_conv3"] = (1, 1, width, 4 * width)
            if block == 0:
                shapes[f"{name}_proj"] = (1, 1, in_ch, 4 * width)
            in_ch = 4 * width
    shapes["head"] = (2048, num_classes)
    return shapes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    params = {name: {"kernel": jnp.asarray(rng.standard_normal(shape, dtype=np.float32))} for name, shape in resnet50_kernel_shapes().items()}
    total = masks.count_prunable(params)
    dense = masks.init_mask(params)
    sparse = masks.global_magnitude_prune(params, dense, fraction=0.9)
    leaves = jax.tree.leaves(params)

    def floor_numpy():
        return sum(float(np.abs(np.asarray(leaf)).sum()) for leaf in leaves)

    abs_sum = jax.jit(lambda tree: sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(tree)))

    def floor_jax():
        return abs_sum(params).block_until_ready()

    def prune(mask):
        def run():
            out = masks.global_magnitude_prune(params, mask, fraction=0.2)
            jax.block_until_ready(out)

        return run

    t = interleaved(
        {"prune_dense": prune(dense), "prune_sparse": prune(sparse), "floor_numpy": floor_numpy, "floor_jax": floor_jax},
        repeats=args.repeats,
    )
    floor = min(t["floor_numpy"], t["floor_jax"])
    for case in ("prune_dense", "prune_sparse"):
        emit(
            {
                "bench": "global_magnitude_prune",
                "case": case,
                "prunable_weights": total,
                "leaves": len(leaves),
                "seconds": round(t[case], 4),
                "floor_seconds": round(floor, 4),
                "floor_numpy_seconds": round(t["floor_numpy"], 4),
                "floor_jax_seconds": round(t["floor_jax"], 4),
                "ratio_to_floor": round(t[case] / floor, 2),
                **machine(),
            }
        )


if __name__ == "__main__":
    main()
