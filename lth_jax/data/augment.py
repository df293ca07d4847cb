"""On-device preprocessing inside the jitted step: random crop with padding,
horizontal flip, normalization (the CIFAR recipe of Morcos et al.). Images arrive as uint8 NHWC."""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp

__all__ = ["random_crop", "random_flip", "normalize", "image_preprocess"]


def random_crop(images: jax.Array, key: jax.Array, padding: int) -> jax.Array:
    """Zero-pad by ``padding`` on every side and cut a random window of the original
    size per image (torchvision's ``RandomCrop(size, padding)``)."""
    if padding <= 0:
        return images
    n, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * padding + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop)(padded, offsets)


def random_flip(images: jax.Array, key: jax.Array) -> jax.Array:
    """Mirror each image left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """uint8 (or [0, 255] floats) → ``(x / 255 − mean) / std`` per channel, float32."""
    x = images.astype(jnp.float32) / 255.0
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def image_preprocess(mean, std, *, crop_padding: int = 4, flip: bool = False, augment: bool = True, dtype=jnp.float32):
    """A ``preprocess(x, rng, train)`` for the train and eval steps: in training (when
    ``augment``) a random crop with ``crop_padding`` and, if ``flip``, random
    horizontal flips; always normalization. Evaluation is deterministic. Equal
    arguments give the same function (the jitted steps that use it compile once)."""
    return _image_preprocess(tuple(float(m) for m in mean), tuple(float(s) for s in std), int(crop_padding), bool(flip), bool(augment), dtype)


@functools.lru_cache(maxsize=64)
def _image_preprocess(mean, std, crop_padding, flip, augment, dtype):
    def preprocess(x, rng, train: bool):
        if train and augment:
            crop_key, flip_key = jax.random.split(rng)
            x = random_crop(x, crop_key, crop_padding)
            if flip:
                x = random_flip(x, flip_key)
        return normalize(x, mean, std).astype(dtype)

    return preprocess
