"""Bytes on disk of a LeNet-300-100 level, as lth_jax writes it and compressed.

    python benchmarks/bench_ticket_size.py [--repeats 7] [--remaining 1.0 0.1]

A level writes two tree artifacts: its ticket (``ticket/arrays.npz``: the mask,
θ_k ⊙ m and the batch statistics; ``tickets.save_ticket``) and its trained
weights (``trained/arrays.npz``: params and batch statistics; ``Stage.save``).
Both go through ``checkpoint.save_tree``, which writes ``np.savez`` (no
compression). The same calls run a second time with ``np.savez`` replaced by
``np.savez_compressed`` (zip deflate), so both variants write exactly the
archive the code builds. The "trained" weights here are a second
initialization with the mask applied: training keeps pruned weights exactly 0,
which is what compression feeds on.

Prints one JSON line per fraction remaining and writer: bytes and bytes per
parameter of the ticket, the trained weights and the level, and the median
seconds of ``save_tree`` (encode, write, fsync, rename) for each artifact.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from unittest import mock

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, interleaved, machine  # noqa: E402

from lth_jax import masks  # noqa: E402
from lth_jax.checkpoint import ARRAYS, save_tree  # noqa: E402
from lth_jax.models.lenet import LeNet  # noqa: E402
from lth_jax.tickets import Ticket, save_ticket  # noqa: E402
from lth_jax.train import init_variables  # noqa: E402

WRITERS = {"savez (as written)": contextlib.nullcontext, "savez_compressed": lambda: mock.patch.object(np, "savez", np.savez_compressed)}


def lenet_level(remaining: float) -> tuple[Ticket, dict]:
    """A ticket and trained weights of LeNet-300-100 on 28×28 inputs with ``remaining`` of its kernels kept."""
    model, x = LeNet(), np.zeros((1, 28, 28, 1), np.float32)
    params, batch_stats = jax.device_get(init_variables(model, jax.random.PRNGKey(0), x))
    trained, _ = jax.device_get(init_variables(model, jax.random.PRNGKey(1), x))
    mask = masks.init_mask(params)
    if remaining < 1.0:
        mask = masks.global_magnitude_prune(params, mask, fraction=1.0 - remaining)
    ticket = Ticket(mask, masks.apply_mask(params, mask), batch_stats, {"ticket": "benchmark"})
    return ticket, {"params": masks.apply_mask(trained, mask), "batch_stats": batch_stats}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--remaining", type=float, nargs="+", default=[1.0, 0.1])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for remaining in args.remaining:
            ticket, trained = lenet_level(remaining)
            parameters = sum(np.size(leaf) for leaf in jax.tree.leaves(ticket.params))
            for writer, patch in WRITERS.items():
                ticket_dir, trained_dir = os.path.join(tmp, "ticket"), os.path.join(tmp, "trained")

                def write_ticket():
                    with patch():
                        save_ticket(ticket_dir, ticket)

                def write_trained():
                    with patch():
                        save_tree(trained_dir, trained, {})

                seconds = interleaved({"ticket": write_ticket, "trained": write_trained}, repeats=args.repeats)
                sizes = {name: os.path.getsize(os.path.join(d, ARRAYS)) for name, d in (("ticket", ticket_dir), ("trained", trained_dir))}
                level = sizes["ticket"] + sizes["trained"]
                emit(
                    {
                        "bench": "ticket_size",
                        "model": "LeNet-300-100",
                        "writer": writer,
                        "parameters": parameters,
                        "remaining": round(masks.count_remaining(ticket.mask) / masks.count_prunable(ticket.mask), 4),
                        "ticket_bytes": sizes["ticket"],
                        "trained_bytes": sizes["trained"],
                        "ticket_bytes_per_parameter": round(sizes["ticket"] / parameters, 3),
                        "trained_bytes_per_parameter": round(sizes["trained"] / parameters, 3),
                        "level_bytes_per_parameter": round(level / parameters, 3),
                        "ticket_seconds": round(seconds["ticket"], 4),
                        "trained_seconds": round(seconds["trained"], 4),
                        "level_seconds": round(seconds["ticket"] + seconds["trained"], 4),
                        **machine(),
                    }
                )


if __name__ == "__main__":
    main()
