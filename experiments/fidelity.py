r"""The thesis's experiments run by lth_jax and by the thesis's own code, compared (``lth_jax.fidelity``).

    python -m experiments.fidelity --workdir=runs/fidelity                      # quick: 3 points × 32 seeds, a few minutes
    python -m experiments.fidelity --config=fidelity_full --workdir=runs/fidelity_full
    python -m experiments.fidelity --workdir=runs/fidelity \
        --config.thesis_results=benchmarks/fidelity/results/thesis_code.jsonl   # compare with recorded thesis-code runs
    python -m experiments.fidelity --workdir=runs/fidelity \
        --config.thesis_python=.venv-thesis/bin/python --config.thesis_repo=../structure-of-lottery-tickets --config.thesis_seeds=4
    python -m experiments.fidelity --config=fidelity_batch_order --workdir=runs/batch_order   # ~30 min on 2 cores

Writes ``fidelity.md`` (one table per experiment: split rate with its 95%
interval, split and degradation levels, categories, active weights at the
split, test loss, for each system), ``E1.csv``/``E2.csv``/``E4.csv``,
``seeds.csv`` (every run), ``figures/E*.png`` and the lth_jax runs under
``lth_jax/<point>`` (resumable). With ``--config.shared_orders=N`` every point
also runs on shared epoch orders 0..N-1 (``--config.shared_seeds`` seeds each,
the same on every order; ``lth_jax_shared/order_<K>/<point>``) and
``batch_order.md`` compares the regimes and the thesis's code (preset
``fidelity_batch_order``). The thesis's code runs in a virtualenv of its
own (``make thesis_venv``); see ``benchmarks/fidelity/README.md``.
"""

from __future__ import annotations

import dataclasses

from absl import flags

from experiments import checks, cli
from lth_jax import fidelity
from lth_jax.fidelity_points import point_overrides
from lth_jax.parallel_tasks import ThesisConfig

FLAGS = flags.FLAGS
cli.define_config("fidelity_quick.py", "The harness's points and seeds (experiments/configs/fidelity_*.py).")
cli.define_workdir("runs/fidelity")

flags.adopt_module_key_flags(cli)  # --helpshort lists the flags defined through cli


def check(config) -> None:
    """Every point, before the first runs (or the thesis's code does): a bad level is refused up front."""
    seeds = tuple(range(max(1, int(config.seeds))))  # fewer than one: fidelity.run says so
    checks.check_points([("--config.points", config.points)],
                        [(p, dataclasses.replace(ThesisConfig(), seeds=seeds, **point_overrides(p))) for p in fidelity._points(config.points)])


def main(argv):
    del argv
    for path in fidelity.run(FLAGS.config, FLAGS.workdir):
        print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main, cpu_devices=lambda: True, check=check)  # the vmapped seeds spread over the cores
