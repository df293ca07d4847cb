"""Instability of LeNet-300-100 on scikit-learn's digits (offline; a few minutes on a laptop CPU).

The tickets are ``find_ticket_digits_lenet``'s (SGD, 20 epochs, 20% global
pruning per level, late resetting to epoch 1), found for 15 levels with seeds
0-7; the dense network (level 0) and the tickets of levels 3 (51% of
weights), 7 (21%) and 15 (3.5%, the sparsity of the paper's LeNet tickets)
are analysed at rewind steps 0, 5 and 10 iterations, 1, 2 and 5 epochs (23
iterations an epoch), each beside its random ticket (the same layer counts
at random places, the same weights). The paper's finding for LeNet on MNIST, to compare with:
the dense network and its IMP tickets are stable from k = 0.
"""

from experiments.configs import find_ticket_digits_lenet
from lth_jax.instability import default_config


def get_config():
    recipe = find_ticket_digits_lenet.get_config()
    recipe.pruning.levels = 15
    c = default_config(recipe)
    c.seeds = tuple(range(8))
    c.levels = (0, 3, 7, 15)
    c.rewind_steps = "0,5it,10it,1ep,2ep,5ep"
    c.vmap = True
    c.random_tickets = True
    return c
