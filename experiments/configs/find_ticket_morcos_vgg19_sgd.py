"""Morcos et al. (NeurIPS 2019), VGG19 on CIFAR-10 with SGD.

Numbers from the ReScience C 2020 replication of the paper:
SGD momentum 0.9, weight decay 1e-4, batch 512, lr 0.1 ×0.1 at epochs 80 and
120 of 160; global magnitude pruning of 20% per level for 30 levels (0.8^30 ≈
0.12% left); late resetting to the end of epoch 1 (our default). Random crop
with 4-pixel padding and horizontal flips.
"""

from lth_jax.find_ticket import default_config


def get_config():
    c = default_config()
    c.dataset = "cifar10"
    c.model_kwargs.width_multiplier = 1.0  # < 1 for narrow models (tests, quick looks)
    c.model = "cifar_vgg_19"
    return c
