r"""Transfer winning tickets across datasets and optimizers (Morcos et al. 2019).

    python -m experiments.transfer --config=experiments/configs/morcos_vgg19_sgd.py \
        --source=cifar100 --targets=cifar10,svhn_cropped --baselines=random,target_own --seeds=0,1,2 --workdir=runs/vgg19_transfer
    python -m experiments.transfer --config=experiments/configs/morcos_vgg19_sgd.py --source=cifar10 \
        --targets=cifar10 --target_optimizer=adam --workdir=runs/vgg19_sgd_to_adam
    python -m experiments.transfer --config=experiments/configs/digits_lenet.py --source=digits_a --targets=digits_b \
        --baselines=random,target_own --seeds=0,1 --workdir=runs/digits_transfer          # offline, a few minutes

Finds tickets on --source with the source optimizer (or reads them from
--source_workdir), trains each level's ticket on every target with the target's
recipe and optimizer, with random tickets and the target's own tickets as
baselines, then writes metrics.jsonl, summary.json and the report (figures and
report.md). Every stage is resumable: the same command again skips what is done.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags
from ml_collections import config_flags

from experiments import cli
from lth_jax.report import load_rows, transfer_table, write_report
from lth_jax.transfer_study import TransferStudy, run_transfer_study

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "The source recipe: a preset from experiments/configs/ (overridable: --config.training.epochs=2).")
config_flags.DEFINE_config_file("target_config", None, "The targets' recipe (default: --config), overridable the same way.")
flags.DEFINE_string("source", None, "Source dataset (default: the config's dataset).")
flags.DEFINE_list("targets", None, "Target datasets, comma-separated.")
flags.DEFINE_string("source_optimizer", "config", "config (as the recipe says), sgd or adam (SPEC §1.4's recipes).")
flags.DEFINE_string("target_optimizer", "config", "config (as the target recipe says), sgd or adam.")
flags.DEFINE_list("levels", None, "Source levels to transfer (default: all).")
flags.DEFINE_list("baselines", ["random"], "Any of random, target_own (comma-separated; empty for none).")
flags.DEFINE_list("seeds", ["0"], "Replicates.")
flags.DEFINE_string("source_workdir", None, "Reuse the tickets of an existing find_ticket workdir instead of finding them.")
flags.DEFINE_enum("random_scope", "layer", ["layer", "global"], "Random tickets keep the per-layer counts, or only the total.")
flags.DEFINE_bool("reinit_head", False, "Re-initialise the output layer even when the class counts match.")
flags.DEFINE_bool("prune_head", False, "Prune a fresh output layer to the ticket's sparsity (default: dense).")
cli.define_data_flags()
flags.DEFINE_bool("report", True, "Write the figures and report.md into WORKDIR/report.")
flags.DEFINE_string("workdir", None, "Run directory (resumes when it holds this study).")
flags.mark_flags_as_required(["config", "targets", "workdir"])


def main(argv):
    del argv
    cli.apply_data_flags(FLAGS.config, FLAGS.target_config)
    study = TransferStudy(
        source=FLAGS.source or FLAGS.config.dataset,
        targets=FLAGS.targets,
        levels=None if FLAGS.levels is None else cli.int_list(",".join(FLAGS.levels)),
        baselines=[b for b in FLAGS.baselines if b],
        seeds=cli.int_list(",".join(FLAGS.seeds)),
        source_optimizer=FLAGS.source_optimizer,
        target_optimizer=FLAGS.target_optimizer,
        source_workdir=FLAGS.source_workdir,
        random_scope=FLAGS.random_scope,
        reinit_head=FLAGS.reinit_head,
        prune_head=FLAGS.prune_head,
    )
    run_transfer_study(FLAGS.config, study, FLAGS.workdir, target_config=FLAGS.target_config)
    print(transfer_table(load_rows([FLAGS.workdir]), (0.0, 0.5, 0.8, 0.9)))
    if FLAGS.report:
        print(f"wrote {write_report([FLAGS.workdir], Path(FLAGS.workdir) / 'report')}")
    print(f"wrote {FLAGS.workdir}/metrics.jsonl and summary.json")


if __name__ == "__main__":
    cli.run(main)
