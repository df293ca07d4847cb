r"""IMP on the thesis's Moons+Circles data with an MLP: one line per level (``lth_jax.imp_mlp``).

    python -m experiments.imp_mlp --workdir=runs/imp_mlp
    python -m experiments.imp_mlp --config.shape=4,16,2 --config.levels=3 --config.rewind=1ep --workdir=runs/imp_small

Writes ``config.json``, ``metrics.jsonl`` (one object per level), ``summary.json``
and the IMP run directory (tickets per level, resumable) to ``--workdir``.
"""

from __future__ import annotations

from absl import flags

from experiments import cli
from lth_jax import imp_mlp

FLAGS = flags.FLAGS
cli.define_config("imp_mlp_moons_circles.py", "The example's config (experiments/configs/imp_mlp_*.py).")
cli.define_workdir("runs/imp_mlp")

flags.adopt_module_key_flags(cli)  # --helpshort lists the flags defined through cli

def main(argv):
    del argv
    imp_mlp.run(FLAGS.config, FLAGS.workdir)
    print(f"wrote {FLAGS.workdir}/metrics.jsonl, summary.json and tickets under {FLAGS.workdir}/imp")


if __name__ == "__main__":
    cli.run(main)
