"""Kill a run at any of its writes: the fault injection of the crash tests.

Every durable change a run makes goes through three primitives: atomic file
writes (``results._write_atomic``, committed by ``results._replace``: JSON files
and the arrays of tree artifacts), train-state checkpoints
(``StateCheckpoints.save``, orbax) and deletions (``results.remove_tree``).
:class:`Faults` wraps them and numbers the moments a kill can interrupt:

- just *before* a write or deletion (everything before it is committed);
- in the *middle* of it: a temporary file written but not renamed; an orbax
  temporary directory (``*.orbax-checkpoint-tmp-*``) half written; a directory
  tree half deleted.

With ``snapshots=(root, out)`` it copies the run directory ``root`` at every
moment into ``out/<k>``, with the half-done write of that moment applied to the
copy: exactly what a process killed at moment ``k`` leaves on disk (nothing in
memory survives a kill), from one uninterrupted run. ``kill_at=k`` instead
raises :class:`Killed`, a ``BaseException``, so that no ``except Exception``
clean-up runs. A run that writes from several threads (a sweep finishes a point
beside training) has its moments one at a time: each write holds a lock with its
moments, so that no snapshot copies a file that another thread is writing.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from etils import epath

from lth_jax import checkpoint, results


class Killed(BaseException):
    """The process died here."""


def _orbax_temporary(path: epath.Path) -> None:
    partial = epath.Path(f"{os.fspath(path)}.orbax-checkpoint-tmp-1700000000")
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "_METADATA").write_text("{")


def _half_delete(path) -> None:
    path = Path(path)
    if not path.exists():
        return
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files[: max(1, len(files) // 2)]:
        p.unlink()


class Faults:
    def __init__(self, kill_at: int | None = None, snapshots: tuple | None = None):
        self.kill_at, self.snapshots = kill_at, snapshots
        self.moments: list[str] = []
        self.lock = threading.RLock()

    def moment(self, what: str, path=None, half_done=None) -> None:
        """Count a moment; snapshot it, or die there with the half-done write left behind."""
        self.moments.append(what)
        k = len(self.moments)
        if self.snapshots is not None:
            root, out = (epath.Path(p) for p in self.snapshots)
            copy = out / f"{k:04d}"
            if root.exists():
                shutil.copytree(os.fspath(root), os.fspath(copy))
            if half_done is not None and epath.Path(path).is_relative_to(root):
                half_done(copy / epath.Path(path).relative_to(root))
        if k == self.kill_at:
            if half_done is not None:
                half_done(epath.Path(path))
            raise Killed(what)

    def install(self, monkeypatch) -> "Faults":
        real_write, real_replace = results._write_atomic, results._replace
        real_save_state = checkpoint.StateCheckpoints.save
        real_remove = results.remove_tree

        def write_atomic(path, text):
            with self.lock:
                self.moment(f"before writing {path}")
                real_write(path, text)

        def replace(tmp, path):
            with self.lock:
                self.moment(f"while writing {path}")  # the temporary is there, not yet renamed
                real_replace(tmp, path)

        def save_state(checkpoints, state, progress):
            step_dir = checkpoints.directory / str(int(state.step))
            with self.lock:
                self.moment(f"before checkpointing {step_dir}")
                self.moment(f"while checkpointing {step_dir}", step_dir, _orbax_temporary)
                real_save_state(checkpoints, state, progress)

        def remove_tree(path):
            path = epath.Path(path)
            with self.lock:
                if results.is_writer() and path.exists():
                    self.moment(f"before deleting {path}")
                    self.moment(f"while deleting {path}", path, _half_delete)
                real_remove(path)

        monkeypatch.setattr(results, "_write_atomic", write_atomic)
        monkeypatch.setattr(results, "_replace", replace)
        monkeypatch.setattr(checkpoint.StateCheckpoints, "save", save_state)
        for module in _importers_of_remove_tree():
            monkeypatch.setattr(module, "remove_tree", remove_tree)
        return self


def _importers_of_remove_tree():
    """The modules that call ``remove_tree`` by their own name for it."""
    import sys

    return [m for name, m in list(sys.modules.items())
            if name.startswith("lth_jax") and m is not None and getattr(m, "remove_tree", None) is results.remove_tree]


def temporaries(root) -> list[str]:
    """What interrupted writes left under ``root``."""
    root = Path(root)
    return sorted(os.fspath(p) for p in root.rglob("*") if p.name.endswith(results.TEMPORARY_SUFFIX) or ".orbax-checkpoint-tmp-" in p.name)
