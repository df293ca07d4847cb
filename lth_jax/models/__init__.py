"""The model zoo: Flax modules called as ``model.apply(variables, x, train=...)`` on NHWC inputs.

``get_model(name, num_classes, **kwargs)`` builds a registered model by name:

- ``mlp`` (the thesis MLP; ``shape=(d_in, ..., d_out)``)
- ``cifar_vgg_11``, ``cifar_vgg_13``, ``cifar_vgg_16``, ``cifar_vgg_19`` (``width_multiplier``); ``vgg_6``
  (two pools: for 8×8 and 16×16 inputs)
- ``cifar_resnet_20``, ``cifar_resnet_56`` (any ``cifar_resnet_<6n+2>``)
- ``resnet_18``, ``resnet_50`` (``stem="imagenet"`` or ``"cifar"``)
- ``lenet_300_100`` (alias ``mnist_lenet_300_100``; any ``lenet_<w1>_<w2>...`` as OpenLTH
  names its fully connected nets), ``conv_2``, ``conv_4``, ``conv_6``

Convolutional models accept ``conv_impl="slices"`` (the same parameters and results
as XLA's convolution, computed as matrix products: much faster for small models
on a CPU, see :class:`lth_jax.models.layers.SlicedConv`). Every model accepts ``dtype`` (e.g. ``jnp.bfloat16`` for mixed precision: bf16
compute, float32 parameters and logits).
"""

from __future__ import annotations

import re
from typing import Callable

import flax.linen as nn

from lth_jax.errors import UserError
from lth_jax.models.lenet import ConvNet, LeNet
from lth_jax.models.mlp import MLP
from lth_jax.models.resnet import ResNet, cifar_resnet, imagenet_resnet
from lth_jax.models.vgg import VGG, cifar_vgg

__all__ = ["MLP", "VGG", "ResNet", "LeNet", "ConvNet", "MODELS", "get_model", "register_model", "model_names"]

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    MODELS[name] = factory


def model_names() -> list[str]:
    return sorted(MODELS)


def get_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """The model ``name`` with ``num_classes`` outputs."""
    match = re.fullmatch(r"cifar_resnet_(\d+)", name)
    if match and name not in MODELS:
        return cifar_resnet(int(match.group(1)), num_classes, **kwargs)
    match = re.fullmatch(r"(?:mnist_)?lenet((?:_\d+)+)", name)
    if match and name not in MODELS:
        return LeNet(tuple(int(w) for w in match.group(1).split("_")[1:]), num_classes, **kwargs)
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(model_names())}")
    return MODELS[name](num_classes=num_classes, **kwargs)


def _mlp(num_classes: int, shape=(4, 8, 8, 2), dtype=None) -> MLP:
    shape = tuple(shape)
    return MLP(shape=shape[:-1] + (num_classes,))


register_model("mlp", _mlp)
for _depth in (11, 13, 16, 19):
    register_model(f"cifar_vgg_{_depth}", lambda num_classes, _d=_depth, **kw: cifar_vgg(_d, num_classes, **kw))
for _depth in (20, 56):
    register_model(f"cifar_resnet_{_depth}", lambda num_classes, _d=_depth, **kw: cifar_resnet(_d, num_classes, **kw))
for _depth in (18, 50):
    register_model(f"resnet_{_depth}", lambda num_classes, _d=_depth, **kw: imagenet_resnet(_d, num_classes, **kw))
register_model("lenet_300_100", lambda num_classes, **kw: LeNet((300, 100), num_classes, **kw))
register_model("mnist_lenet_300_100", MODELS["lenet_300_100"])
# A VGG-style stack for small inputs (8×8, 16×16): six 3x3 convs, two pools (with width_multiplier=0.125: 8, 16, 32 channels).
register_model("vgg_6", lambda num_classes, **kw: VGG(plan=(64, 64, "M", 128, 128, "M", 256, 256), num_classes=num_classes, **kw))
for _pairs in (1, 2, 3):
    register_model(f"conv_{2 * _pairs}", lambda num_classes, _p=_pairs, **kw: ConvNet(_p, num_classes, **kw))
