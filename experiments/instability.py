r"""Instability analysis (Frankle, Dziugaite, Roy & Carbin 2020; ``lth_jax.instability``): from which rewind step is a ticket stable?

    python -m experiments.instability --config=instability_digits_lenet --workdir=runs/instability_digits
    python -m experiments.instability --config=instability_digits_lenet --config.source_workdir=runs/digits \
        --config.seeds=0 --config.levels=0,5 --config.rewind_steps=0,10it,1ep --workdir=runs/instability_of_digits
    python -m experiments.instability --config=instability_cifar_resnet20 --workdir=runs/instability_resnet20   # accelerator

For the dense network and the tickets of the chosen IMP levels (found here, or
read from --config.source_workdir), trains two copies from the weights at each
rewind step k with two data orders and measures the test error along the
straight path between them. Writes metrics.jsonl (with the curves),
instability.csv, summary.json (the recommended rewind step: the smallest k
from which every later k's mean error barrier is below the threshold, and the
smallest from which every seed is stable) and figures/ to --workdir; the same
command again resumes.
"""

from __future__ import annotations

from absl import flags

from experiments import cli
from lth_jax import instability

FLAGS = flags.FLAGS
cli.define_config("instability_digits_lenet.py", "An instability preset from experiments/configs/instability_*.py.")
cli.define_workdir()
cli.define_data_flags()

flags.adopt_module_key_flags(cli)  # --helpshort lists the flags defined through cli

def main(argv):
    del argv
    cli.apply_data_flags(FLAGS.config.recipe)
    summary = instability.run(FLAGS.config, FLAGS.workdir)
    print(instability.format_table(summary))
    print(instability.format_recommendation(summary))
    print(f"wrote {FLAGS.workdir}/metrics.jsonl, instability.csv, summary.json and figures/")


if __name__ == "__main__":
    cli.run(main)
