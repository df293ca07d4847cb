r"""The report of a ticket-transfer study: accuracy per target, transfer table, paired differences, mask overlaps.

    python -m experiments.report --workdirs=runs/transfer_cifar10,runs/transfer_svhn
    python -m experiments.report --workdirs=runs/transfer_cifar10 --out=runs/report --sparsities=0.8,0.99,0.999
    python -m experiments.report --workdirs=runs/transfer_cifar10 --levels=0,7,20,30

Reads every workdir's metrics.jsonl and the winning tickets its rows name, and
writes to --out one accuracy figure per target and optimizer
(``accuracy_<target>_<optimizer>.png``), ``overlap.png`` and ``report.md``
with its tables as CSV (see ``lth_jax.report.write_report``). The tables read
the IMP levels of --levels, or else the levels nearest the fractions pruned of
--sparsities; every number is a mean over seeds with its 95% Student-t interval.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from experiments import cli
from lth_jax.errors import UserError
from lth_jax.report import DEFAULT_SPARSITIES, write_report

FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", None, "Transfer workdirs, comma-separated (each with a metrics.jsonl).")
flags.DEFINE_string("out", None, "Where to write the report (default: the first workdir's report/).")
flags.DEFINE_list("sparsities", [str(s) for s in DEFAULT_SPARSITIES],
                  "Fractions pruned for the tables, comma-separated: each reads the IMP level nearest it.")
flags.DEFINE_list("levels", None, "IMP levels for the tables, comma-separated (instead of --sparsities).")
flags.mark_flag_as_required("workdirs")


def numbers(texts: list[str], kind: type = float, flag: str = "sparsities") -> list:
    """``["0.5", "0.9"]`` → ``[0.5, 0.9]`` (``kind`` of each), with a one-line error naming the bad text."""
    try:
        return [kind(text) for text in texts]
    except ValueError:
        what = "numbers" if kind is float else "integers"
        raise UserError(f"--{flag}={','.join(texts)} is not a comma-separated list of {what}") from None


def main(argv):
    del argv
    if not FLAGS.workdirs:
        raise UserError("--workdirs names no workdir")
    out = FLAGS.out or Path(FLAGS.workdirs[0]) / "report"
    levels = None if FLAGS.levels is None else numbers(FLAGS.levels, int, "levels")
    print(f"wrote {write_report(FLAGS.workdirs, out, numbers(FLAGS.sparsities), levels=levels)}")


if __name__ == "__main__":
    cli.run(main)
