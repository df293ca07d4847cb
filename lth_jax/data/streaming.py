"""Streaming image data (ImageNet, Places365) read from TFDS by worker threads.

Training examples get a random-resized crop (scale 0.08-1, aspect 3/4-4/3, as
torchvision's ``RandomResizedCrop``) to ``size`` and a random horizontal flip;
evaluation resizes the shorter side to ``size · 256 / 224`` and takes the centre
crop. Each example's randomness comes from ``default_rng([seed, epoch, index])``,
so an epoch is reproducible and a resumed run sees the same batches. Batches are
uint8; normalization runs on the device.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np

from lth_jax.data.arrays import epoch_order, local_rows, steps_per_epoch
from lth_jax.data.tfds import open_source

__all__ = ["StreamingDataset", "random_resized_crop", "center_crop"]


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> np.ndarray:
    h, w = image.shape[:2]
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            return _resize(image[top : top + ch, left : left + cw], size, size)
    return center_crop(image, size, size)


def center_crop(image: np.ndarray, size: int, resize: int) -> np.ndarray:
    """Resize the shorter side to ``resize``, then cut the central ``size``×``size``."""
    h, w = image.shape[:2]
    scale = resize / min(h, w)
    nh, nw = max(size, int(round(h * scale))), max(size, int(round(w * scale)))
    image = _resize(image, nh, nw)
    top, left = (nh - size) // 2, (nw - size) // 2
    return image[top : top + size, left : left + size]


class StreamingDataset:
    """A TFDS split read lazily; the interface of :class:`~lth_jax.data.ArrayDataset`."""

    def __init__(self, name: str, split: str, *, train: bool, size: int = 224, data_dir=None, download=False, workers: int = 16):
        self.name, self.split, self.train, self.size = name, split, train, size
        self.resize = int(round(size * 256 / 224))
        self.source = open_source(name, split, data_dir, download)
        self.workers = workers

    def __len__(self) -> int:
        return len(self.source)

    def steps_per_epoch(self, batch_size: int, drop_remainder: bool = False) -> int:
        return steps_per_epoch(len(self), batch_size, drop_remainder)

    def _example(self, index: int, seed, epoch: int) -> tuple[np.ndarray, int]:
        record = self.source[int(index)]
        image = np.asarray(record["image"], np.uint8)
        if image.ndim == 2 or image.shape[-1] == 1:
            image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=-1)
        if self.train:
            seeds = [int(s) for s in np.atleast_1d(0 if seed is None else seed)]
            rng = np.random.default_rng(seeds + [int(epoch), int(index)])
            image = random_resized_crop(image, self.size, rng)
            if rng.random() < 0.5:
                image = image[:, ::-1]
        else:
            image = center_crop(image, self.size, self.resize)
        return np.ascontiguousarray(image), int(record["label"])

    def batches(self, batch_size: int, *, seed=None, epoch: int = 0, start: int = 0, drop_remainder: bool = False, shard=(0, 1)) -> Iterator[dict]:
        indices, weights = epoch_order(len(self), batch_size, seed=seed if self.train else None, epoch=epoch, drop_remainder=drop_remainder)
        rows = local_rows(batch_size, shard)
        indices, weights = indices[start:, rows], weights[start:, rows]
        with ThreadPoolExecutor(self.workers) as pool:

            def submit(b):
                return [pool.submit(self._example, i, seed, epoch) for i in indices[b]]

            pending = submit(0) if len(indices) else None
            for b in range(len(indices)):
                current = pending
                pending = submit(b + 1) if b + 1 < len(indices) else None  # prefetch the next batch
                examples = [f.result() for f in current]
                yield {
                    "x": np.stack([e[0] for e in examples]),
                    "y": np.asarray([e[1] for e in examples], np.int32),
                    "weight": weights[b],
                }
