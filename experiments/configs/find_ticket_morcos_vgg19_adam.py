"""Morcos et al. (NeurIPS 2019), VGG19 on CIFAR-10 with Adam (the optimizer-transfer recipe).

The ReScience C (2020) replication of the paper: Adam lr 3e-4 with the SGD recipe's epochs and steps (×0.1 at
80 and 120 of 160), batch 512, weight decay 1e-4 (an L2 term, as its code's Adam); pruning and rewinding as the
SGD preset.
"""

from experiments.configs import find_ticket_morcos_vgg19_sgd as morcos_vgg19_sgd


def get_config():
    c = morcos_vgg19_sgd.get_config()
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 3e-4
    c.optimizer.weight_decay = 1e-4  # as the replication's Adam (its src/train.py)
    return c
