r"""Winning tickets on parallel tasks (the thesis): do the tasks get separate subnetworks?

Defaults: Moons+Circles, the network extension of (4, 8, 8, 2) at level 9
(an MLP 4-57-57-2 pruned along 9 exact counts back to 112 weights), Adam 1e-3,
batch 64, early stopping on the test loss with patience 30 (at most 3000
epochs), reset to the initialization, stop when a seed's ticket degrades;
seeds 0-3 trained at once in one vmapped program.

    python -m experiments.parallel_tasks --workdir=runs/parallel_tasks
    python -m experiments.parallel_tasks --base_shape=4,20,2 --extension_level=5 --seeds=0,1
    python -m experiments.parallel_tasks --shape=4,40,40,2 --levels=8 --target=112
    python -m experiments.parallel_tasks --dataset=mnist_fashion --shape=1568,784,392,20 \
        --levels=20 --target=600 --batch_size=512 --epochs=1000 --stop_on_split --seeds=0,1,2   # E8

Writes config.json, metrics.jsonl (one object per seed and level), summary.json
and figures/ to --workdir; the same command again resumes.
"""

from __future__ import annotations

from absl import flags

from experiments import cli, thesis_flags
from lth_jax.data.tasks import TASK_DATASETS
from lth_jax.thesis import ThesisConfig, run_parallel_tasks

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/parallel_tasks", "Run directory (resumes when it holds this run).")
flags.DEFINE_enum("dataset", "moons_circles", list(TASK_DATASETS), "Parallel-task data.")
flags.DEFINE_integer("num_tasks", 3, "Tasks of --dataset=parallel_moons.", lower_bound=1)
flags.DEFINE_string("base_shape", "4,8,8,2", "Base MLP of the network extension.")
flags.DEFINE_integer("extension_level", 9, "Network-extension level (ignored when --shape is given).", lower_bound=0)
flags.DEFINE_string("shape", "", "Explicit MLP layer sizes, pruned along two of --rate, --levels, --target.")
flags.DEFINE_float("rate", 0.32, "Pruning rate per level, in (0, 1) (also the extension's rate).")
flags.DEFINE_integer("levels", None, "Pruning levels (with --shape).", lower_bound=0)
flags.DEFINE_integer("target", None, "Weights left after the last level (with --shape).", lower_bound=1)
flags.DEFINE_enum("coverage", "auto", ["auto", "total", "output"], "Coverage rule (auto: output for the image datasets, total otherwise).")
flags.DEFINE_bool("stop_on_degradation", True, "Stop a seed when its ticket degrades.")
flags.DEFINE_bool("stop_on_split", False, "Stop a seed when its ticket splits.")
flags.DEFINE_float("validation_split", 0.0, "Fraction of the train set held out for early stopping (0: the test set).")
flags.DEFINE_integer("data_seed", 0, "Seed of the synthetic data and of the epoch order.")
cli.define_data_flags()
flags.DEFINE_integer("log_every_epochs", 0, "Print a progress line every this many epochs (0: levels only).", lower_bound=0)

flags.register_validator("rate", lambda r: 0.0 < r < 1.0, message="--rate must be in the open interval (0, 1)")
flags.register_validator("validation_split", lambda v: 0.0 <= v < 1.0, message="--validation_split must be in [0, 1)")


def config_from_flags() -> ThesisConfig:
    shape = tuple(cli.int_list(FLAGS.shape)) if FLAGS.shape else None
    if shape is None and (FLAGS.levels is not None or FLAGS.target is not None):
        raise ValueError("--levels and --target need --shape (the network extension fixes the trajectory)")
    rate = FLAGS.rate
    if shape is not None and FLAGS.levels is not None and FLAGS.target is not None:
        if FLAGS["rate"].present:
            raise ValueError("give two of --rate, --levels, --target, not all three")
        rate = None
    return ThesisConfig(
        dataset=FLAGS.dataset,
        num_tasks=FLAGS.num_tasks,
        base_shape=tuple(cli.int_list(FLAGS.base_shape)),
        extension_level=None if shape else FLAGS.extension_level,
        shape=shape,
        rate=rate,
        levels=FLAGS.levels,
        target=FLAGS.target,
        **thesis_flags.training(),
        coverage=None if FLAGS.coverage == "auto" else FLAGS.coverage,
        stop_on_degradation=FLAGS.stop_on_degradation,
        stop_on_split=FLAGS.stop_on_split,
        validation_split=FLAGS.validation_split,
        data_seed=FLAGS.data_seed,
        data_dir=FLAGS.data_dir,
        download=bool(FLAGS.download),
        log_every_epochs=FLAGS.log_every_epochs,
    )


def main(argv):
    del argv
    summary_path = f"{FLAGS.workdir}/summary.json"
    run_parallel_tasks(config_from_flags(), FLAGS.workdir)
    print(f"wrote {FLAGS.workdir}/metrics.jsonl, {summary_path} and {FLAGS.workdir}/figures/")


if __name__ == "__main__":
    cli.run(main)
