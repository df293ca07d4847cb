"""Synthetic parallel-task data of the thesis (Moons+Circles), from scikit-learn's generators."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lth_jax.data.arrays import ArrayDataset, TaskData, standardize
from lth_jax.errors import UserError

__all__ = ["TASK_KINDS", "parallel_tasks", "moons_circles"]

TASK_KINDS = ("circles", "moons")


def parallel_tasks(
    kinds: Sequence[str],
    data_seed: int = 0,
    n_samples: int = 2000,
    noise: float = 0.1,
    factor: float = 0.35,
) -> TaskData:
    """Independent two-feature binary tasks side by side.

    numpy's legacy RNG seeded with ``data_seed`` draws each task's generator in
    order (``make_circles(n, noise, factor)`` or ``make_moons(n, noise)``,
    shuffled); a private ``RandomState`` gives the same stream as seeding the
    global one, without touching global state. Row i of every task is paired;
    inputs are the tasks' two features in order, labels one per task;
    ``train_test_split(test_size=0.5, random_state=42)``; standardized with the
    train statistics. Several tasks of one kind differ because the stream moves on.
    """
    from sklearn.datasets import make_circles, make_moons
    from sklearn.model_selection import train_test_split

    kinds = tuple(kinds)
    if not kinds:
        raise UserError("parallel_tasks needs at least one task")
    for kind in kinds:
        if kind not in TASK_KINDS:
            raise UserError(f"unknown task kind {kind!r}; known kinds: {', '.join(TASK_KINDS)}")
    rng = np.random.RandomState(data_seed)
    xs, ys = [], []
    for kind in kinds:
        if kind == "circles":
            x, y = make_circles(n_samples=n_samples, noise=noise, factor=factor, random_state=rng)
        else:
            x, y = make_moons(n_samples=n_samples, noise=noise, random_state=rng)
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs, axis=1)
    y = np.stack(ys, axis=1).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.5, random_state=42)
    x_train, x_test = standardize(x_train, x_test)
    names = tuple(kind if kinds.count(kind) == 1 else f"{kind}{kinds[:t].count(kind)}" for t, kind in enumerate(kinds))
    return TaskData(
        train=ArrayDataset(x_train, y_train),
        test=ArrayDataset(x_test, y_test),
        input_tasks=tuple(t for t in range(len(kinds)) for _ in range(2)),
        output_tasks=tuple(range(len(kinds))),
        task_names=names,
        classes=(2,) * len(kinds),
    )


def moons_circles(data_seed: int = 0, n_samples: int = 2000, noise: float = 0.1, factor: float = 0.35) -> TaskData:
    """Moons+Circles exactly as the thesis builds it: circles drawn first, then
    moons; inputs ``[circle_x, circle_y, moon_x, moon_y]``, labels ``[circle, moon]``."""
    return parallel_tasks(("circles", "moons"), data_seed, n_samples, noise, factor)
