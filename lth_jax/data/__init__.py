"""Datasets: in-memory arrays and the synthetic data of the thesis."""

from lth_jax.data.arrays import ArrayDataset, TaskData, standardize

__all__ = ["ArrayDataset", "TaskData", "standardize"]
