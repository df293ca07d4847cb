"""Shared layer settings of the model zoo."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

# Kaiming-normal (std = sqrt(2 / fan_in), untruncated, as PyTorch's kaiming_normal_
# used by OpenLTH and the thesis) for every conv and dense kernel; zero biases.
kaiming_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def conv(features: int, kernel: int, *, strides: int = 1, use_bias: bool = False, dtype=jnp.float32, name=None):
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(strides, strides),
        padding=[((kernel - 1) // 2,) * 2] * 2,  # PyTorch's padding=k//2 (symmetric, unlike XLA's SAME)
        use_bias=use_bias,
        kernel_init=kaiming_normal,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


def dense(features: int, *, dtype=jnp.float32, name=None):
    return nn.Dense(features, kernel_init=kaiming_normal, bias_init=nn.initializers.zeros, dtype=dtype, param_dtype=jnp.float32, name=name)


BATCH_NORM_MOMENTUM = 0.9  # PyTorch's momentum 0.1


def batch_norm(train: bool, *, dtype=jnp.float32, name=None):
    """BatchNorm with PyTorch's defaults (momentum 0.1 → Flax 0.9, eps 1e-5); statistics
    are over the global batch under jit data parallelism."""
    return nn.BatchNorm(use_running_average=not train, momentum=BATCH_NORM_MOMENTUM, epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32, name=name)


def width(channels: int, multiplier: float) -> int:
    """Channels scaled by a width multiplier (at least 1): narrow models for tests."""
    return max(1, int(round(channels * multiplier)))

