"""The thesis's Moons+Circles experiment (``make demo``).

Circles on inputs 1-2, moons on inputs 3-4, one sigmoid output each; the
network extension of the MLP (4, 8, 8, 2) at level 9, i.e. an MLP 4-57-57-2
pruned by exact counts back to 112 weights (rate 0.32); reset to the
initialization; Adam 1e-3, batch 64, early stopping on the test loss with
patience 30 (at most 3000 epochs); seeds 0-3 in one vmapped program; a seed
stops when its ticket degrades.
"""

from lth_jax.parallel_tasks import default_config


def get_config():
    return default_config()
