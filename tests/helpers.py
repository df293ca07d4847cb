"""Small models and data shared by the tests."""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from lth_jax.data import ArrayDataset


class ConvBN(nn.Module):
    """A tiny conv net with BatchNorm (kernels, biases, scales, batch statistics)."""

    num_classes: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(4, (3, 3), name="conv")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn")(x)
        x = nn.relu(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(x)


def image_data(n=64, size=6, classes=3, seed=0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, size, size, 2)).astype(np.float32)
    y = rng.integers(0, classes, n).astype(np.int32)
    return ArrayDataset(x, y)


def vector_data(n=96, features=4, seed=0, tasks=2) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype(np.float32)
    y = (x[:, :tasks] > 0).astype(np.float32)
    return ArrayDataset(x, y)


def assert_one_line_error(proc, message: str) -> None:
    """A script refused bad input the way users should see it: a non-zero exit and
    exactly one line on stderr, containing ``message``, with no traceback."""
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
