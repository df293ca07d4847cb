"""The thesis MLP: Dense → ReLU → … → Dense, linear outputs, Kaiming-normal weights."""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from lth_jax.errors import UserError

__all__ = ["MLP", "kaiming_normal", "kernels_in_order"]

# std = sqrt(2 / fan_in), a plain (untruncated) normal, as PyTorch's kaiming_normal_.
kaiming_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class MLP(nn.Module):
    """Fully connected network of layer sizes ``shape = (d_in, h_1, ..., d_out)``.

    Kaiming-normal weights, zero biases, ReLU, no normalization or dropout. Layers
    are named ``hidden_0, hidden_1, ...`` and ``output``; ``d_in`` is checked
    against the (flattened) input.
    """

    output_layer: ClassVar[str] = 'output'  # the layer a ticket records as its head

    shape: Sequence[int]

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        del train  # no dropout or normalization
        if len(self.shape) < 2:
            raise UserError(f"MLP shape={tuple(self.shape)} needs at least an input and an output size")
        x = x.reshape(x.shape[0], -1)
        if x.shape[-1] != self.shape[0]:
            raise UserError(f"MLP shape={tuple(self.shape)} expects {self.shape[0]} input features, got {x.shape[-1]}")
        for i, width in enumerate(self.shape[1:-1]):
            x = nn.relu(nn.Dense(width, kernel_init=kaiming_normal, bias_init=nn.initializers.zeros, name=f"hidden_{i}")(x))
        return nn.Dense(self.shape[-1], kernel_init=kaiming_normal, bias_init=nn.initializers.zeros, name="output")(x)


def kernels_in_order(tree: Any) -> list[Any]:
    """The kernel leaves (params or mask) of an :class:`MLP`, input layer first."""
    hidden = sorted((k for k in tree if k.startswith("hidden_")), key=lambda k: int(k.split("_")[1]))
    return [tree[k]["kernel"] for k in hidden] + [tree["output"]["kernel"]]
