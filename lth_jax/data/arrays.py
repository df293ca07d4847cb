"""In-memory datasets: arrays, deterministic epoch order, padded batches."""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from lth_jax.errors import UserError

__all__ = ["ArrayDataset", "TaskData", "standardize", "epoch_order", "steps_per_epoch", "local_rows", "padded_chunks", "EpochOrders"]


def steps_per_epoch(n: int, batch_size: int, drop_remainder: bool = False) -> int:
    """Batches per epoch of ``n`` examples (a partial last batch counts unless dropped)."""
    if batch_size < 1:
        raise UserError(f"batch_size={batch_size} must be >= 1")
    if drop_remainder and batch_size > n:
        raise UserError(f"batch_size={batch_size} is larger than the {n} examples and drop_remainder is set")
    return n // batch_size if drop_remainder else -(-n // batch_size)


def epoch_order(n: int, batch_size: int, *, seed=None, epoch: int = 0, drop_remainder: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The example indices ``[steps, batch_size]`` of epoch ``epoch`` and their weights.

    Shuffled by ``numpy.random.default_rng([*seed, epoch])`` when ``seed`` (an int or
    a sequence of ints) is given; a partial last batch is padded with index 0 at
    weight 0. The order depends only on the seed and the epoch.
    """
    steps = steps_per_epoch(n, batch_size, drop_remainder)
    if seed is None:
        order = np.arange(n)
    else:
        seed = [int(seed)] if np.ndim(seed) == 0 else [int(s) for s in seed]
        order = np.random.default_rng(seed + [int(epoch)]).permutation(n)
    order = order[: steps * batch_size]
    weights = np.zeros(steps * batch_size, np.float32)
    weights[: len(order)] = 1.0
    indices = np.zeros(steps * batch_size, np.int64)
    indices[: len(order)] = order
    return indices.reshape(steps, batch_size), weights.reshape(steps, batch_size)


def local_rows(batch_size: int, shard: tuple[int, int]) -> slice:
    """The rows of a global batch that process ``shard[0]`` of ``shard[1]`` feeds."""
    index, count = shard
    if batch_size % count:
        raise UserError(f"batch_size={batch_size} is not divisible by the {count} processes")
    local = batch_size // count
    return slice(index * local, (index + 1) * local)


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """Inputs ``x`` and labels ``y`` (leading axis = examples), held in host memory.

    ``batches`` yields dicts ``{'x', 'y', 'weight'}`` of a fixed batch size in the
    order of :func:`epoch_order`: a run resumed at any step sees the same batches
    as an uninterrupted one. A final partial batch is padded to the batch size
    with weight-0 examples (one compiled shape; exact means), or dropped with
    ``drop_remainder=True``. With ``shard=(i, n)`` each batch is process ``i``'s
    rows of the global batch (multi-host).
    """

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise UserError(f"x has {len(self.x)} examples but y has {len(self.y)}")
        if len(self.x) == 0:
            raise UserError("the dataset is empty")

    def __len__(self) -> int:
        return len(self.x)

    def steps_per_epoch(self, batch_size: int, drop_remainder: bool = False) -> int:
        return steps_per_epoch(len(self), batch_size, drop_remainder)

    def epoch_indices(self, batch_size: int, *, seed=None, epoch: int = 0, drop_remainder: bool = False):
        """See :func:`epoch_order`."""
        return epoch_order(len(self), batch_size, seed=seed, epoch=epoch, drop_remainder=drop_remainder)

    def batches(
        self,
        batch_size: int,
        *,
        seed=None,
        epoch: int = 0,
        start: int = 0,
        drop_remainder: bool = False,
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[dict]:
        """Batches ``start, start+1, ...`` of epoch ``epoch``; shuffled when ``seed`` is given."""
        indices, weights = self.epoch_indices(batch_size, seed=seed, epoch=epoch, drop_remainder=drop_remainder)
        rows = local_rows(batch_size, shard)
        for idx, weight in zip(indices[start:, rows], weights[start:, rows]):
            yield {"x": self.x[idx], "y": self.y[idx], "weight": weight}

    def split(self, fraction: float, seed: int = 0) -> tuple["ArrayDataset", "ArrayDataset"]:
        """A random ``(1 − fraction, fraction)`` split, e.g. a validation set held out of training."""
        if not 0.0 < fraction < 1.0:
            raise UserError(f"split fraction={fraction!r} is outside the open interval (0, 1)")
        order = np.random.default_rng(seed).permutation(len(self))
        held = int(round(fraction * len(self)))
        if held == 0 or held == len(self):
            raise UserError(f"split fraction={fraction!r} of {len(self)} examples leaves one side empty")
        keep, out = np.sort(order[held:]), np.sort(order[:held])
        return ArrayDataset(self.x[keep], self.y[keep]), ArrayDataset(self.x[out], self.y[out])


@dataclasses.dataclass(frozen=True)
class TaskData:
    """Train/test data of parallel tasks, and which task each input feature and output unit serves.

    ``input_tasks[i]`` / ``output_tasks[j]`` are task ids in declaration order;
    ``classes[t]`` is the number of classes of task ``t`` (2 for a binary task
    with one sigmoid output).
    """

    train: ArrayDataset
    test: ArrayDataset
    input_tasks: tuple[int, ...]
    output_tasks: tuple[int, ...]
    task_names: tuple[str, ...]
    classes: tuple[int, ...]
    image_shape: tuple[int, ...] | None = None  # per task, for heat maps of input features

    @property
    def num_inputs(self) -> int:
        return len(self.input_tasks)

    @property
    def num_outputs(self) -> int:
        return len(self.output_tasks)

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)


def standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale both by the train set's per-feature mean and (population) std;
    zero-variance features get scale 1."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def padded_chunks(data, chunk_size: int):
    """``data`` (with ``x`` and ``y``) as ``[chunks, chunk, ...]`` arrays padded with zeros, and a weight per example (0: padding)."""
    n = len(data)
    chunk = min(n, chunk_size)
    chunks = -(-n // chunk)
    pad = chunks * chunk - n

    def padded(a):
        return np.concatenate([a, np.zeros((pad,) + a.shape[1:], a.dtype)]).reshape((chunks, chunk) + a.shape[1:])

    weight = (np.arange(chunks * chunk) < n).astype(np.float32).reshape(chunks, chunk)
    return padded(np.asarray(data.x)), padded(np.asarray(data.y)), weight


class _Kept:
    """Arrays made on demand and kept while they fit in ``budget`` bytes (none is evicted)."""

    def __init__(self, budget: int):
        self.items, self.budget = {}, budget

    def get(self, key, make):
        found = self.items.get(key)
        if found is None:
            found = make()
            size = sum(a.nbytes for a in found if a.base is None)  # views of a shared array are not counted
            if size <= self.budget:
                self.items[key], self.budget = found, self.budget - size
        return found


class EpochOrders:
    """The epoch orders of ``data`` (its ``epoch_indices``), int32 indices and weights, kept
    for reuse while they fit in ``budget`` bytes: every IMP level replays the same epochs.
    ``block`` stacks consecutive epochs (kept in as much again: a level's first chunk asks
    every level for the same one)."""

    def __init__(self, data, batch_size: int, drop_remainder: bool, budget: int):
        self.data, self.batch_size, self.drop_remainder = data, batch_size, drop_remainder
        self._orders, self._blocks, self._weights = _Kept(budget), _Kept(budget), None

    def order(self, seed, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        def make():
            indices, weights = self.data.epoch_indices(self.batch_size, seed=seed, epoch=epoch, drop_remainder=self.drop_remainder)
            if self._weights is None or not np.array_equal(weights, self._weights):
                self._weights = weights
            return indices.astype(np.int32), self._weights.view()  # the weights are kept once while they repeat

        return self._orders.get((tuple(np.ravel(seed).tolist()), epoch), make)

    def block(self, seed, epoch: int, n_epochs: int) -> tuple[np.ndarray, np.ndarray]:
        """The orders of ``n_epochs`` epochs from ``epoch``, stacked: ``[n_epochs, steps, batch]``."""
        return self._blocks.get((tuple(np.ravel(seed).tolist()), epoch, n_epochs), lambda: tuple(
            np.stack(a) for a in zip(*(self.order(seed, epoch + j) for j in range(n_epochs)))))
