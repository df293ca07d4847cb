"""The checks of what the commands share, run by :func:`experiments.cli.run` before a command's ``main``.

:func:`check_flags`, for every command, before anything runs or is written, refuses (a
:class:`~lth_jax.errors.UserError`: one line naming the flag as typed):

- a directory flag given empty (``--workdir=``, ``--data_dir=``, ``--out=``): it would mean the current directory;
  a ``--workdir`` that is a file;
- a config file whose ``get_config()`` returns something other than an ``ml_collections.ConfigDict``;
- a seed that is not an integer from 0 to 2**32 - 1: every field of the config tree named ``seed``, ``seeds``,
  ``*_seed`` or ``*_seeds`` (a seed, seeds, or a number of seeds), wherever it is nested
  (``--config.recipe.training.data_seed``).

:func:`check_points`: a command that runs a grid of parallel-task experiments (``thesis_sweep``, ``fidelity``)
checks every point before the first runs (its ``check=`` of :func:`experiments.cli.run`).
"""

from __future__ import annotations

import os
import re
import sys
from typing import Iterable, Iterator, Sequence

import ml_collections

from lth_jax.errors import UserError

__all__ = ["DIRECTORY_FLAGS", "MAX_SEED", "check_flags", "check_integers", "check_points", "seed_fields", "typed"]

DIRECTORY_FLAGS = ("workdir", "data_dir", "out")  # flags naming a directory: empty would be the current one
MAX_SEED = 2**32 - 1  # numpy's seeds (the data orders) stop there
_SEED_FIELD = re.compile(r"(.+_)?seeds?")


def check_flags(values: dict, configs: dict, argv: Sequence[str]) -> None:
    """Refuse what every command refuses alike. ``values``: the command's directory flags by name (those it
    has); ``configs``: its config flags by name, each ``(value, file)``, or None where not given; ``argv``:
    the command line, to name a field as typed."""
    for name in DIRECTORY_FLAGS:
        if name in values and values[name] is not None and not str(values[name]).strip():
            raise UserError(f"--{name}={values[name]} is empty: give a directory (the current one is never assumed)")
    workdir = values.get("workdir")
    if workdir and os.path.exists(workdir) and not os.path.isdir(workdir):
        raise UserError(f"--workdir={workdir}: is a file, not a directory: give a directory for the run (it is created if missing)")
    given = {name: config for name, config in configs.items() if config is not None}
    for name, (config, file) in given.items():
        if not isinstance(config, ml_collections.ConfigDict):
            what = "None" if config is None else f"a {type(config).__name__}"
            raise UserError(f"--{name}={file}: its get_config() returns {what}, not an ml_collections.ConfigDict")
    for name, (config, _) in given.items():
        for path, value in seed_fields(config):
            check_integers(f"--{name}.{path}", value, 0, MAX_SEED, "seeds (and numbers of seeds) are integers", argv)


def seed_fields(config, prefix: str = "") -> Iterator[tuple[str, object]]:
    """Every field of a config tree named like a seed: its dotted path and value."""
    for key in config.keys():
        value = config[key]
        if isinstance(value, ml_collections.ConfigDict):
            yield from seed_fields(value, f"{prefix}{key}.")
        elif _SEED_FIELD.fullmatch(key):
            yield prefix + key, value


def typed(flag: str, value, argv: Sequence[str] | None = None) -> str:
    """``--config.seeds=0,x``: the flag as the command line gave it, else its value (from the config file)."""
    argv = sys.argv if argv is None else argv
    text = next((a[len(flag) + 1:] for a in reversed(argv) if a.startswith(flag + "=")), None)
    if text is None:
        text = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
    return f"{flag}={text}"


def check_integers(flag: str, value, minimum: int, maximum: int | None, rule: str, argv: Sequence[str] | None = None) -> None:
    """Refuse a value (an integer, a tuple of them, or ``"0,1"`` as typed; None: the default) holding anything
    but integers from ``minimum`` to ``maximum``; ``rule`` says what is allowed."""
    if value is None:
        return
    items = list(value) if isinstance(value, (tuple, list)) else [value]
    parts = [p for item in items for p in ([t.strip() for t in item.split(",")] if isinstance(item, str) else [item])]
    for part in parts:
        number = int(part) if isinstance(part, str) and re.fullmatch(r"[+-]?\d+", part) else part
        if isinstance(number, bool) or not isinstance(number, int):
            what = f"{part!r} is not an integer"
        elif number < minimum:
            what = f"{number} is {'negative' if minimum == 0 else f'below {minimum}'}"
        elif maximum is not None and number > maximum:
            what = f"{number} is too large"
        else:
            continue
        allowed = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise UserError(f"{typed(flag, value, argv)}: {what}; {rule} {allowed}")


def check_points(given: Iterable[tuple[str, object]], points: Iterable[tuple[str, object]]) -> None:
    """Every point of a grid of parallel-task experiments (``(name, ThesisConfig)``), before the first runs:
    its network, its pruning trajectory and its memory. ``given``: the flags that chose the points, with
    their values, named in the error."""
    from lth_jax.sizes import check_memory
    from lth_jax.trajectory import weight_count

    for name, config in points:
        try:
            shape, plan = config.network()
            plan.trajectory(weight_count(shape))
            check_memory(weight_count(shape) + sum(shape[1:]), len(config.seeds), "its network")
        except UserError as e:
            flags = " ".join(typed(flag, value) for flag, value in given)
            raise UserError(f"{flags}: point {name}: {' '.join(str(e).split())}") from None
