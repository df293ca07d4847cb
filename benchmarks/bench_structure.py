"""Structure analysis of the thesis's MNIST+Fashion network (1568×784×392×20).

    python benchmarks/bench_structure.py [--repeats 5]

Prints JSON lines: seconds per ``structure.analyze`` of the dense network and of
random masks keeping 10% and 0.1% of the weights, against one pass over the
masks (``count_nonzero``) measured in the same process.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, interleaved, machine  # noqa: E402

from lth_jax.structure import analyze  # noqa: E402

SHAPE = (1568, 784, 392, 20)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    inputs, outputs = [0] * 784 + [1] * 784, [0] * 10 + [1] * 10
    for keep in (1.0, 0.1, 0.001):
        masks = [rng.random((a, b)) < keep for a, b in zip(SHAPE[:-1], SHAPE[1:])]
        t = interleaved(
            {
                "analyze": lambda: analyze(masks, inputs, outputs, coverage="output"),
                "floor": lambda: sum(int(np.count_nonzero(m)) for m in masks),
            },
            repeats=args.repeats,
        )
        report = analyze(masks, inputs, outputs, coverage="output")
        emit(
            {
                "bench": "structure_analyze",
                "shape": list(SHAPE),
                "kept_fraction": keep,
                "active_edges": report.active_edges,
                "components": report.num_components,
                "seconds": round(t["analyze"], 4),
                "floor_seconds": round(t["floor"], 5),
                **machine(),
            }
        )


if __name__ == "__main__":
    main()
