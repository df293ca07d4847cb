"""The small models of Frankle & Carbin (2019): LeNet-300-100 and Conv-2/4/6."""

from __future__ import annotations

from typing import ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from lth_jax.models.layers import conv, dense, width


class LeNet(nn.Module):
    """Fully connected: flatten → ``hidden`` ReLU layers → classes (OpenLTH ``mnist_lenet_300_100``)."""

    output_layer: ClassVar[str] = 'fc'  # the layer a ticket records as its head

    hidden: Sequence[int] = (300, 100)
    num_classes: int = 10
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape(x.shape[0], -1).astype(self.dtype)
        for i, h in enumerate(self.hidden):
            x = nn.relu(dense(h, dtype=self.dtype, name=f"fc_{i}")(x))
        return dense(self.num_classes, dtype=self.dtype, name="fc")(x).astype(jnp.float32)


class ConvNet(nn.Module):
    """Conv-2/4/6: pairs of 3x3 convs (64, 128, 256) each followed by a 2x2 max-pool,
    then dense 256 → 256 → classes; ReLU, no normalization."""

    output_layer: ClassVar[str] = 'fc'  # the layer a ticket records as its head

    conv_pairs: int = 2
    num_classes: int = 10
    width_multiplier: float = 1.0
    dtype: jnp.dtype = jnp.float32
    conv_impl: str = "xla"  # or "slices" (layers.SlicedConv: small models on a CPU)

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)
        for p in range(self.conv_pairs):
            channels = width(64 * 2**p, self.width_multiplier)
            for c in range(2):
                x = nn.relu(conv(channels, 3, use_bias=True, dtype=self.dtype, impl=self.conv_impl, name=f"conv_{2 * p + c}")(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        for i in range(2):
            x = nn.relu(dense(width(256, self.width_multiplier), dtype=self.dtype, name=f"fc_{i}")(x))
        return dense(self.num_classes, dtype=self.dtype, name="fc")(x).astype(jnp.float32)
