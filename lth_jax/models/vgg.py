"""CIFAR VGG (Morcos et al.'s VGG19, OpenLTH ``cifar_vgg_N``): 3x3 conv → BatchNorm → ReLU, 2x2
max-pools, global average pooling and one dense layer 512 → classes."""

from __future__ import annotations

from typing import ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from lth_jax.errors import UserError
from lth_jax.models.layers import batch_norm, conv, dense, width

PLANS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512),
}


class VGG(nn.Module):
    """``plan``: channel counts and ``"M"`` (max-pool); convs keep their bias, as in OpenLTH.

    Global average pooling makes it resolution-agnostic (32×32 and 224×224 share weights).
    """

    output_layer: ClassVar[str] = 'fc'  # the layer a ticket records as its head

    plan: Sequence
    num_classes: int = 10
    width_multiplier: float = 1.0
    dtype: jnp.dtype = jnp.float32
    conv_impl: str = "xla"  # or "slices" (layers.SlicedConv: small models on a CPU)

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)
        i = 0
        for spec in self.plan:
            if spec == "M":
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            else:
                x = conv(width(spec, self.width_multiplier), 3, use_bias=True, dtype=self.dtype, impl=self.conv_impl, name=f"conv_{i}")(x)
                x = nn.relu(batch_norm(train, dtype=self.dtype, name=f"bn_{i}")(x))
                i += 1
        x = jnp.mean(x, axis=(1, 2))
        return dense(self.num_classes, dtype=self.dtype, name="fc")(x).astype(jnp.float32)


def cifar_vgg(depth: int, num_classes: int = 10, **kwargs) -> VGG:
    if depth not in PLANS:
        raise UserError(f"VGG depth {depth} is not one of {sorted(PLANS)}")
    return VGG(plan=PLANS[depth], num_classes=num_classes, **kwargs)
