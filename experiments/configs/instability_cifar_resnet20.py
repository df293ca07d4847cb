"""Instability of ResNet-20 on CIFAR-10 (for an accelerator: 160 epochs a training).

The recipe is OpenLTH's ``cifar_resnet_20`` (``find_ticket_openlth_cifar_resnet``:
batch 128, SGD 0.1 momentum 0.9 weight decay 1e-4, ×0.1 at epochs 80 and 120
of 160: 62,400 iterations), as in Frankle et al.'s ResNet-20 setting, with the
tickets found by 20% global pruning with late resetting to epoch 1 (390
iterations; our choice). Analysed: the dense network and levels 4 (41% of
weights) and 8 (16.8%, the paper's sparsity for ResNet-20) at rewind steps
0, 100, 500, 2000 and 10000 iterations (our grid). Both copies differ in data
order and augmentation (the paper's SGD noise). Narrow it for a quick look:
``--config.recipe.model_kwargs.width_multiplier=0.25 --config.recipe.training.epochs=10``.
"""

from experiments.configs import find_ticket_openlth_cifar_resnet
from lth_jax.instability import image_preset


def get_config():
    return image_preset(find_ticket_openlth_cifar_resnet.get_config("20"), levels=(0, 4, 8))
