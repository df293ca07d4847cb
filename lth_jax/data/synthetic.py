"""Synthetic parallel-task data of the thesis (SPEC §2.1), from scikit-learn's generators."""

from __future__ import annotations

import dataclasses

import numpy as np

from lth_jax.data.arrays import ArrayDataset

__all__ = ["TaskData", "moons_circles", "standardize"]


@dataclasses.dataclass(frozen=True)
class TaskData:
    """A train/test pair of parallel-task data and which task each input and output belongs to."""

    train: ArrayDataset
    test: ArrayDataset
    input_tasks: tuple[int, ...]
    output_tasks: tuple[int, ...]
    task_names: tuple[str, ...]

    @property
    def num_inputs(self) -> int:
        return len(self.input_tasks)

    @property
    def num_outputs(self) -> int:
        return len(self.output_tasks)


def standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale both by the train set's per-feature mean and (population) std;
    zero-variance features get scale 1."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def moons_circles(data_seed: int = 0, n_samples: int = 2000, noise: float = 0.1, factor: float = 0.35) -> TaskData:
    """Moons+Circles exactly as the thesis builds it.

    numpy's legacy RNG seeded with ``data_seed`` draws ``make_circles`` then
    ``make_moons`` (a private ``RandomState`` gives the same stream as seeding the
    global one, without touching global state); row i of each is paired; inputs
    ``[circle_x, circle_y, moon_x, moon_y]``, labels ``[circle, moon]``;
    ``train_test_split(test_size=0.5, random_state=42)``; standardized with the
    train statistics.
    """
    from sklearn.datasets import make_circles, make_moons
    from sklearn.model_selection import train_test_split

    rng = np.random.RandomState(data_seed)
    xc, yc = make_circles(n_samples=n_samples, noise=noise, factor=factor, random_state=rng)
    xm, ym = make_moons(n_samples=n_samples, noise=noise, random_state=rng)
    x = np.concatenate([xc, xm], axis=1)
    y = np.stack([yc, ym], axis=1).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.5, random_state=42)
    x_train, x_test = standardize(x_train, x_test)
    return TaskData(
        train=ArrayDataset(x_train, y_train),
        test=ArrayDataset(x_test, y_test),
        input_tasks=(0, 0, 1, 1),
        output_tasks=(0, 1),
        task_names=("circles", "moons"),
    )
