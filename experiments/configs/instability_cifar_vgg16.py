"""Instability of VGG-16 on CIFAR-10 (for an accelerator: 160 epochs a training).

The recipe is OpenLTH's ``cifar_vgg_16`` (``find_ticket_openlth_cifar_vgg``:
batch 128, SGD 0.1 momentum 0.9 weight decay 1e-4, ×0.1 at epochs 80 and 120
of 160, the output layer kept dense), as in Frankle et al.'s VGG-16 setting,
with the tickets found by 20% global pruning with late resetting to epoch 1
(our choice). Analysed: the dense network and levels 10 (10.7% of weights)
and 19 (1.4%, about the paper's 1.5% for VGG-16) at rewind steps 0, 100, 500,
2000 and 10000 iterations (our grid). Both copies differ in data order and
augmentation (the paper's SGD noise).
"""

from experiments.configs import find_ticket_openlth_cifar_vgg
from lth_jax.instability import image_preset


def get_config():
    return image_preset(find_ticket_openlth_cifar_vgg.get_config("16"), levels=(0, 10, 19))
