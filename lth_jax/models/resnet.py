"""ResNets: the CIFAR ResNet-N of He et al. (OpenLTH ``cifar_resnet_N``) and the
ImageNet ResNet-18/50 (torchvision layout), with an ImageNet or a CIFAR stem."""

from __future__ import annotations

from typing import ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from lth_jax.errors import UserError
from lth_jax.models.layers import batch_norm, conv, dense, width


class BasicBlock(nn.Module):
    features: int
    strides: int = 1
    dtype: jnp.dtype = jnp.float32
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x, train: bool):
        y = conv(self.features, 3, strides=self.strides, dtype=self.dtype, impl=self.conv_impl, name="conv1")(x)
        y = nn.relu(batch_norm(train, dtype=self.dtype, name="bn1")(y))
        y = conv(self.features, 3, dtype=self.dtype, impl=self.conv_impl, name="conv2")(y)
        y = batch_norm(train, dtype=self.dtype, name="bn2")(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = conv(self.features, 1, strides=self.strides, dtype=self.dtype, impl=self.conv_impl, name="shortcut_conv")(x)
            x = batch_norm(train, dtype=self.dtype, name="shortcut_bn")(x)
        return nn.relu(x + y)


class Bottleneck(nn.Module):
    """1x1 → 3x3 (stride here, as torchvision's ResNet v1.5) → 1x1 (×4)."""

    features: int
    strides: int = 1
    dtype: jnp.dtype = jnp.float32
    conv_impl: str = "xla"

    @nn.compact
    def __call__(self, x, train: bool):
        y = nn.relu(batch_norm(train, dtype=self.dtype, name="bn1")(conv(self.features, 1, dtype=self.dtype, impl=self.conv_impl, name="conv1")(x)))
        y = conv(self.features, 3, strides=self.strides, dtype=self.dtype, impl=self.conv_impl, name="conv2")(y)
        y = nn.relu(batch_norm(train, dtype=self.dtype, name="bn2")(y))
        y = batch_norm(train, dtype=self.dtype, name="bn3")(conv(4 * self.features, 1, dtype=self.dtype, impl=self.conv_impl, name="conv3")(y))
        if self.strides != 1 or x.shape[-1] != 4 * self.features:
            x = conv(4 * self.features, 1, strides=self.strides, dtype=self.dtype, impl=self.conv_impl, name="shortcut_conv")(x)
            x = batch_norm(train, dtype=self.dtype, name="shortcut_bn")(x)
        return nn.relu(x + y)


class ResNet(nn.Module):
    """``stages``: blocks per stage; ``widths``: channels per stage (before the
    bottleneck's ×4). ``stem``: ``"imagenet"`` (7x7/2 conv, 3x3/2 max-pool) or
    ``"cifar"`` (3x3/1 conv, no pool)."""

    output_layer: ClassVar[str] = 'fc'  # the layer a ticket records as its head

    stages: Sequence[int]
    widths: Sequence[int]
    bottleneck: bool = False
    stem: str = "imagenet"
    stem_width: int = 64
    num_classes: int = 1000
    dtype: jnp.dtype = jnp.float32
    conv_impl: str = "xla"  # or "slices" (layers.SlicedConv: small models on a CPU)

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.stem not in ("imagenet", "cifar"):
            raise UserError(f"stem={self.stem!r} is not one of 'imagenet', 'cifar'")
        x = x.astype(self.dtype)
        if self.stem == "imagenet":
            x = conv(self.stem_width, 7, strides=2, dtype=self.dtype, impl=self.conv_impl, name="stem_conv")(x)
            x = nn.relu(batch_norm(train, dtype=self.dtype, name="stem_bn")(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:
            x = conv(self.stem_width, 3, dtype=self.dtype, impl=self.conv_impl, name="stem_conv")(x)
            x = nn.relu(batch_norm(train, dtype=self.dtype, name="stem_bn")(x))
        block = Bottleneck if self.bottleneck else BasicBlock
        for s, (blocks, features) in enumerate(zip(self.stages, self.widths)):
            for b in range(blocks):
                strides = 2 if s > 0 and b == 0 else 1
                x = block(features, strides, dtype=self.dtype, conv_impl=self.conv_impl, name=f"stage{s}_block{b}")(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return dense(self.num_classes, dtype=self.dtype, name="fc")(x).astype(jnp.float32)


def cifar_resnet(depth: int, num_classes: int = 10, width_multiplier: float = 1.0, **kwargs) -> ResNet:
    """ResNet-N for CIFAR: 3 stages of (N − 2) / 6 basic blocks with 16, 32, 64 channels."""
    if depth < 8 or (depth - 2) % 6:
        raise UserError(f"CIFAR ResNet depth {depth} is not 6n + 2 (20, 32, 44, 56, 110, ...)")
    n = (depth - 2) // 6
    widths = tuple(width(w, width_multiplier) for w in (16, 32, 64))
    return ResNet(stages=(n, n, n), widths=widths, stem="cifar", stem_width=widths[0], num_classes=num_classes, **kwargs)


def imagenet_resnet(depth: int, num_classes: int = 1000, stem: str = "imagenet", width_multiplier: float = 1.0, **kwargs) -> ResNet:
    """ResNet-18 (basic blocks [2, 2, 2, 2]) or ResNet-50 (bottlenecks [3, 4, 6, 3])."""
    layouts = {18: ((2, 2, 2, 2), False), 34: ((3, 4, 6, 3), False), 50: ((3, 4, 6, 3), True), 101: ((3, 4, 23, 3), True)}
    if depth not in layouts:
        raise UserError(f"ResNet depth {depth} is not one of {sorted(layouts)}")
    stages, bottleneck = layouts[depth]
    widths = tuple(width(w, width_multiplier) for w in (64, 128, 256, 512))
    return ResNet(stages=stages, widths=widths, bottleneck=bottleneck, stem=stem, stem_width=widths[0], num_classes=num_classes, **kwargs)
