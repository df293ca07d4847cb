"""The thesis's parallel-task datasets by name (Moons+Circles, parallel moons, MNIST+Fashion-MNIST)."""

from __future__ import annotations

import numpy as np

from lth_jax.data.arrays import ArrayDataset, TaskData, standardize
from lth_jax.data.synthetic import parallel_tasks
from lth_jax.data.tfds import read_split
from lth_jax.errors import UserError

__all__ = ["TASK_DATASETS", "load_task_data", "mnist_fashion", "single_image_task"]

TASK_DATASETS = ("moons_circles", "parallel_moons", "mnist_fashion", "mnist", "fashion_mnist")


def _flat_images(name: str, split: str, data_dir, download) -> tuple[np.ndarray, np.ndarray]:
    arrays = read_split(name, split, data_dir=data_dir, download=download)
    return arrays["image"].reshape(len(arrays["image"]), -1).astype(np.float32), arrays["label"].astype(np.int32)


def mnist_fashion(data_dir: str | None = None, download: bool = False) -> TaskData:
    """MNIST + Fashion-MNIST side by side: raw pixels flattened (784 each, MNIST
    first), image i of one paired with image i of the other, labels
    ``[mnist, fashion]``, per-pixel standardization fitted on train."""
    splits = {}
    for split in ("train", "test"):
        xm, ym = _flat_images("mnist", split, data_dir, download)
        xf, yf = _flat_images("fashion_mnist", split, data_dir, download)
        n = min(len(xm), len(xf))
        splits[split] = (np.concatenate([xm[:n], xf[:n]], axis=1), np.stack([ym[:n], yf[:n]], axis=1))
    x_train, x_test = standardize(splits["train"][0], splits["test"][0])
    return TaskData(
        train=ArrayDataset(x_train, splits["train"][1]),
        test=ArrayDataset(x_test, splits["test"][1]),
        input_tasks=(0,) * 784 + (1,) * 784,
        output_tasks=(0,) * 10 + (1,) * 10,
        task_names=("mnist", "fashion_mnist"),
        classes=(10, 10),
        image_shape=(28, 28),
    )


def single_image_task(name: str, data_dir: str | None = None, download: bool = False) -> TaskData:
    """MNIST or Fashion-MNIST alone (E9): flattened, standardized, labels ``[label]``."""
    x_train, y_train = _flat_images(name, "train", data_dir, download)
    x_test, y_test = _flat_images(name, "test", data_dir, download)
    x_train, x_test = standardize(x_train, x_test)
    return TaskData(
        train=ArrayDataset(x_train, y_train[:, None]),
        test=ArrayDataset(x_test, y_test[:, None]),
        input_tasks=(0,) * x_train.shape[1],
        output_tasks=(0,) * 10,
        task_names=(name,),
        classes=(10,),
        image_shape=(28, 28),
    )


def load_task_data(
    name: str, *, data_seed: int = 0, num_tasks: int = 3, data_dir: str | None = None, download: bool = False
) -> TaskData:
    """``moons_circles``, ``parallel_moons`` (``num_tasks`` moons), ``mnist_fashion``, ``mnist``, ``fashion_mnist``."""
    if name == "moons_circles":
        return parallel_tasks(("circles", "moons"), data_seed)
    if name == "parallel_moons":
        if num_tasks < 1:
            raise UserError(f"num_tasks={num_tasks} must be >= 1")
        return parallel_tasks(("moons",) * num_tasks, data_seed)
    if name == "mnist_fashion":
        return mnist_fashion(data_dir, download)
    if name in ("mnist", "fashion_mnist"):
        return single_image_task(name, data_dir, download)
    raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(TASK_DATASETS)}")
