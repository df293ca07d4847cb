"""Pytrees on disk (orbax), written so that an interrupted write is never read.

A *tree artifact* is a directory holding the arrays (``arrays/``, written by
orbax, which renames its own temporary into place) and a JSON file named after
the directory (``ticket/ticket.json``, ``trained/trained.json``) written last:
the artifact is complete exactly when that file exists. Replacing an artifact
removes the file first, so a crash mid-way leaves an incomplete artifact that
the next run writes again, never a complete-looking one with missing arrays.

:class:`StateCheckpoints` keeps the train state and loop progress of an
unfinished stage with orbax's ``CheckpointManager`` (atomic steps, retention of
the latest, optional asynchronous writes, multi-host coordination).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from lth_jax.results import is_writer, read_json, remove_temporaries, remove_tree, sync, write_json

__all__ = ["save_tree", "load_tree", "tree_meta", "is_complete", "StateCheckpoints"]


def _marker(directory: epath.Path, name: str | None = None) -> epath.Path:
    return directory / f"{name or directory.name}.json"


def _save_arrays(directory: epath.Path, tree: Any) -> None:
    """One orbax write of ``tree`` to ``directory`` (replaced if it exists); collective across processes."""
    ocp.Checkpointer(ocp.StandardCheckpointHandler()).save(directory, tree, force=True)


def is_complete(directory: str | os.PathLike, name: str | None = None) -> bool:
    """Whether ``directory`` holds a complete tree artifact (its JSON is ``<name>.json``,
    by default named after the directory)."""
    return _marker(epath.Path(directory), name).exists()


def save_tree(directory: str | os.PathLike, tree: Any, meta: dict | None = None, *, name: str | None = None) -> None:
    """Write ``tree`` (and the JSON ``meta``, as ``<name>.json``) as a tree artifact, replacing one that exists."""
    directory = epath.Path(directory).absolute()
    if is_writer():
        directory.mkdir(parents=True, exist_ok=True)
    remove_temporaries(directory)  # what an interrupted write of this artifact left
    remove_tree(_marker(directory, name))
    sync(f"save_tree:{directory}:begin")
    _save_arrays(directory / "arrays", tree)
    write_json(_marker(directory, name), meta or {})
    sync(f"save_tree:{directory}:end")


def tree_meta(directory: str | os.PathLike, name: str | None = None) -> dict:
    """The JSON written with a complete tree artifact."""
    directory = epath.Path(directory)
    if not is_complete(directory, name):
        raise FileNotFoundError(f"no complete checkpoint at {directory} (no {_marker(directory, name).name})")
    return read_json(_marker(directory, name))


def load_tree(directory: str | os.PathLike, target: Any = None, *, name: str | None = None) -> Any:
    """The arrays of a complete tree artifact.

    With ``target`` (a tree of arrays or ``ShapeDtypeStruct``s) the result has
    exactly the target's tree structure (optax NamedTuples included).
    """
    directory = epath.Path(directory).absolute()
    tree_meta(directory, name)  # complete, or a one-line FileNotFoundError
    checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())
    if target is None:
        return checkpointer.restore(directory / "arrays")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    restored = checkpointer.restore(directory / "arrays", abstract)
    return jax.tree.unflatten(jax.tree.structure(target), jax.tree.leaves(restored))


class StateCheckpoints:
    """The latest train state and loop progress of an unfinished stage.

    ``directory`` is managed by orbax's ``CheckpointManager``: each save is a
    step directory written under a temporary name and committed by a rename
    (or a commit file on cloud storage); only the latest is kept; leftovers of
    an interrupted save are cleaned up when the manager opens. ``asynchronous``
    writes in the background (the next save or :meth:`close` waits for it).
    """

    def __init__(self, directory: str | os.PathLike, *, asynchronous: bool = False):
        self.directory = epath.Path(directory).absolute()
        self.asynchronous = asynchronous
        self._manager: ocp.CheckpointManager | None = None

    def _open(self) -> ocp.CheckpointManager:
        if self._manager is None:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=1, enable_async_checkpointing=self.asynchronous, cleanup_tmp_directories=True
            )
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        return self._manager

    def save(self, state: Any, progress: dict) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(progress))
        self._open().save(int(state.step), args=args, force=True)

    def restore(self, target: Any) -> tuple[Any, dict] | None:
        """``(state, progress)`` of the latest checkpoint (``state`` shaped like
        ``target``), or ``None`` when there is none."""
        if not self.directory.exists():
            return None
        manager = self._open()
        step = manager.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), progress=ocp.args.JsonRestore())
        restored = manager.restore(step, args=args)
        # Host arrays: the caller places them (replicated over a mesh, possibly across processes).
        state = jax.tree.unflatten(jax.tree.structure(target), jax.device_get(jax.tree.leaves(restored.state)))
        return state, dict(restored.progress)

    def close(self) -> None:
        """Wait for pending writes and release the manager."""
        if self._manager is not None:
            self._manager.wait_until_finished()
            self._manager.close()
            self._manager = None

    def clear(self) -> None:
        """Delete every checkpoint (process 0; a barrier follows)."""
        self.close()
        remove_tree(self.directory)
        sync(f"checkpoints:{self.directory}:clear")
