"""Shared plumbing of the experiment scripts: one-line errors, run directories."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from absl import app, flags, logging

from lth_jax.results import environment, write_json

__all__ = ["run", "write_config", "int_list"]


def run(main: Callable[[list[str]], None]) -> None:
    """``absl.app.run(main)``, with a user mistake (``ValueError``, a missing file, a
    bad flag or config override) reported as one line on stderr and exit status 1
    instead of a traceback."""

    def guarded(argv):
        if not flags.FLAGS["verbosity"].present:  # library info logs (orbax) only on --verbosity=0
            logging.set_verbosity(logging.WARNING)
        try:
            main(argv)
        except (ValueError, OSError) as e:  # OSError: missing files, a config file that does not load
            sys.exit("error: " + " ".join(str(e).split()))

    def parse_flags(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            sys.exit(f"FATAL Flags parsing error: {e}\nPass --helpshort or --helpfull to see help on flags.")
        except AttributeError as e:  # a --config.x.y override naming a field the config does not have
            sys.exit(f"error: a --config override names a field the config does not have: {e}")

    app.run(guarded, flags_parser=parse_flags)


def write_config(workdir: str | Path, extra: dict | None = None) -> None:
    """``config.json``: every flag of the script, extra settings, and the environment."""
    # absl files the flags of `python -m experiments.x` under the script's path.
    values = {
        f.name: f.value
        for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
        if module == sys.argv[0] or module.startswith("experiments")
        for f in module_flags
    }
    write_json(Path(workdir) / "config.json", {"flags": values, **(extra or {}), "environment": environment()})


def int_list(text: str) -> list[int]:
    """``"4,8,8,2"`` → ``[4, 8, 8, 2]``, with a one-line error naming the bad text."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of integers") from None
