r"""Transfer winning tickets across datasets and optimizers (Morcos et al. 2019; ``lth_jax.transfer``).

    python -m experiments.transfer --config=experiments/configs/transfer_digits.py --workdir=runs/digits_transfer   # offline
    python -m experiments.transfer --config=experiments/configs/transfer_morcos.py:vgg19_sgd --workdir=runs/vgg19_from_cifar100
    python -m experiments.transfer --config=experiments/configs/transfer_morcos.py:vgg19_sgd --config.source=cifar10 \
        --config.targets=cifar10 --config.target_optimizer=adam --workdir=runs/vgg19_sgd_to_adam
    python -m experiments.transfer --config=experiments/configs/transfer_morcos.py:vgg19_sgd \
        --config.source_workdir=runs/vgg19_cifar10 --config.targets=cifar10b --workdir=runs/vgg19_reuse

Finds tickets on the source with the source optimizer (or reads them from
``source_workdir``), trains each level's ticket on every target with the
target's recipe and optimizer, with random tickets and the target's own tickets
as baselines, then writes metrics.jsonl, summary.json and the report (figures
and report.md). Every stage is resumable: the same command again skips what is
done, and a changed setting that affects a finished stage is refused.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from experiments import cli
from lth_jax import transfer
from lth_jax.report import load_rows, transfer_table, write_report

FLAGS = flags.FLAGS
cli.define_config(None, "A transfer preset from experiments/configs/transfer_*.py (its recipe is the source's).")
flags.mark_flag_as_required("config")
cli.define_config(None, "The targets' recipe, a find_ticket preset (default: the config's recipe).", name="target_config")
cli.define_workdir()
cli.define_data_flags()
flags.DEFINE_bool("report", True, "Write the figures and report.md into WORKDIR/report.")

flags.adopt_module_key_flags(cli)  # --helpshort lists the flags defined through cli

def main(argv):
    del argv
    cli.apply_data_flags(FLAGS.config.recipe, FLAGS.target_config)
    transfer.run(FLAGS.config, FLAGS.workdir, target_config=FLAGS.target_config)
    print(transfer_table(load_rows([FLAGS.workdir]), sparsities=(0.0, 0.5, 0.8, 0.9)))
    if FLAGS.report:
        print(f"wrote {write_report([FLAGS.workdir], Path(FLAGS.workdir) / 'report')}")
    print(f"wrote {FLAGS.workdir}/metrics.jsonl and summary.json")


if __name__ == "__main__":
    cli.run(main)
