r"""Morcos et al.'s claims tested offline: several transfer studies, one claims report (``lth_jax.transfer_claims``).

    python -m experiments.transfer_claims --workdir=runs/transfer_claims        # the digits study (make transfer_claims)
    python -m experiments.transfer_claims --workdir=runs/claims_tiny --config.seeds=0,1 --config.levels=2 \
        --config.deep_levels=3
    python -m experiments.transfer_claims --workdir=runs/transfer_claims --report_only

Runs every part of the config (a transfer study or an IMP curve each, into
WORKDIR/<part>; the same command again resumes), then measures each claim as a
per-seed effect with its Student-t 95% interval and writes WORKDIR/report:
claims.md (the claims table, the figures, the paired differences), claims.csv,
paired.csv and the PNGs.
"""

from __future__ import annotations

from absl import flags

from experiments import cli
from lth_jax import transfer_claims

FLAGS = flags.FLAGS
cli.define_config("transfer_claims_digits.py", "A claims preset.")
cli.define_workdir()
flags.DEFINE_bool("report_only", False, "Write the report from what WORKDIR holds; train nothing.")

flags.adopt_module_key_flags(cli)  # --helpshort lists the flags defined through cli


def main(argv):
    del argv
    if FLAGS.report_only:
        out = transfer_claims.write_claims_report(FLAGS.config, FLAGS.workdir)
    else:
        out = transfer_claims.run_claims(FLAGS.config, FLAGS.workdir)
    print((out / "claims.md").read_text().split("\n## ")[0])
    print(f"wrote {out}/claims.md, claims.csv and the figures")


def check(config) -> None:
    transfer_claims.ClaimsConfig.from_config(config)


if __name__ == "__main__":
    cli.run(main, cpu_devices=lambda: True, check=check)
