r"""Find winning tickets on an image dataset with a paper's recipe (``lth_jax.find_ticket``).

    python -m experiments.find_ticket --config=experiments/configs/find_ticket_morcos_vgg19_sgd.py --workdir=runs/vgg19_cifar10
    python -m experiments.find_ticket --config=experiments/configs/find_ticket_digits_lenet.py --workdir=runs/digits
    python -m experiments.find_ticket --config=experiments/configs/find_ticket_morcos_vgg19_sgd.py \
        --config.training.epochs=2 --config.pruning.levels=3 --workdir=runs/quick
    python -m experiments.find_ticket --config=find_ticket_digits_lenet --config.seeds=0,1,2,3 --workdir=runs/digits_4

IMP with late resetting and global pruning on every local device (data
parallel), or across hosts with --multihost. Writes config.json, metrics.jsonl
(one object per level), summary.json and one ticket per level
(``level_XX/ticket``) to --workdir; the same command again resumes. With
--config.seeds, each seed's run is WORKDIR/seed_<s>, and small in-memory
models train all seeds as replicas of one program (--config.replicas=auto,
vmap or sequential).
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
    where = "seed_*/metrics.jsonl" if "seeds" in summary else "metrics.jsonl"
    print(f"wrote {FLAGS.workdir}/{where}, summary.json and {summary['levels_trained']} tickets")


def several_seeds_together() -> bool:
    """Several seeds that may train as replicas: one CPU device per core, the replicas split over them."""
    return len(FLAGS.config.get("seeds") or ()) > 1 and FLAGS.config.get("replicas", "auto") != "sequential"


if __name__ == "__main__":
    cli.run(main, cpu_devices=several_seeds_together)
