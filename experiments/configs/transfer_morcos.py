"""Morcos et al. (NeurIPS 2019): tickets from CIFAR-100 trained on other datasets.

``--config=experiments/configs/transfer_morcos.py:vgg19_sgd`` takes the recipe
of ``find_ticket_morcos_vgg19_sgd`` (or ``vgg19_adam``, ``resnet50_sgd``,
``resnet50_adam``): tickets found on CIFAR-100 are trained on CIFAR-10, SVHN
and Fashion-MNIST with that recipe, beside random tickets and each target's own
tickets, for three seeds. Change the source, the targets or the optimizers
with ``--config.source=...``, ``--config.targets=...``,
``--config.target_optimizer=adam``.
"""

import importlib

from lth_jax.transfer import default_config


def get_config(recipe: str = "vgg19_sgd"):
    preset = importlib.import_module(f"experiments.configs.find_ticket_morcos_{recipe}")
    c = default_config(preset.get_config())
    c.source = "cifar100"
    c.targets = ("cifar10", "svhn_cropped", "fashion_mnist")
    c.baselines = ("random", "target_own")
    c.seeds = (0, 1, 2)
    return c
