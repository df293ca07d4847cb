r"""Find winning tickets on an image dataset with a paper's recipe (``lth_jax.find_ticket``).

    python -m experiments.find_ticket --config=experiments/configs/find_ticket_morcos_vgg19_sgd.py --workdir=runs/vgg19_cifar10
    python -m experiments.find_ticket --config=experiments/configs/find_ticket_digits_lenet.py --workdir=runs/digits
    python -m experiments.find_ticket --config=experiments/configs/find_ticket_morcos_vgg19_sgd.py \
        --config.training.epochs=2 --config.pruning.levels=3 --workdir=runs/quick

IMP with late resetting and global pruning on every local device (data
parallel), or across hosts with --multihost. Writes config.json, metrics.jsonl
(one object per level), summary.json and one ticket per level
(``level_XX/ticket``) to --workdir; the same command again resumes.
"""

from __future__ import annotations

from absl import flags

from experiments import cli
from lth_jax import auto_rewind

FLAGS = flags.FLAGS
cli.define_config(None, "A find_ticket preset from experiments/configs/find_ticket_*.py.")
flags.mark_flag_as_required("config")
cli.define_workdir()
cli.define_data_flags()
cli.define_multihost_flags()

flags.adopt_module_key_flags(cli)  # --helpshort lists the flags defined through cli

def main(argv):
    del argv
    cli.initialize_multihost()
    cli.apply_data_flags(FLAGS.config)
    summary = auto_rewind.run(FLAGS.config, FLAGS.workdir)
    print(f"wrote {FLAGS.workdir}/metrics.jsonl, summary.json and {summary['levels_trained']} tickets")


if __name__ == "__main__":
    cli.run(main)
