"""Tickets and train states on disk: orbax for arrays, atomic JSON for metadata.

A ticket directory holds everything transfer needs::

    ticket/
      arrays/       orbax: {'mask', 'params', 'batch_stats'}  (params = θ_k ⊙ m)
      ticket.json   model, dataset, classes, level, weights remaining, rewind step, ...

``ticket.json`` is written last, so a directory with it is complete. Train-state
checkpoints of an unfinished level (:class:`StateCheckpointer`) keep the latest
state and the ``fit`` progress; orbax writes each save to a temporary directory
and renames it, and a ``latest.json`` written after it names the complete one.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from lth_jax.results import read_json, write_json
from lth_jax.train import FitProgress

__all__ = [
    "Ticket",
    "save_tree",
    "load_tree",
    "save_ticket",
    "load_ticket",
    "is_ticket",
    "StateCheckpointer",
]


def _checkpointer() -> ocp.Checkpointer:
    return ocp.Checkpointer(ocp.StandardCheckpointHandler())


def save_tree(directory, tree: Any) -> None:
    """Save a pytree of arrays to ``directory`` (replaced if it exists)."""
    directory = Path(directory).absolute()
    directory.parent.mkdir(parents=True, exist_ok=True)
    _checkpointer().save(directory, tree, force=True)


def load_tree(directory, target: Any = None) -> Any:
    """Load a pytree saved by :func:`save_tree`.

    With ``target`` (a tree of arrays or ``ShapeDtypeStruct``s), the result has
    exactly the target's tree structure (optax NamedTuples included).
    """
    directory = Path(directory).absolute()
    if not directory.exists():
        raise FileNotFoundError(f"no checkpoint at {directory}")
    if target is None:
        return _checkpointer().restore(directory)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    restored = _checkpointer().restore(directory, abstract)
    return jax.tree.unflatten(jax.tree.structure(target), jax.tree.leaves(restored))


@dataclasses.dataclass
class Ticket:
    """A winning (or random) ticket: the mask and the weights to start from.

    ``params`` are the rewind weights with the mask applied (``θ_k ⊙ m``),
    ``batch_stats`` the BatchNorm statistics at the rewind step (``{}`` if none),
    ``info`` the metadata of ``ticket.json``.
    """

    mask: Any
    params: Any
    batch_stats: Any
    info: dict


def save_ticket(directory, ticket: Ticket) -> None:
    directory = Path(directory)
    save_tree(directory / "arrays", {"mask": ticket.mask, "params": ticket.params, "batch_stats": ticket.batch_stats})
    write_json(directory / "ticket.json", ticket.info)


def is_ticket(directory) -> bool:
    return (Path(directory) / "ticket.json").exists()


def load_ticket(directory) -> Ticket:
    """Load a ticket directory written by :func:`save_ticket`."""
    directory = Path(directory)
    if not is_ticket(directory):
        raise FileNotFoundError(f"{directory} is not a ticket directory (no ticket.json)")
    arrays = load_tree(directory / "arrays")
    return Ticket(arrays["mask"], arrays["params"], arrays.get("batch_stats") or {}, read_json(directory / "ticket.json"))


class StateCheckpointer:
    """The latest train state and ``fit`` progress of an unfinished level."""

    def __init__(self, directory):
        self.directory = Path(directory)

    def save(self, state: Any, progress: dict) -> None:
        step = int(state.step)
        save_tree(self.directory / f"step_{step}", state)
        write_json(self.directory / f"step_{step}.json", progress)
        write_json(self.directory / "latest.json", {"step": step})
        for old in self.directory.glob("step_*"):
            if old.name not in (f"step_{step}", f"step_{step}.json"):
                shutil.rmtree(old) if old.is_dir() else old.unlink()

    def latest_step(self) -> int | None:
        latest = self.directory / "latest.json"
        return int(read_json(latest)["step"]) if latest.exists() else None

    def restore(self, target: Any) -> tuple[Any, dict] | None:
        """``(state, progress)`` of the latest checkpoint, or ``None`` if there is none."""
        step = self.latest_step()
        if step is None:
            return None
        state = load_tree(self.directory / f"step_{step}", target)
        return state, read_json(self.directory / f"step_{step}.json")

    def save_progress(self, state: Any, progress: FitProgress) -> None:
        """``fit``'s ``checkpoint_fn``."""
        self.save(state, progress.to_dict())

    def resume(self, state: Any) -> tuple[Any, FitProgress | None]:
        """The latest checkpointed state and its ``fit`` progress, or ``(state, None)`` when there is none."""
        restored = self.restore(state)
        return (state, None) if restored is None else (restored[0], FitProgress.from_dict(restored[1]))

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
