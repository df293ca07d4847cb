"""Digests of the masks that today's default runs produce, for the regression test.

A refactor keeps right results bit-identical: ``tests/fixtures/regression_digests.json``
holds, for the runs below, one SHA-256 per ticket mask (every level, seed and
ticket kind), recorded before the engine was restructured. The regression test
reruns them and compares. To see what a run gives now::

    JAX_PLATFORMS=cpu python tests/regression.py demo /tmp/out   # demo | digits | transfer
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import jax
import numpy as np

from lth_jax.pytree import named_leaves
from lth_jax.tickets import load_ticket

FIXTURE = Path(__file__).parent / "fixtures" / "regression_digests.json"
QUIET = dict(log_fn=lambda line: None)


def mask_digest(mask) -> str:
    """SHA-256 over every leaf's '/'-joined path, shape and packed bits, in path order."""
    h = hashlib.sha256()
    for path, leaf in sorted(named_leaves(jax.device_get(mask))[0], key=lambda item: item[0]):
        leaf = np.asarray(leaf, dtype=bool)
        h.update("/".join(path).encode())
        h.update(repr(leaf.shape).encode())
        h.update(np.packbits(leaf.reshape(-1)).tobytes())
    return h.hexdigest()


def ticket_digests(root: Path) -> dict[str, str]:
    """``{relative ticket dir: mask digest}`` of every ticket under ``root``."""
    return {
        str(p.parent.relative_to(root)): mask_digest(load_ticket(p.parent).mask)
        for p in sorted(root.rglob("ticket.json"))
    }


def run_demo(workdir: Path) -> dict[str, str]:
    """``make demo``: the thesis experiment with its defaults (4 seeds, extension level 9)."""
    from experiments.configs import parallel_tasks_moons_circles
    from lth_jax import parallel_tasks

    parallel_tasks.run(parallel_tasks_moons_circles.get_config(), workdir, **QUIET)
    return ticket_digests(workdir)


def run_digits(workdir: Path) -> dict[str, str]:
    """``find_ticket --config=experiments/configs/digits_lenet.py``."""
    from experiments.configs import find_ticket_digits_lenet
    from lth_jax import find_ticket

    find_ticket.run(find_ticket_digits_lenet.get_config(), workdir, **QUIET)
    return ticket_digests(workdir)


def _not_trained(replicas, executor, config, **kwargs):
    """Stands in for the training of a transferred or random ticket, which makes no
    mask: a trained ticket's mask is its start's, written when its stage opens."""
    from lth_jax.loop import FitProgress, FitResult

    final = {"epoch": 0, "step": 0, "examples_per_second": 0.0, "test_accuracy": 0.0, "test_loss": 0.0, "evaluated": True}
    return [FitResult(r.state, FitProgress(history=[final]), None) for r in replicas]


def run_transfer(workdir: Path, seeds=(0, 1)) -> dict[str, str]:
    """``make transfer_demo`` (both studies; the report draws no masks), for ``seeds``.

    Every mask of the demo is made by its IMP runs (the source's, the targets'
    own) and by the transfer and random-ticket constructions; those run for real.
    The 88 trainings of transferred and random tickets make no mask and are
    skipped here (their metrics are tested elsewhere), which halves the run.
    """
    from unittest import mock

    from experiments.configs import transfer_digits
    from lth_jax import transfer

    first, second = workdir / "digits_transfer", workdir / "digits_sgd_to_adam"
    study = transfer_digits.get_config()
    study.seeds = tuple(seeds)
    c = transfer_digits.get_config()
    c.seeds = tuple(seeds)
    c.source_workdir = str(first / "source" / "digits_a_sgd")
    c.targets = ("digits_a",)
    c.target_optimizer = "adam"
    with mock.patch("lth_jax.tickets.fit_replicas", _not_trained):
        transfer.run(study, first, **QUIET)
        transfer.run(c, second, **QUIET)
    return ticket_digests(workdir)


def run_transfer_seed0(workdir: Path) -> dict[str, str]:
    """The seed-0 half of :func:`run_transfer`: what the test suite checks (seed 1
    takes the same code paths; ``python tests/regression.py transfer`` runs both)."""
    return run_transfer(workdir, seeds=(0,))


RUNS = {"demo": run_demo, "digits": run_digits, "transfer": run_transfer}
TESTED = {"demo": run_demo, "digits": run_digits, "transfer_seed0": run_transfer_seed0}


if __name__ == "__main__":
    name, out = sys.argv[1], Path(sys.argv[2])
    print(json.dumps(RUNS[name](out), indent=1, sort_keys=True))
