r"""The thesis's grids of parallel-task experiments, and their report (``lth_jax.thesis_sweep``).

    python -m experiments.thesis_sweep --config=experiments/configs/thesis_sweep_e1.py --workdir=runs/e1   # extension levels 0-25 × seeds 0-3
    python -m experiments.thesis_sweep --config=experiments/configs/thesis_sweep_e2.py --workdir=runs/e2   # one hidden layer, levels 0-16
    python -m experiments.thesis_sweep --config=experiments/configs/thesis_sweep_e4.py --workdir=runs/e4   # widths × 1-10 levels to 112 weights
    python -m experiments.thesis_sweep --config=experiments/configs/thesis_sweep_e1.py \
        --config.extension_levels=0,1,2,3 --config.experiment.seeds=0,1 --workdir=runs/e1_small
    python -m experiments.thesis_sweep --config=experiments/configs/thesis_sweep_e1.py --workdir=runs/e1 --report_only

Every point runs one parallel-task experiment into ``--workdir/<point>``
(resumable; the points of one MLP shape train together, ``--config.pack=false``
one at a time; ``--config.workers`` points or packs at once); ``sweep.jsonl`` collects the per-seed categories; the report writes
``figures/`` and ``report.md``.
"""

from __future__ import annotations

import dataclasses

from absl import flags

from experiments import checks, cli
from lth_jax import thesis_sweep
from lth_jax.parallel_tasks import ThesisConfig

FLAGS = flags.FLAGS
cli.define_config(None, "A sweep preset from experiments/configs/thesis_sweep_*.py.")
flags.mark_flag_as_required("config")
cli.define_workdir()
flags.DEFINE_bool("report_only", False, "Only draw the report of an existing sweep.")

flags.adopt_module_key_flags(cli)  # --helpshort lists the flags defined through cli


def check(config) -> None:
    """Every point of the sweep, before the first runs: a bad extension level, width or level count is refused up front."""
    if FLAGS.report_only:
        return
    spec = thesis_sweep.GRIDS.get(config.grid, {})
    axes = [a for a in ("extension_levels", "widths", "level_counts") if a in spec]
    for axis in axes:
        checks.check_integers(f"--config.{axis}", config[axis], 0, None, f"{axis} are integers")
    checks.check_integers("--config.workers", config.workers, 1, None, "workers is an integer")
    narrow = {a: config[a] for a in axes} | ({"target": config.target} if "target" in spec else {})
    base = ThesisConfig.from_config(config.experiment)
    checks.check_points([(f"--config.{a}", config[a]) for a in axes],
                        [(name, dataclasses.replace(base, **overrides)) for name, overrides, _, _ in thesis_sweep.sweep_points(config.grid, **narrow)])


def main(argv):
    del argv
    figures = thesis_sweep.sweep_report(FLAGS.workdir) if FLAGS.report_only else thesis_sweep.run(FLAGS.config, FLAGS.workdir)
    for figure in figures:
        print(f"wrote {figure}")
    print(f"wrote {FLAGS.workdir}/report.md")


if __name__ == "__main__":
    cli.run(main, cpu_devices=lambda: True, check=check)  # the sweep's vmapped seeds spread over the cores
