r"""Find winning tickets on an image dataset with a paper's recipe.

    python -m experiments.find_ticket --config=experiments/configs/morcos_vgg19_sgd.py --workdir=runs/vgg19_cifar10
    python -m experiments.find_ticket --config=experiments/configs/digits_lenet.py --workdir=runs/digits
    python -m experiments.find_ticket --config=experiments/configs/morcos_vgg19_sgd.py \
        --config.training.epochs=2 --config.pruning.levels=3 --workdir=runs/quick

IMP with late resetting and global pruning on every local device (data
parallel), or across hosts with --multihost. Writes config.json, metrics.jsonl
(one object per level), summary.json and one ticket per level
(``level_XX/ticket``) to --workdir; the same command again resumes.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from experiments import cli
from lth_jax.recipes import find_ticket

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "A preset from experiments/configs/ (overridable: --config.training.epochs=2).")
flags.DEFINE_string("workdir", None, "Run directory (resumes when it holds this run).")
cli.define_data_flags()
cli.define_multihost_flags()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    cli.initialize_multihost()
    cli.apply_data_flags(FLAGS.config)
    summary = find_ticket(FLAGS.config, FLAGS.workdir)
    print(f"wrote {FLAGS.workdir}/metrics.jsonl, summary.json and {summary['levels_trained']} tickets")


if __name__ == "__main__":
    cli.run(main)
