"""Training flags shared by the thesis scripts (parallel_tasks, thesis_sweep)."""

from __future__ import annotations

from absl import flags

from experiments import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("seeds", "0,1,2,3", "Comma-separated seeds, trained at once.")
flags.DEFINE_integer("epochs", 3000, "Maximum epochs per level.", lower_bound=1)
flags.DEFINE_integer("patience", 30, "Early-stopping patience on the eval loss (0: train all epochs).", lower_bound=0)
flags.DEFINE_integer("batch_size", 64, "Batch size.", lower_bound=1)
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_bool("vmap", True, "Train all seeds in one vmapped program (else one after the other).")
flags.register_validator("learning_rate", lambda r: r > 0, message="--learning_rate must be > 0")


def seeds() -> tuple[int, ...]:
    values = cli.int_list(FLAGS.seeds)
    if not values:
        raise ValueError(f"--seeds={FLAGS.seeds!r} names no seed")
    return tuple(values)


def training() -> dict:
    """The ThesisConfig fields these flags set."""
    return {
        "seeds": seeds(),
        "epochs": FLAGS.epochs,
        "patience": FLAGS.patience or None,
        "batch_size": FLAGS.batch_size,
        "learning_rate": FLAGS.learning_rate,
        "vmap": FLAGS.vmap,
    }
