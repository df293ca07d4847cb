r"""The report of a ticket-transfer study: accuracy per target, transfer table, mask overlaps.

    python -m experiments.report --workdirs=runs/transfer_cifar10,runs/transfer_svhn
    python -m experiments.report --workdirs=runs/transfer_cifar10 --out=runs/report --sparsities=0.8,0.99,0.999

Reads every workdir's metrics.jsonl and the winning tickets its rows name, and
writes to --out one accuracy figure per target and optimizer
(``accuracy_<target>_<optimizer>.png``), ``overlap.png`` and ``report.md``
(see ``lth_jax.report.write_report``).
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
flags.DEFINE_list("sparsities", [str(s) for s in DEFAULT_SPARSITIES], "Fractions pruned for the transfer table, comma-separated.")
flags.mark_flag_as_required("workdirs")


def fractions(texts: list[str]) -> list[float]:
    """``["0.5", "0.9"]`` → ``[0.5, 0.9]``, with a one-line error naming the bad text."""
    try:
        return [float(text) for text in texts]
    except ValueError:
        raise UserError(f"--sparsities={','.join(texts)} is not a comma-separated list of numbers") from None


def main(argv):
    del argv
    if not FLAGS.workdirs:
        raise UserError("--workdirs names no workdir")
    out = FLAGS.out or Path(FLAGS.workdirs[0]) / "report"
    print(f"wrote {write_report(FLAGS.workdirs, out, fractions(FLAGS.sparsities))}")


if __name__ == "__main__":
    cli.run(main)
