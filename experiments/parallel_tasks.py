r"""Winning tickets on parallel tasks (the thesis): do the tasks get separate subnetworks?

The default config (``experiments/configs/parallel_tasks_moons_circles.py``):
Moons+Circles, the network extension of (4, 8, 8, 2) at level 9 (an MLP
4-57-57-2 pruned along 9 exact counts back to 112 weights), Adam 1e-3, batch 64,
early stopping on the test loss with patience 30 (at most 3000 epochs), reset
to the initialization, stop when a seed's ticket degrades; seeds 0-3 trained at
once in one vmapped program.

    python -m experiments.parallel_tasks --workdir=runs/parallel_tasks
    python -m experiments.parallel_tasks --config.base_shape=4,20,2 --config.extension_level=5 --config.seeds=0,1 --workdir=runs/p
    python -m experiments.parallel_tasks --config.shape=4,40,40,2 --config.levels=8 --config.target=112 --workdir=runs/q
    python -m experiments.parallel_tasks --config=experiments/configs/parallel_tasks_mnist_fashion.py --workdir=runs/e8

Writes config.json, metrics.jsonl (one object per seed and level), summary.json
and figures/ to --workdir; the same command again resumes.
"""

from __future__ import annotations

from absl import flags

from experiments import cli
from lth_jax import parallel_tasks

FLAGS = flags.FLAGS
cli.define_config("parallel_tasks_moons_circles.py", "A parallel-task preset from experiments/configs/parallel_tasks_*.py.")
cli.define_workdir("runs/parallel_tasks")
cli.define_data_flags()

flags.adopt_module_key_flags(cli)  # --helpshort lists the flags defined through cli

def main(argv):
    del argv
    cli.apply_data_flags(FLAGS.config)
    parallel_tasks.run(FLAGS.config, FLAGS.workdir)
    print(f"wrote {FLAGS.workdir}/metrics.jsonl, {FLAGS.workdir}/summary.json and {FLAGS.workdir}/figures/")


if __name__ == "__main__":
    cli.run(main, cpu_devices=lambda: FLAGS.config.vmap)  # vmapped seeds spread over the cores
