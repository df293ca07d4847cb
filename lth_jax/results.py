"""Run directories: atomic JSON and JSON lines, on a local disk or ``gs://``.

Paths go through ``etils.epath``. Every write goes to a temporary file beside
its target and is renamed over it, so a reader sees the old file or the new
one, never half of one; :func:`remove_temporaries` clears what an interrupted
write left behind. With several JAX processes (multi-host) only process 0
writes or deletes; :func:`sync` is the barrier after which every process sees
what it wrote.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import platform
import sys
import uuid
from importlib import metadata
from typing import Any, Iterable, Sequence

from etils import epath

from lth_jax.errors import UserError

__all__ = [
    "write_bytes",
    "write_json",
    "read_json",
    "write_jsonl",
    "read_jsonl",
    "read_jsonl_prefix",
    "note_damaged_rows",
    "write_csv",
    "is_writer",
    "sync",
    "remove_tree",
    "remove_temporaries",
    "package_versions",
    "environment",
]

TEMPORARY_SUFFIX = ".tmp"


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_LINE_ENCODER = json.JSONEncoder(default=_json_default)  # what json.dumps(value, default=_json_default) builds per call


def is_writer() -> bool:
    """Whether this process writes files (process 0 of a multi-host run, or the only one)."""
    import jax

    return jax.process_index() == 0


def sync(name: str) -> None:
    """A barrier over all JAX processes (nothing with one process)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _local(path: epath.Path) -> bool:
    return "://" not in os.fspath(path)


def _replace(tmp: epath.Path, path: epath.Path) -> None:
    """The commit of an atomic write: rename the finished temporary over ``path``."""
    if _local(path):
        os.replace(os.fspath(tmp), os.fspath(path))
    else:
        tmp.rename(path)


def _write_atomic(path: str | os.PathLike, text: str | bytes) -> None:
    """Write ``text`` (or bytes) to a temporary beside ``path``, then rename it over ``path`` (process 0 only)."""
    if not is_writer():
        return
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}{TEMPORARY_SUFFIX}"
    try:
        if _local(path):
            with open(os.fspath(tmp), "wb" if isinstance(text, bytes) else "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        else:
            tmp.write_bytes(text) if isinstance(text, bytes) else tmp.write_text(text)
        _replace(tmp, path)
    except Exception:  # a failed write leaves nothing behind; a killed one, a temporary that remove_temporaries clears
        if tmp.exists():
            tmp.unlink()
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path``, atomically."""
    _write_atomic(path, data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    _write_atomic(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(epath.Path(path).read_text())


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write one JSON object per line, atomically (the whole file is rewritten)."""
    encode = _LINE_ENCODER.encode  # json.dumps's output, without an encoder built per line
    _write_atomic(path, "".join([encode(r) + "\n" for r in rows]))


def write_csv(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """Rows of one set of keys as CSV (the first row's keys are the header), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _write_atomic(path, buffer.getvalue())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The rows of a JSON-lines file; a line that is not JSON is a one-line ``UserError``."""
    rows, damaged = read_jsonl_prefix(path)
    if damaged is not None:
        raise UserError(f"{path}: line {damaged} is not JSON (the file was cut short or edited)")
    return rows


def read_jsonl_prefix(path: str | os.PathLike) -> tuple[list[dict], int | None]:
    """The rows before the first line that is not JSON, and that line's number (``None``: none).
    A missing file has no rows."""
    path = epath.Path(path)
    rows = []
    if not path.exists():
        return rows, None
    for number, line in enumerate(path.read_bytes().decode("utf-8", errors="replace").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                return rows, number
    return rows, None


def note_damaged_rows(path: str | os.PathLike, log_fn) -> None:
    """Say, before a run rewrites ``path`` from its finished stages, that the file was damaged."""
    rows, damaged = read_jsonl_prefix(path)
    if damaged is not None:
        log_fn(f"note: {path} was cut short at line {damaged} ({len(rows)} complete rows before it); "
               "its rows are rebuilt from the finished stages")


def remove_tree(path: str | os.PathLike) -> None:
    """Delete a file or directory tree if it exists (process 0 only; follow with :func:`sync`)."""
    path = epath.Path(path)
    if is_writer() and path.exists():
        path.rmtree() if path.is_dir() else path.unlink()


def remove_temporaries(directory: str | os.PathLike) -> None:
    """Delete what interrupted writes left directly in ``directory``: our ``.*.tmp``
    files and orbax's ``*.orbax-checkpoint-tmp-*`` directories (process 0 only)."""
    directory = epath.Path(directory)
    if not is_writer() or not directory.is_dir():
        return
    for child in directory.iterdir():
        name = child.name
        if (name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)) or ".orbax-checkpoint-tmp-" in name:
            remove_tree(child)


PACKAGES = ("lth_jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "ml-collections", "etils", "absl-py",
            "tensorflow-datasets", "scikit-learn", "matplotlib")


@functools.cache  # a process runs one set of packages
def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.cache  # as the process found it (three git calls: a run of 16 seeds records it 32 times)
def git_state() -> dict | None:
    """The commit of the lth_jax checkout that runs (and whether it had uncommitted
    changes when first asked), or ``None`` when lth_jax is not run from a git checkout."""
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))

    def git(*args) -> str:
        return subprocess.run(["git", "-C", here, *args], capture_output=True, text=True, timeout=10, check=True).stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "__init__.py")  # this very package is tracked, not an install inside some repository
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    """What a run's ``config.json`` records to make it reproducible: the command line,
    the lth_jax commit, Python, platform, package versions, devices, and the
    environment variables that steer JAX and XLA."""
    import jax

    devices, git = jax.devices(), git_state()
    return {
        "command": list(sys.argv),
        "git": None if git is None else dict(git),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": dict(package_versions()),
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind if devices else None,
        "devices": [str(d) for d in devices],
        "process_count": jax.process_count(),
        "jax_environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith(("JAX_", "XLA_"))},
    }
