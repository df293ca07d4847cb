r"""The thesis's grids, and their report (run categories; the split/no-split grid).

    python -m experiments.thesis_sweep --grid=e1 --workdir=runs/e1                 # extension levels 0-25 × seeds 0-3
    python -m experiments.thesis_sweep --grid=e2 --workdir=runs/e2                 # one hidden layer, levels 0-16
    python -m experiments.thesis_sweep --grid=e4 --workdir=runs/e4                 # widths {31,38,48,57} × 1-10 levels to 112 weights
    python -m experiments.thesis_sweep --grid=e1 --extension_levels=0-6 --seeds=0,1 --workdir=runs/e1_small
    python -m experiments.thesis_sweep --grid=e1 --workdir=runs/e1 --report_only

Every point runs ``lth_jax.thesis.run_parallel_tasks`` into ``--workdir/<point>``
(resumable); ``sweep.jsonl`` collects the per-seed categories; the report writes
``figures/`` and ``report.md``.
"""

from __future__ import annotations

from absl import flags

from experiments import cli, thesis_flags
from lth_jax.thesis import GRIDS, ThesisConfig, run_sweep, sweep_report

FLAGS = flags.FLAGS
flags.DEFINE_enum("grid", "e1", sorted(GRIDS), "Which grid of the thesis.")
flags.DEFINE_string("workdir", None, "Sweep directory.")
flags.DEFINE_string("extension_levels", "", "E1-E3: extension levels, e.g. 0-25 or 0,3,6 (default: the thesis's).")
flags.DEFINE_string("widths", "", "E4: widths (default 31,38,48,57).")
flags.DEFINE_string("level_counts", "", "E4: numbers of levels (default 1-10).")
flags.DEFINE_integer("target", None, "E4: weights after the last level (default 112).", lower_bound=1)
flags.DEFINE_bool("report_only", False, "Only draw the report of an existing sweep.")
flags.mark_flag_as_required("workdir")


def int_range(text: str) -> list[int] | None:
    """``"0-25"`` or ``"0,3,6"``; empty → None (the grid's default)."""
    if not text:
        return None
    if "-" in text and "," not in text:
        low, high = (cli.int_list(part)[0] for part in text.split("-", 1))
        if high < low:
            raise ValueError(f"range {text!r} is empty")
        return list(range(low, high + 1))
    return cli.int_list(text)


def main(argv):
    del argv
    if not FLAGS.report_only:
        base = ThesisConfig(**thesis_flags.training())
        narrow = {"extension_levels": int_range(FLAGS.extension_levels)} if FLAGS.grid != "e4" else {
            "widths": int_range(FLAGS.widths), "level_counts": int_range(FLAGS.level_counts), "target": FLAGS.target}
        run_sweep(FLAGS.grid, base, FLAGS.workdir, **narrow)
    for figure in sweep_report(FLAGS.workdir):
        print(f"wrote {figure}")
    print(f"wrote {FLAGS.workdir}/report.md")


if __name__ == "__main__":
    cli.run(main)
