"""Synthetic parallel-task data of the thesis (Moons+Circles).

The generators are scikit-learn's ``make_circles``, ``make_moons`` and
``train_test_split`` rewritten on numpy's legacy ``RandomState`` draw for draw
(the tests compare them with scikit-learn's), so a thesis run does not import
scikit-learn (about a second of start-up).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lth_jax.data.arrays import ArrayDataset, TaskData, standardize
from lth_jax.errors import UserError

__all__ = ["TASK_KINDS", "parallel_tasks", "moons_circles"]

TASK_KINDS = ("circles", "moons")


def _two_arcs(outer_x, outer_y, inner_x, inner_y, rng: np.random.RandomState, noise: float | None):
    """Points of two arcs labelled 0 (outer) and 1 (inner), shuffled, then noised (sklearn's order of draws)."""
    x = np.vstack([np.append(outer_x, inner_x), np.append(outer_y, inner_y)]).T
    y = np.hstack([np.zeros(len(outer_x), dtype=np.intp), np.ones(len(inner_x), dtype=np.intp)])
    order = np.arange(len(x))
    rng.shuffle(order)
    x, y = x[order], y[order]
    if noise is not None:
        x += rng.normal(scale=noise, size=x.shape)
    return x, y


def make_circles(n_samples: int, noise: float | None, factor: float, rng: np.random.RandomState):
    """A large circle holding a small one (``factor`` its radius): ``sklearn.datasets.make_circles``."""
    n_out = n_samples // 2
    n_in = n_samples - n_out
    outer = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    inner = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    return _two_arcs(np.cos(outer), np.sin(outer), np.cos(inner) * factor, np.sin(inner) * factor, rng, noise)


def make_moons(n_samples: int, noise: float | None, rng: np.random.RandomState):
    """Two interleaving half circles: ``sklearn.datasets.make_moons``."""
    n_out = n_samples // 2
    n_in = n_samples - n_out
    outer = np.linspace(0, np.pi, n_out)
    inner = np.linspace(0, np.pi, n_in)
    return _two_arcs(np.cos(outer), np.sin(outer), 1 - np.cos(inner), 1 - np.sin(inner) - 0.5, rng, noise)


def split_half(x, y, seed: int = 42):
    """``train_test_split(x, y, test_size=0.5, random_state=seed)``: a permutation, test rows first."""
    n = len(x)
    n_test = -(-n // 2)
    order = np.random.RandomState(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    return x[train], x[test], y[train], y[test]


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
            x, y = make_circles(n_samples, noise, factor, rng)
        else:
            x, y = make_moons(n_samples, noise, rng)
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs, axis=1)
    y = np.stack(ys, axis=1).astype(np.float32)
    x_train, x_test, y_train, y_test = split_half(x, y)
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
