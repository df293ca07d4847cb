"""Shared layer settings of the model zoo."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from lth_jax.errors import UserError

# Kaiming-normal (std = sqrt(2 / fan_in), untruncated, as PyTorch's kaiming_normal_
# used by OpenLTH and the thesis) for every conv and dense kernel; zero biases.
kaiming_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


CONV_IMPLS = ("xla", "slices")


class SlicedConv(nn.Module):
    """``nn.Conv``'s parameters (same names, shapes and initial values) and result,
    computed as the ``kernel²`` shifted, strided slices of the padded input side by
    side on the channel axis, times the kernel as one matrix.

    XLA:CPU runs small convolutions slowly, and under ``vmap`` (replicas with kernels
    of their own) as grouped convolutions, slower still; this form is a batched
    matrix product (a 6-conv VGG-style network on 8×8 inputs: 9.2 → 1.7 ms a step,
    vmapped 17.4 → 1.5 ms per replica, on a CPU core). On accelerators keep ``xla``.
    """

    features: int
    kernel: int
    strides: int = 1
    use_bias: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        k, s, pad, cin = self.kernel, self.strides, (self.kernel - 1) // 2, x.shape[-1]
        kernel = self.param("kernel", kaiming_normal, (k, k, cin, self.features), jnp.float32)
        rows, cols = (x.shape[1] + 2 * pad - k) // s + 1, (x.shape[2] + 2 * pad - k) // s + 1
        x = jnp.pad(x.astype(self.dtype), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        slices = [x[:, i : i + s * (rows - 1) + 1 : s, j : j + s * (cols - 1) + 1 : s, :] for i in range(k) for j in range(k)]
        y = jnp.concatenate(slices, axis=-1) @ kernel.reshape(k * k * cin, self.features).astype(self.dtype)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(self.dtype)
        return y


def conv(features: int, kernel: int, *, strides: int = 1, use_bias: bool = False, dtype=jnp.float32, name=None, impl: str = "xla"):
    """A ``kernel × kernel`` convolution with PyTorch's padding ``kernel // 2``; ``impl``:
    ``"xla"`` (``nn.Conv``) or ``"slices"`` (:class:`SlicedConv`: the same parameters and
    result, faster for small models on a CPU)."""
    if impl == "slices":
        return SlicedConv(features, kernel, strides=strides, use_bias=use_bias, dtype=dtype, name=name)
    if impl != "xla":
        raise UserError(f"conv_impl={impl!r} is not one of {', '.join(CONV_IMPLS)}")
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

