"""Morcos et al. (NeurIPS 2019), ResNet50 on CIFAR-10 with Adam.

The ReScience C (2020) replication of the paper: Adam lr 3e-4 with the SGD recipe's 90 epochs and steps at 50,
65, 80; otherwise as ``morcos_resnet50_sgd``.
"""

from experiments.configs import find_ticket_morcos_resnet50_sgd as morcos_resnet50_sgd


def get_config():
    c = morcos_resnet50_sgd.get_config()
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 3e-4
    c.optimizer.weight_decay = 1e-4  # as the replication's Adam (its src/train.py)
    return c
