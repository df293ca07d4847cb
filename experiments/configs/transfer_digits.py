"""Morcos et al.'s transfer study offline, on scikit-learn's real digits (``make transfer_demo``).

LeNet-300-100 with the ``find_ticket_digits_lenet`` recipe (SGD): tickets found
on the class-balanced half ``digits_a`` are trained on the other half
``digits_b``, beside random tickets and ``digits_b``'s own tickets, for seeds 0
and 1. A few minutes on a laptop CPU.
"""

from experiments.configs import find_ticket_digits_lenet
from lth_jax.transfer import default_config


def get_config():
    c = default_config(find_ticket_digits_lenet.get_config())
    c.source = "digits_a"
    c.targets = ("digits_b",)
    c.baselines = ("random", "target_own")
    c.seeds = (0, 1)
    return c
