"""The model zoo: Flax modules called as ``model.apply(variables, x, train=...)``.

``get_model(name, num_classes, **kwargs)`` builds a registered model by name.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn

from lth_jax.models.mlp import MLP

__all__ = ["MLP", "MODELS", "get_model", "register_model"]

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    MODELS[name] = factory


def get_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """The model ``name`` with ``num_classes`` outputs."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes=num_classes, **kwargs)


def _mlp(num_classes: int, shape=(4, 8, 8, 2)) -> MLP:
    shape = tuple(shape)
    return MLP(shape=shape[:-1] + (num_classes,))


register_model("mlp", _mlp)
