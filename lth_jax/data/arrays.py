"""In-memory datasets: arrays, deterministic epoch order, padded batches."""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

__all__ = ["ArrayDataset"]


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """Inputs ``x`` and labels ``y`` (leading axis = examples), held in host memory.

    ``batches`` yields dicts ``{'x', 'y', 'weight'}`` of a fixed batch size. The
    order of epoch ``e`` is a permutation drawn from ``numpy.random.default_rng([seed, e])``:
    it depends only on the seed and the epoch, so a run resumed at any step sees
    the same batches as an uninterrupted one. A final partial batch is padded to
    the batch size with weight-0 examples (one compiled shape; exact means), or
    dropped with ``drop_remainder=True``.
    """

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} examples but y has {len(self.y)}")
        if len(self.x) == 0:
            raise ValueError("the dataset is empty")

    def __len__(self) -> int:
        return len(self.x)

    def steps_per_epoch(self, batch_size: int, drop_remainder: bool = False) -> int:
        n = len(self)
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if drop_remainder and batch_size > n:
            raise ValueError(f"batch_size={batch_size} is larger than the {n} examples and drop_remainder is set")
        return n // batch_size if drop_remainder else -(-n // batch_size)

    def batches(
        self,
        batch_size: int,
        *,
        seed: int | None = None,
        epoch: int = 0,
        start: int = 0,
        drop_remainder: bool = False,
    ) -> Iterator[dict]:
        """Batches ``start, start+1, ...`` of epoch ``epoch``; shuffled when ``seed`` is given."""
        n = len(self)
        steps = self.steps_per_epoch(batch_size, drop_remainder)
        order = np.random.default_rng([seed, epoch]).permutation(n) if seed is not None else np.arange(n)
        for b in range(start, steps):
            idx = order[b * batch_size : (b + 1) * batch_size]
            weight = np.ones(batch_size, np.float32)
            if len(idx) < batch_size:
                weight[len(idx) :] = 0.0
                idx = np.concatenate([idx, np.zeros(batch_size - len(idx), idx.dtype)])
            yield {"x": self.x[idx], "y": self.y[idx], "weight": weight}
