"""TensorBoard event files of a run, written without TensorFlow (tensorboardX).

A run's ``tensorboard/`` directory holds one TensorBoard *run* per curve family::

    tensorboard/
      levels/            one point per IMP level: weights remaining, test loss and accuracy,
                         epochs (and, for the thesis, structure counts); rewritten by every
                         invocation, so a resumed run shows each level once
      level_03/          the level's per-epoch curves (train and test loss, accuracy)
      seed_1/levels/     ... per seed, when a run trains several

Open it with ``tensorboard --logdir=<workdir>/tensorboard``. Only process 0 writes.
"""

from __future__ import annotations

import functools
import os
import socket
import struct
import time
from typing import Any

import crc32c
from etils import epath

from lth_jax.results import is_writer, remove_tree

__all__ = ["EventLog", "scalars", "event_bytes", "record_bytes"]

_U32, _U64, _F32, _F64 = (struct.Struct(f).pack for f in ("<I", "<Q", "<f", "<d"))
_ZERO = bytes(8)
_PLAIN = {float, int}  # the types of a record's numbers, checked without isinstance (bool is an int, and not a scalar)


def scalars(record: dict, keys=None) -> dict[str, float]:
    """The numeric entries of a record, lists (one value per task) as ``name/i``."""
    out = {}
    for key, value in (record.items() if keys is None else [(k, record[k]) for k in keys if k in record]):
        if type(value) in _PLAIN or (not isinstance(value, bool) and isinstance(value, (int, float))):
            out[key] = float(value)
        elif isinstance(value, (list, tuple)) and value and _numbers(value):
            out.update(zip(_task_tags(key, len(value)), map(float, value)))
    return out


def _numbers(values) -> bool:
    return set(map(type, values)) <= _PLAIN or all(isinstance(v, (int, float)) for v in values)


@functools.lru_cache(maxsize=1024)
def _task_tags(key: str, count: int) -> tuple[str, ...]:
    return tuple(f"{key}/{i}" for i in range(count))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


@functools.lru_cache(maxsize=4096)
def _value_prefix(tag: str) -> bytes:
    """A ``Summary.Value`` field up to its float: tag = 1, then simple_value's key (field 2, 32-bit)."""
    tag_field = _field(1, tag.encode())
    return b"\x0a" + _varint(len(tag_field) + 5) + tag_field + b"\x15"


def event_bytes(wall_time: float, step: int = 0, values: dict[str, float] | None = None, file_version: str = "") -> bytes:
    """A serialized TensorBoard ``Event`` (wall_time = 1, step = 2, file_version = 3, summary = 5
    holding ``Summary.Value`` tag = 1, simple_value = 2): the bytes of the proto's own
    serializer, which leaves zero-valued proto3 fields out (not ``simple_value``, a oneof)."""
    wall = _F64(wall_time)
    out = b"\x09" + wall if wall != _ZERO else b""
    if step:
        out += b"\x10" + _varint(step & (1 << 64) - 1)
    if file_version:
        out += _field(3, file_version.encode())
    if values:
        summary = b"".join([_value_prefix(tag) + _F32(value) for tag, value in values.items()])
        out += b"\x2a" + _varint(len(summary)) + summary
    return out


def _masked_crc(data: bytes) -> int:
    x = crc32c.crc32c(data)
    return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record_bytes(data: bytes) -> bytes:
    """``data`` as a TFRecord, the framing of an event file: its length, the length's
    masked CRC-32C, the data, the data's masked CRC-32C (tensorboardX's record writer's bytes)."""
    header = _U64(len(data))
    return header + _U32(_masked_crc(header)) + data + _U32(_masked_crc(data))


class EventLog:
    """The event files under ``directory`` (``None``: nothing is written)."""

    EPOCH_KEYS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "val_loss", "val_accuracy", "examples_per_second")

    def __init__(self, directory: str | os.PathLike | None):
        self.directory = None if directory is None or not is_writer() else epath.Path(directory)
        self._writers: dict[str, Any] = {}  # a file per run
        self._dirty: set[str] = set()  # runs written since the last flush
        self._runs: dict[tuple, str] = {}  # (seed, level) -> the run of its epochs
        if self.directory is not None:
            remove_tree(self.directory / "levels")  # written anew: a resumed run reports every level again
            for seeds in self.directory.glob("seed_*"):
                remove_tree(seeds / "levels")

    def _write(self, run: str, values: dict[str, float], step: int) -> None:
        """One event holding every scalar of ``values`` at ``step``, written in this thread
        (encoded and framed here: tensorboardX's protos and record writer cost several times
        more per event, and a sweep writes one per seed and epoch)."""
        writer = self._writers.get(run)
        if writer is None:
            writer = self._writers[run] = self._open(run)
        writer.write(record_bytes(event_bytes(time.time(), int(step), values)))
        self._dirty.add(run)

    def _open(self, run: str):
        from tensorboardX.record_writer import open_file  # local, gs:// and s3:// paths

        directory = self.directory / run
        directory.mkdir(parents=True, exist_ok=True)
        writer = open_file(os.fspath(directory / f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}"))
        writer.write(record_bytes(event_bytes(time.time(), file_version="brain.Event:2")))
        return writer

    def _prefix(self, seed: int | None) -> str:
        return "" if seed is None else f"seed_{seed}/"

    def level(self, level: int, values: dict[str, float], seed: int | None = None) -> None:
        """One point per scalar at step ``level``."""
        if self.directory is None:
            return
        self._write(f"{self._prefix(seed)}levels", values, level)
        self.flush()

    def epoch(self, record: dict, by_seed: bool = False) -> None:
        """An epoch record of an IMP run (with its ``level`` and ``seed``; the
        ``on_epoch`` of :func:`lth_jax.imp.run_imp`): a point per curve at step
        ``epoch`` in the level's run (per seed when ``by_seed``)."""
        if self.directory is None:
            return
        key = (record["seed"] if by_seed else None, record.get("level", 0))
        run = self._runs.get(key) or self._runs.setdefault(key, f"{self._prefix(key[0])}level_{key[1]:02d}")
        self._write(run, scalars(record, self.EPOCH_KEYS), record["epoch"])

    def flush(self) -> None:
        """Hand what was written since the last flush to the operating system (no ``fsync``:
        a level's events are written again by a resumed run)."""
        for run in self._dirty:
            self._writers[run].flush()
        self._dirty.clear()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        self._dirty.clear()
