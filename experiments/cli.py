"""Shared plumbing of the experiment scripts: config flags, one-line user errors.

Every experiment script takes ``--config`` (an ml_collections config file from
``experiments/configs/``, any field overridable with ``--config.field=value``)
and ``--workdir``. A mistake in what the user asked for (a bad flag or config
value, a workdir that holds another run: :class:`~lth_jax.errors.UserError`)
is printed as one line; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import re
import runpy
import sys
import traceback
from pathlib import Path
from typing import Callable

from absl import app, flags, logging
from ml_collections import config_flags

from lth_jax.errors import UserError

__all__ = ["CONFIGS", "run", "define_config", "define_workdir", "define_data_flags", "apply_data_flags",
           "define_multihost_flags", "initialize_multihost", "find_ticket", "transfer", "parallel_tasks", "thesis_sweep",
           "imp_mlp", "report", "fidelity"]

CONFIGS = Path(__file__).resolve().parent / "configs"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def compilation_cache() -> None:
    """XLA's persistent compilation cache, on for every script: a rerun (a resume,
    another seed, the next config of a sweep) loads its programs instead of
    compiling them. ``JAX_COMPILATION_CACHE_DIR`` chooses the directory (default
    ``$XDG_CACHE_HOME/lth_jax/xla``, i.e. ``~/.cache/lth_jax/xla``); ``=""`` turns it off."""
    import jax

    directory = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if directory is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        directory = os.path.join(base, "lth_jax", "xla")
        jax.config.update("jax_compilation_cache_dir", directory)
    if directory and "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.05)  # the small programs add up


def run(main: Callable[[list[str]], None], *, cpu_devices: Callable[[], bool] | None = None,
        check: Callable[..., None] | None = None) -> None:
    """``absl.app.run(main)``, with user mistakes reported as one line on stderr and
    exit status 1: a ``UserError``, a bad flag, a config override naming a field the
    config does not have, a config file that does not load, what
    :func:`experiments.checks.check_flags` refuses (the flags every command shares),
    and what ``check(*configs)`` refuses: the command's own check of its configs (in
    the order their flags were defined, None where not given), run before ``main``,
    once the devices are set up, before anything is written. Turns on the
    compilation cache; ``cpu_devices()`` (asked after the flags are parsed) True: one
    CPU device per core (:func:`lth_jax.parallel.cpu_devices_per_core`)."""

    def guarded(argv):
        import matplotlib

        from experiments import checks

        _check_config_files()  # before anything reads the config
        try:
            checks.check_flags({name: flags.FLAGS[name].value for name in checks.DIRECTORY_FLAGS if name in flags.FLAGS},
                               {name: (flags.FLAGS[name].value, flags.FLAGS[name].config_filename) if flags.FLAGS[name].present
                                else None for name in _CONFIG_FLAGS}, sys.argv)
        except UserError as e:
            sys.exit("error: " + _as_typed(_one_line(e)))
        if cpu_devices is not None and cpu_devices():
            from lth_jax import parallel

            try:
                parallel.cpu_devices_per_core()
            except UserError as e:
                sys.exit("error: " + _one_line(e))
        compilation_cache()

        matplotlib.use("Agg")  # scripts write figures to files; no display is needed
        # Library logs (orbax's info lines, TFDS's warnings before a one-line error) only with --verbosity.
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.ERROR)
        experiment = Path(sys.argv[0]).stem
        workdir = flags.FLAGS.workdir if "workdir" in flags.FLAGS else None
        try:
            if check is not None:
                check(*(flags.FLAGS[name].value for name in _CONFIG_FLAGS))
            if workdir:
                claim_workdir(workdir, experiment)
            main(argv)
        except UserError as e:
            sys.exit("error: " + _as_typed(_one_line(e)))
        if workdir and os.path.isdir(workdir):
            from lth_jax.results import is_writer, write_json

            if is_writer() and not os.path.exists(os.path.join(workdir, WORKDIR_MARKER)):
                write_json(os.path.join(workdir, WORKDIR_MARKER), {"experiment": experiment})

    def parse_flags(argv):
        argv = _with_default_configs(argv)
        logging.set_verbosity(logging.ERROR)  # config_flags' warnings (get_config() returned None) are one line later
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            sys.exit(f"error: {_one_line(e)} (--helpshort lists the flags)")
        except AttributeError as e:  # a --config.x.y override naming a field the config does not have
            if "get_config" in str(e):  # a config file without get_config()
                files = [a.split("=", 1)[1].partition(":")[0] for a in argv if any(a.startswith(f"--{n}=") for n in _CONFIG_FLAGS)]
                sys.exit(f"error: the config file {' or '.join(files)} does not load: it defines no get_config()")
            sys.exit(f"error: a --config override names a field the config does not have: {_missing_field(e)}")
        except (OSError, SyntaxError) as e:  # a config file that is missing or does not load
            _config_file_error(e)
        except Exception as e:  # a config file whose code fails (at import or in get_config): its file and line
            where = [f for f in traceback.extract_tb(e.__traceback__)
                     if f.filename.endswith(".py") and "site-packages" not in f.filename and f.filename != __file__]
            place = f" ({os.path.basename(where[-1].filename)}, line {where[-1].lineno})" if where else ""
            sys.exit(f"error: the config file does not load: {type(e).__name__}: {_one_line(e)}{place}")

    app.run(guarded, flags_parser=parse_flags)


WORKDIR_MARKER = "experiment.json"


def workdir_experiment(workdir: str) -> str | None:
    """The experiment a workdir holds: its ``experiment.json``, or for one an earlier version
    wrote, what its files show; ``None`` for a new or empty directory."""
    from lth_jax.results import read_json

    def read(name):
        path = os.path.join(workdir, name)
        try:
            return read_json(path) if os.path.isfile(path) else None
        except ValueError:
            return {}

    marker = read(WORKDIR_MARKER)
    if marker is not None:
        return marker.get("experiment", "unknown")
    for name, experiment in (("sweep.json", "thesis_sweep"), ("points.json", "fidelity")):
        if os.path.isfile(os.path.join(workdir, name)):
            return experiment
    settings, config = read("settings.json"), read("config.json")  # a stage's settings; the run's config
    if isinstance(settings, dict) and settings.get("kind"):
        return {"imp": "find_ticket"}.get(settings["kind"], settings["kind"])  # find_ticket's IMP run is the workdir
    if isinstance(config, dict):
        if "source_config" in config:
            return "transfer"
        if "experiment" in config:
            return "parallel_tasks"
        inner = config.get("config")
        if isinstance(inner, dict):
            return "find_ticket" if "model" in inner else "imp_mlp"
    return None


def claim_workdir(workdir: str, experiment: str) -> None:
    """Refuse (one line) a workdir that holds another experiment's run."""
    found = workdir_experiment(workdir) if os.path.isdir(workdir) else None
    if found is not None and found != experiment:
        raise UserError(f"--workdir={workdir} holds a {found} run; this command runs {experiment}: give another workdir")


def _config_paths(config, prefix: str = "") -> dict[str, list[str]]:
    """Every field name of a config (nested ones too) and the dotted paths that end in it."""
    paths: dict[str, list[str]] = {}
    for key in config.keys():
        value = config[key]
        paths.setdefault(key, []).append(prefix + key)
        if hasattr(value, "keys") and not isinstance(value, dict):
            for name, found in _config_paths(value, f"{prefix}{key}.").items():
                paths.setdefault(name, []).extend(found)
    return paths


def _as_typed(message: str) -> str:
    """``rate=1.5 is ...`` as the user typed it, ``--config.rate=1.5 is ...``, when the message
    starts with a config field's name (one field of that name in the config, or a top-level
    field of that name) or its dotted path (``auto_rewind.threshold=...``)."""
    match = re.match(r"([a-z_][a-z0-9_.]*)=", message)
    for name in _CONFIG_FLAGS:
        config = flags.FLAGS[name].value if match else None
        if config is None:
            continue
        field = match.group(1)
        found = [path for paths in _config_paths(config).values() for path in paths if path.endswith("." + field) or path == field]
        if field in found or len(found) == 1:
            return f"--{name}.{field if field in found else found[0]}{message[len(field):]}"
    return message


def _missing_field(e: AttributeError) -> str:
    """``'seed' (did you mean 'seeds'?)`` from ml_collections' nested error text."""
    text = str(e)
    name = re.search(r"'\\?'?([^'\\]+)\\?'", text)
    suggestion = re.search(r'Did you mean "([^"]+)"', text)
    shown = repr(name.group(1)) if name else _one_line(text)
    return shown + (f" (did you mean {suggestion.group(1)!r}?)" if suggestion else "")


def _config_file_error(e: Exception) -> None:
    reason = _one_line(e).replace("Configuration is not available because of an earlier failure to load: ", "")
    sys.exit(f"error: the config file does not load: {reason}")


def presets(experiment: str) -> list[str]:
    """The preset names of an experiment (``experiments/configs/<experiment>_*.py``)."""
    return sorted(p.stem for p in CONFIGS.glob(f"{experiment}_*.py"))


def _check_config_files() -> None:
    """A config file that failed to load is reported when the config is first used;
    report it now, as one line (a name that is neither a file nor a preset: with the presets)."""
    for name in _CONFIG_FLAGS:
        value = flags.FLAGS[name].value
        if value is None:
            continue
        try:
            getattr(value, "keys", None)  # a config that failed to load raises on any attribute
        except OSError as e:
            given = flags.FLAGS[name].config_filename.partition(":")[0]
            if not os.path.exists(given):
                experiment = Path(sys.argv[0]).stem
                sys.exit(f"error: --{name}={given} is neither a config file nor a preset; the presets of {experiment}: "
                         f"{', '.join(presets(experiment)) or 'none'}")
            _config_file_error(e)


_CONFIG_FLAGS: list[str] = []
_CONFIG_DEFAULTS: dict[str, str] = {}


def preset_path(value: str) -> str:
    """A config file as given, or the preset of that name in ``experiments/configs/``
    (``find_ticket_digits_lenet``, ``transfer_morcos.py:vgg19_sgd``) when no such file
    exists: presets work from any directory."""
    path, colon, arg = value.partition(":")
    if os.path.exists(path):
        return value
    name = os.path.basename(path)
    preset = CONFIGS / (name if name.endswith(".py") else f"{name}.py")
    return f"{preset}{colon}{arg}" if preset.exists() else value


def _with_default_configs(argv: list[str]) -> list[str]:
    """``argv`` with presets resolved (:func:`preset_path`) and ``--config=<default>``
    where no config file is given. (A config flag with a default applies the
    ``--config.x`` overrides when it is defined, on import, where a mistake could not
    be reported as one line.)"""
    argv = list(argv)
    for name in _CONFIG_FLAGS:
        for i, arg in enumerate(argv[1:], start=1):
            if arg.startswith(f"--{name}="):
                argv[i] = f"--{name}={preset_path(arg.split('=', 1)[1])}"
    for name, path in _CONFIG_DEFAULTS.items():
        if not any(arg == f"--{name}" or arg.startswith(f"--{name}=") for arg in argv[1:]):
            argv.insert(1, f"--{name}={path}")
    return argv


def define_config(default: str | None, help_text: str, name: str = "config") -> None:
    """``--config`` (by default a file in ``experiments/configs/``), overridable field by field."""
    if default is not None:
        _CONFIG_DEFAULTS[name] = str(CONFIGS / default)
        help_text += f" Default: experiments/configs/{default}."
    config_flags.DEFINE_config_file(name, None, f"{help_text} Any field can be overridden: --{name}.field=value.")
    _CONFIG_FLAGS.append(name)


def define_workdir(default: str | None = None) -> None:
    flags.DEFINE_string("workdir", default, "Run directory (the same command again resumes; other settings are refused).")
    if default is None:
        flags.mark_flag_as_required("workdir")  # its value is checked with the other shared flags (experiments.checks)


def define_data_flags() -> None:
    """``--data_dir`` and ``--download``: where TFDS datasets are prepared, and whether
    TFDS may download and prepare a missing one. Unset, they leave a config as it is."""
    flags.DEFINE_string("data_dir", None, "TFDS data directory (default: the config's, else ~/tensorflow_datasets).")
    flags.DEFINE_bool("download", None, "Let TFDS download and prepare missing datasets (needs internet and TensorFlow).")


def apply_data_flags(*configs) -> None:
    """Write ``--data_dir`` / ``--download``, where given, into configs that have those fields."""
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


# --------------------------------------------------------------------------- console scripts (setup.cfg)


def _script(module: str) -> None:
    """Run ``experiments.<module>`` as ``python -m`` would (its flags, its help)."""
    runpy.run_module(f"experiments.{module}", run_name="__main__", alter_sys=True)


def find_ticket() -> None:
    _script("find_ticket")


def transfer() -> None:
    _script("transfer")


def parallel_tasks() -> None:
    _script("parallel_tasks")


def thesis_sweep() -> None:
    _script("thesis_sweep")


def imp_mlp() -> None:
    _script("imp_mlp")


def report() -> None:
    _script("report")


def fidelity() -> None:
    _script("fidelity")


def instability() -> None:
    _script("instability")
