"""Instability of the thesis's parallel-task tickets: does a network become stable before or after it splits?

The tickets are those of ``parallel_tasks_moons_circles`` (the MLP 4-57-57-2 of
the network extension at level 9, pruned by exact counts to 112 weights,
reset to the initialization, Adam 1e-3, batch 64, early stopping on the test
loss with patience 30; seeds 0-3). For every seed, the dense network and
every level up to 9 are analysed at rewind steps 0 (the thesis's reset), 1, 4
and 16 epochs (16 iterations an epoch), each sparse level beside its random
ticket. ``figures/barrier_vs_level.png`` marks each seed's split level.
"""

from experiments.configs import parallel_tasks_moons_circles
from lth_jax.instability import default_config


def get_config():
    c = default_config(parallel_tasks_moons_circles.get_config(), experiment="parallel_tasks")
    c.levels = tuple(range(10))
    c.rewind_steps = "0,1ep,4ep,16ep"
    c.vmap = True
    c.random_tickets = True
    return c
