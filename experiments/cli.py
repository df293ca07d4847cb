"""Shared plumbing of the experiment scripts: one-line errors, run directories."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from absl import app, flags, logging

from lth_jax.results import environment, write_json

__all__ = ["run", "write_config", "int_list", "define_data_flags", "apply_data_flags", "define_multihost_flags", "initialize_multihost"]


def run(main: Callable[[list[str]], None]) -> None:
    """``absl.app.run(main)``, with a user mistake (``ValueError``, a missing file, a
    bad flag or config override) reported as one line on stderr and exit status 1
    instead of a traceback."""

    def guarded(argv):
        # Library logs (orbax's info lines, TFDS's warnings before a one-line error) only with --verbosity.
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.ERROR)
        try:
            main(argv)
        except (ValueError, OSError) as e:  # OSError: missing files, a config file that does not load
            sys.exit("error: " + " ".join(str(e).split()))

    def parse_flags(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            sys.exit(f"error: {' '.join(str(e).split())} (--helpshort lists the flags)")
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


def define_data_flags() -> None:
    """``--data_dir`` and ``--download``: where TFDS datasets are prepared, and whether
    TFDS may download and prepare a missing one. Unset, they leave a config as it is."""
    flags.DEFINE_string("data_dir", None, "TFDS data directory (default: the config's, else ~/tensorflow_datasets).")
    flags.DEFINE_bool("download", None, "Let TFDS download and prepare missing datasets (needs internet and TensorFlow).")


def apply_data_flags(*configs) -> None:
    """Write ``--data_dir`` / ``--download``, where given, into image-experiment configs."""
    for c in configs:
        if c is None:
            continue
        if flags.FLAGS.data_dir is not None:
            c.data_dir = flags.FLAGS.data_dir
        if flags.FLAGS.download is not None:
            c.download = flags.FLAGS.download


def define_multihost_flags() -> None:
    """``--multihost`` and, for clusters without a manager JAX detects, the coordinator's address and this process's place."""
    flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (TPU pods, GPU clusters): each process "
                      "reads its share of every batch, process 0 writes the JSON files.")
    flags.DEFINE_string("coordinator_address", None, "With --multihost: host:port of process 0 (default: detected from the cluster).")
    flags.DEFINE_integer("num_processes", None, "With --multihost: the number of processes (default: detected).", lower_bound=1)
    flags.DEFINE_integer("process_id", None, "With --multihost: this process's index (default: detected).", lower_bound=0)


def initialize_multihost() -> None:
    """``jax.distributed.initialize`` when ``--multihost`` is set; CPU collectives go through gloo."""
    if not flags.FLAGS.multihost:
        return
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # only the CPU backend reads it
    jax.distributed.initialize(
        coordinator_address=flags.FLAGS.coordinator_address, num_processes=flags.FLAGS.num_processes, process_id=flags.FLAGS.process_id
    )
