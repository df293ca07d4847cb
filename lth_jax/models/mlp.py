"""The thesis MLP: Dense → ReLU → … → Dense, linear outputs, Kaiming-normal weights."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lth_jax.errors import UserError

__all__ = ["MLP", "WidthPadding", "kaiming_normal", "kernels_in_order"]

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


@dataclasses.dataclass(frozen=True)
class WidthPadding:
    """An :class:`MLP` computed at wider hidden layers whose extra units are pruned.

    XLA's CPU matrix products are markedly slower at some widths than at the next
    multiple of 8 (measured per seed-epoch of the thesis MLP, 16 replicas on a core:
    width 31 408 µs vs 32 304 µs, 38 516 µs vs 40 454 µs, while 57 is cheaper than
    64; one layer of 2046 units ran 1.65× slower at 2048: widths over 512 are left
    alone). An extra unit has zero, masked weights in and out and a zero bias, so it
    outputs 0 and its gradients and optimizer moments stay 0: the same function and
    training, up to the order of floating-point sums. :meth:`pad` widens every
    ``kernel``/``bias`` leaf of a layer in any tree (parameters, mask, optimizer
    moments; stacked replicas too), :meth:`unpad` cuts it back.
    """

    shape: tuple[int, ...]
    padded: tuple[int, ...]

    # a width up to 512 is rounded up to a multiple of 8 when that adds at most 1/16 of it (one hidden layer of
    # 94 or 437 units gained 8% and 4%; 2046 -> 2048 ran 1.65x slower, so wide layers stay as they are)
    MULTIPLE, SLACK, MAX_WIDTH = 8, 1 / 16, 512

    @classmethod
    def for_model(cls, model) -> "WidthPadding | None":
        """The padding that pays for ``model`` (an :class:`MLP`), or None."""
        if not isinstance(model, MLP):
            return None
        shape = tuple(int(w) for w in model.shape)
        wider = [-(-w // cls.MULTIPLE) * cls.MULTIPLE for w in shape[1:-1]]
        padded = (shape[0], *(p if p - w <= w * cls.SLACK and p <= cls.MAX_WIDTH else w for p, w in zip(wider, shape[1:-1])), shape[-1])
        return None if padded == shape else cls(shape, padded)

    @property
    def model(self) -> "MLP":
        return MLP(self.padded)

    def _resize(self, tree, sizes: tuple[int, ...]):
        layers = {f"hidden_{i}": i for i in range(len(self.shape) - 2)} | {"output": len(self.shape) - 2}

        def resize(path, leaf):
            keys = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
            if len(keys) < 2 or keys[-1] not in ("kernel", "bias") or keys[-2] not in layers:
                return leaf
            i = layers[keys[-2]]
            dims = (sizes[i], sizes[i + 1]) if keys[-1] == "kernel" else (sizes[i + 1],)
            leaf = np.asarray(leaf)
            lead = leaf.ndim - len(dims)
            cut = leaf[(...,) + tuple(slice(0, d) for d in dims)]
            pad = [(0, 0)] * lead + [(0, d - n) for d, n in zip(dims, cut.shape[lead:])]
            return np.pad(cut, pad)  # zeros, False in a mask

        return jax.tree_util.tree_map_with_path(resize, tree)

    def pad(self, tree):
        """``tree`` at the padded widths: zeros (False in a mask) at the new units."""
        return self._resize(tree, self.padded)

    def unpad(self, tree):
        """``tree`` at the model's own widths."""
        return self._resize(tree, self.shape)
