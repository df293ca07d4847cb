"""The run-directory contract: a resumable stage of work in its own directory.

Every unit of work that takes long enough to be interrupted is a :class:`Stage`:
an IMP level, a transferred or random ticket trained on a target, the target's
own IMP run, a thesis experiment. Its directory holds::

    settings.json    the settings that change its results
    checkpoints/     the train state of the unfinished stage (orbax CheckpointManager)
    <artifact>/      tree artifacts: tickets, trained weights, rewind states
    history.jsonl    one record per epoch
    record.json      the stage's result, written last: the stage is done

The contract:

- **Settings are compared on resume.** A stage whose ``settings.json`` differs
  from what this run asks is refused with a :class:`~lth_jax.errors.UserError`
  naming the first differing key; with equal settings a done stage is read, an
  unfinished one continues from its last checkpoint.
- **Writes are atomic** (:mod:`lth_jax.results`, :mod:`lth_jax.checkpoint`),
  ``record.json`` comes last, and what an interrupted write left behind is
  removed when the stage opens: a crash at any moment leaves a directory that
  the same command resumes.
- **Multi-host safe**: process 0 writes JSON and deletes; every process takes
  part in orbax's writes; a barrier follows each change others must see.
  Paths go through ``etils.epath`` (local disks and ``gs://``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from etils import epath

from lth_jax.checkpoint import StateCheckpoints, is_complete, load_tree, save_tree, tree_meta
from lth_jax.errors import UserError
from lth_jax.results import read_json, remove_temporaries, remove_tree, sync, write_json, write_jsonl

__all__ = ["Stage", "first_difference", "as_json"]


def as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value, default=lambda v: list(v) if isinstance(v, (tuple, set)) else str(v)))


def first_difference(old: Any, new: Any, prefix: str = ""):
    """``(dotted key, old, new)`` of the first leaf where two JSON trees differ, or ``None``."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            found = first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if old == new else (prefix.rstrip("."), old, new)


class Stage:
    """A resumable unit of work in ``directory`` with the given ``settings``.

    ``checkpoint_async``: write train-state checkpoints in the background.
    """

    SETTINGS, RECORD, HISTORY, CHECKPOINTS = "settings.json", "record.json", "history.jsonl", "checkpoints"

    def __init__(self, directory: str | os.PathLike, settings: dict, *, checkpoint_async: bool = False):
        self.directory = epath.Path(directory)
        self.settings = as_json(settings)
        self.checkpoints = StateCheckpoints(self.directory / self.CHECKPOINTS, asynchronous=checkpoint_async)

    def __repr__(self) -> str:
        return f"Stage({os.fspath(self.directory)!r})"

    # ------------------------------------------------------------------ settings

    def saved_settings(self) -> dict | None:
        path = self.directory / self.SETTINGS
        return read_json(path) if path.exists() else None

    def check(self) -> None:
        """Refuse (``UserError``) when the directory holds this stage with other settings.

        Writes nothing, so a whole plan of stages can be checked before any runs.
        """
        saved = self.saved_settings()
        if saved is None:
            return
        difference = first_difference(saved, self.settings)
        if difference:
            key, old, new = difference
            raise UserError(
                f"workdir {os.fspath(self.directory)} holds a run with {key}={old!r}; this run asks {key}={new!r}. "
                "Use another workdir, or the same settings to resume"
            )

    def open(self) -> "Stage":
        """Check the settings, clear what interrupted writes left, record the settings."""
        self.check()
        remove_temporaries(self.directory)
        if self.done:  # a run killed while it deleted the checkpoints of a finished stage
            remove_tree(self.directory / self.CHECKPOINTS)
        if self.saved_settings() is None:
            write_json(self.directory / self.SETTINGS, self.settings)
        sync(f"stage:{os.fspath(self.directory)}:open")
        return self

    # ------------------------------------------------------------------ state

    @property
    def done(self) -> bool:
        return (self.directory / self.RECORD).exists()

    def record(self) -> dict:
        """The record of a done stage."""
        return read_json(self.directory / self.RECORD)

    # ------------------------------------------------------------------ artifacts

    def path(self, name: str) -> epath.Path:
        return self.directory / name

    def has(self, name: str) -> bool:
        """Whether the tree artifact ``name`` (e.g. ``ticket``, ``trained``) is complete."""
        return is_complete(self.path(name))

    def save(self, name: str, tree: Any, meta: dict | None = None) -> None:
        """Write the tree artifact ``name``."""
        save_tree(self.path(name), tree, meta)

    def load(self, name: str, target: Any = None) -> Any:
        return load_tree(self.path(name), target)

    def meta(self, name: str) -> dict:
        return tree_meta(self.path(name))

    # ------------------------------------------------------------------ checkpoints and the end

    def resume(self, state: Any) -> tuple[Any, dict | None]:
        """The latest checkpointed state (shaped like ``state``) and its progress,
        or ``(state, None)`` when the stage has no checkpoint."""
        restored = self.checkpoints.restore(state)
        return (state, None) if restored is None else restored

    def save_checkpoint(self, state: Any, progress: dict) -> None:
        self.checkpoints.save(state, progress)

    def finish(self, record: dict, history: list[dict] | None = None) -> None:
        """Write the history and ``record.json`` (last), then delete the checkpoints."""
        self.checkpoints.close()
        if history is not None:
            write_jsonl(self.directory / self.HISTORY, history)
        write_json(self.directory / self.RECORD, record)
        sync(f"stage:{os.fspath(self.directory)}:finish")
        self.checkpoints.clear()
