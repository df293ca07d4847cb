"""Pytrees on disk, written so that an interrupted write is never read.

A *tree artifact* is a directory holding the arrays (``arrays.npz``: one numpy
archive with the tree's structure, written to a temporary and renamed into
place) and a JSON file named after the directory (``ticket/ticket.json``,
``trained/trained.json``) written last: the artifact is complete exactly when
that file exists. Replacing an artifact removes the file first, so a crash
mid-way leaves an incomplete artifact that the next run writes again, never a
complete-looking one with missing arrays. Tree artifacts hold nested dicts (and
lists) of arrays: tickets, trained weights, rewind states. Artifacts written by
lth_jax before December 2026 (an orbax ``arrays/`` directory) are still read.

:class:`StateCheckpoints` keeps the train state and loop progress of an
unfinished stage with orbax's ``CheckpointManager`` (atomic steps, retention of
the latest, optional asynchronous writes, multi-host coordination).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from etils import epath

from lth_jax.results import is_writer, read_json, remove_temporaries, remove_tree, sync, write_bytes, write_json

__all__ = ["save_tree", "load_tree", "tree_meta", "is_complete", "StateCheckpoints"]

ARRAYS = "arrays.npz"
_STRUCTURE = "__structure__"  # the archive's entry holding the tree's structure and dtypes, as JSON


def _marker(directory: epath.Path, name: str | None = None) -> epath.Path:
    return directory / f"{name or directory.name}.json"


def _host_array(x: Any, where: str) -> np.ndarray:
    """``x`` as a numpy array on this host (a global array gathered or read from a local replica)."""
    if isinstance(x, jax.Array):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            raise ValueError(f"tree artifacts hold arrays of numbers; {where} is a PRNG key array: save jax.random.key_data of it")
        if not x.is_fully_addressable:
            if x.is_fully_replicated:
                x = x.addressable_data(0)
            else:
                from jax.experimental import multihost_utils

                x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(x)


def _flatten(tree: Any, leaves: list[np.ndarray], where: str = "tree") -> Any:
    """The JSON structure of ``tree`` (dicts and lists; a leaf is its index in ``leaves``)."""
    if isinstance(tree, Mapping):
        bad = [k for k in tree if not isinstance(k, str)]
        if bad:
            raise ValueError(f"tree artifacts need string dict keys; {where} has the key {bad[0]!r}")
        return {k: _flatten(v, leaves, f"{where}[{k!r}]") for k, v in tree.items()}
    named_tuple = hasattr(tree, "_fields")
    if isinstance(tree, (list, tuple)) and not named_tuple:
        return [_flatten(v, leaves, f"{where}[{i}]") for i, v in enumerate(tree)]
    is_array = hasattr(tree, "shape") or isinstance(tree, (bool, int, float, np.generic))
    if named_tuple or not is_array:  # None, NamedTuples (optax states: checkpoint those), other objects
        raise ValueError(f"tree artifacts hold nested dicts and lists of arrays; {where} is a {type(tree).__name__}")
    leaves.append(_host_array(tree, where))
    return len(leaves) - 1


def _unflatten(structure: Any, arrays: dict[int, np.ndarray]) -> Any:
    if isinstance(structure, dict):
        return {k: _unflatten(v, arrays) for k, v in structure.items()}
    if isinstance(structure, list):
        return [_unflatten(v, arrays) for v in structure]
    return arrays[structure]


def _encode(tree: Any) -> bytes:
    """``tree`` as a numpy archive: its leaves as entries ``0``, ``1``, ... and its structure."""
    leaves: list[np.ndarray] = []
    structure = _flatten(tree, leaves)
    dtypes = {}
    entries = {}
    for i, leaf in enumerate(leaves):
        if leaf.dtype.type.__module__ != "numpy":  # bfloat16 and other ml_dtypes: stored as their bits
            dtypes[str(i)] = leaf.dtype.name
            leaf = leaf.view(f"u{leaf.dtype.itemsize}")
        entries[str(i)] = leaf
    header = json.dumps({"tree": structure, "dtypes": dtypes}).encode()
    buffer = io.BytesIO()
    np.savez(buffer, **entries, **{_STRUCTURE: np.frombuffer(header, np.uint8)})
    return buffer.getvalue()


def _decode(data: bytes) -> Any:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        header = json.loads(archive[_STRUCTURE].tobytes())
        arrays = {}
        for name in archive.files:
            if name != _STRUCTURE:
                leaf = archive[name]
                arrays[int(name)] = leaf.view(np.dtype(header["dtypes"][name])) if name in header["dtypes"] else leaf
    return _unflatten(header["tree"], arrays)


def _save_arrays(directory: epath.Path, tree: Any) -> None:
    """Write the arrays of ``tree`` to ``directory/arrays.npz`` (process 0; every process converts its arrays)."""
    write_bytes(directory / ARRAYS, _encode(tree))


def is_complete(directory: str | os.PathLike, name: str | None = None) -> bool:
    """Whether ``directory`` holds a complete tree artifact (its JSON is ``<name>.json``,
    by default named after the directory)."""
    return _marker(epath.Path(directory), name).exists()


def save_tree(directory: str | os.PathLike, tree: Any, meta: dict | None = None, *, name: str | None = None) -> None:
    """Write ``tree`` (nested dicts and lists of arrays) and the JSON ``meta`` (as
    ``<name>.json``) as a tree artifact, replacing one that exists."""
    directory = epath.Path(directory).absolute()
    if is_writer():
        directory.mkdir(parents=True, exist_ok=True)
    remove_temporaries(directory)  # what an interrupted write of this artifact left
    remove_tree(_marker(directory, name))
    sync(f"save_tree:{directory}:begin")
    _save_arrays(directory, tree)
    write_json(_marker(directory, name), meta or {})
    sync(f"save_tree:{directory}:end")


def tree_meta(directory: str | os.PathLike, name: str | None = None) -> dict:
    """The JSON written with a complete tree artifact."""
    directory = epath.Path(directory)
    if not is_complete(directory, name):
        raise FileNotFoundError(f"no complete checkpoint at {directory} (no {_marker(directory, name).name})")
    return read_json(_marker(directory, name))


def _load_orbax(directory: epath.Path, target: Any) -> Any:
    """The arrays of an artifact written by an older lth_jax (orbax, ``arrays/``)."""
    import orbax.checkpoint as ocp

    checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())
    if target is None:
        return checkpointer.restore(directory / "arrays")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    return checkpointer.restore(directory / "arrays", abstract)


def load_tree(directory: str | os.PathLike, target: Any = None, *, name: str | None = None) -> Any:
    """The arrays of a complete tree artifact, as numpy arrays.

    With ``target`` (a tree of arrays or ``ShapeDtypeStruct``s) the result has
    exactly the target's tree structure (optax NamedTuples included), and every
    leaf is checked against the target's shape.
    """
    directory = epath.Path(directory).absolute()
    tree_meta(directory, name)  # complete, or a one-line FileNotFoundError
    path = directory / ARRAYS
    tree = _decode(path.read_bytes()) if path.exists() else _load_orbax(directory, target)
    if target is None:
        return tree
    leaves, structure = jax.tree.flatten(target)
    saved = jax.tree.leaves(tree)
    if len(saved) != len(leaves):
        raise ValueError(f"{directory} holds {len(saved)} arrays; the target has {len(leaves)}")
    for got, want in zip(saved, leaves):
        if np.shape(got) != np.shape(want):
            raise ValueError(f"{directory} holds an array of shape {np.shape(got)} where the target has {np.shape(want)}")
    return jax.tree.unflatten(structure, saved)


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
        self._manager = None  # an orbax CheckpointManager, opened on first use

    def _open(self):
        if self._manager is None:
            import orbax.checkpoint as ocp  # imported when a run checkpoints its train state

            options = ocp.CheckpointManagerOptions(
                max_to_keep=1, enable_async_checkpointing=self.asynchronous, cleanup_tmp_directories=True
            )
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        return self._manager

    def save(self, state: Any, progress: dict) -> None:
        import orbax.checkpoint as ocp

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
        import orbax.checkpoint as ocp

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
