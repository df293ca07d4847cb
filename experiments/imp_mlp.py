r"""IMP on the thesis's Moons+Circles data with an MLP: one line per level.

    python -m experiments.imp_mlp --workdir=runs/imp_mlp --shape=4,32,32,2 --rate=0.32 --levels=8

Writes ``config.json``, ``metrics.jsonl`` (one object per level), ``summary.json``
and the IMP run directory (tickets per level, resumable) to ``--workdir``.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from experiments import cli
from lth_jax import objectives
from lth_jax.data.synthetic import moons_circles
from lth_jax.imp import PruningPlan, run_imp
from lth_jax.models import MLP
from lth_jax.optim import OptimizerRecipe
from lth_jax.results import write_json, write_jsonl
from lth_jax.train import TrainConfig

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/imp_mlp", "Run directory (resumes when it holds this run).")
flags.DEFINE_string("shape", "4,32,32,2", "MLP layer sizes; Moons+Circles has 4 inputs and 2 outputs.")
flags.DEFINE_float("rate", 0.32, "Fraction of the remaining weights pruned per level, in (0, 1).")
flags.DEFINE_integer("levels", 8, "Pruning levels after the dense level 0.", lower_bound=0)
flags.DEFINE_integer("epochs", 60, "Epochs per level.", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Batch size.", lower_bound=1)
flags.DEFINE_enum("optimizer", "adam", ["sgd", "adam", "adamw"], "Optimizer.")
flags.DEFINE_float("learning_rate", 1e-3, "Learning rate.")
flags.DEFINE_integer("patience", 0, "Early-stopping patience on the test loss (0: off).", lower_bound=0)
flags.DEFINE_string("rewind", "0", "Rewind step k: 0 (the initialization), e.g. 1ep or 100it.")
flags.DEFINE_enum("scope", "global", ["global", "layerwise"], "Global or layerwise magnitude pruning.")
flags.DEFINE_integer("seed", 0, "Initialization seed.")
flags.DEFINE_integer("data_seed", 0, "Seed of the Moons+Circles generators.")
flags.DEFINE_integer("log_every_epochs", 0, "Print a progress line every this many epochs (0: levels only).", lower_bound=0)

flags.register_validator("rate", lambda r: 0.0 < r < 1.0, message="--rate must be in the open interval (0, 1)")
flags.register_validator("learning_rate", lambda r: r > 0, message="--learning_rate must be > 0")


def header() -> str:
    return f"{'level':>5}  {'weights':>8}  {'kept %':>7}  {'circles acc':>11}  {'moons acc':>9}  {'test loss':>9}  {'epochs':>6}"


def row(record: dict) -> str:
    circles, moons = record["test_accuracy"]
    return (
        f"{record['level']:>5d}  {record['weights_remaining']:>8d}  {100 * record['fraction_remaining']:>6.2f}%  "
        f"{circles:>11.4f}  {moons:>9.4f}  {record['test_loss']:>9.4f}  {record['epochs']:>6d}"
    )


def main(argv):
    del argv
    shape = tuple(cli.int_list(FLAGS.shape))
    data = moons_circles(FLAGS.data_seed)
    if len(shape) < 2 or shape[0] != data.num_inputs or shape[-1] != data.num_outputs:
        raise ValueError(f"--shape={FLAGS.shape} must start with {data.num_inputs} inputs and end with {data.num_outputs} outputs")
    config = TrainConfig(
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        optimizer=OptimizerRecipe(name=FLAGS.optimizer, learning_rate=FLAGS.learning_rate),
        early_stopping_patience=FLAGS.patience or None,
        log_every_epochs=FLAGS.log_every_epochs,
    )
    plan = PruningPlan(rate=FLAGS.rate, levels=FLAGS.levels, scope=FLAGS.scope)
    workdir = Path(FLAGS.workdir)
    settings = {"train": config.to_dict(), "plan": plan.to_dict()}
    if not (workdir / "config.json").exists():
        cli.write_config(workdir, settings)
    print(f"IMP on Moons+Circles, MLP {shape}, {FLAGS.scope} pruning at rate {FLAGS.rate}, rewind {FLAGS.rewind}")
    print(header())

    def report(level):
        print(row(level.record), flush=True)

    result = run_imp(
        MLP(shape),
        objectives.sigmoid_tasks(data.num_outputs),
        data.train,
        data.test,
        config,
        plan,
        rewind=FLAGS.rewind,
        seed=FLAGS.seed,
        workdir=workdir / "imp",
        level_callback=report,
        ticket_info={"model": "mlp", "shape": list(shape), "dataset": "moons_circles", "classes": [2, 2]},
    )
    cli.write_config(workdir, settings)  # the run accepted these settings (a resume may add levels)
    write_jsonl(workdir / "metrics.jsonl", result.records)
    dense = result.records[0]
    write_json(
        workdir / "summary.json",
        {
            "trajectory": result.trajectory,
            "dense_test_accuracy": dense["test_accuracy"],
            "final": result.records[-1],
            "levels_trained": len(result.records),
        },
    )
    print(f"wrote {workdir}/metrics.jsonl, summary.json and tickets under {workdir}/imp")


if __name__ == "__main__":
    cli.run(main)
