"""E9 of the thesis: input connectivity of a LeNet (784, 300, 100, 10) on MNIST alone.

20% of the remaining weights pruned per level for 20 levels, batch 512, at most
1000 epochs, seed 0; ``figures/input_degree_seed0.png`` holds the heat maps of
each pixel's active out-degree. ``--config.dataset=fashion_mnist`` for the other
dataset.
"""

from lth_jax.parallel_tasks import default_config


def get_config():
    c = default_config()
    c.dataset = "mnist"
    c.shape = (784, 300, 100, 10)
    c.rate = 0.2
    c.levels = 20
    c.batch_size = 512
    c.epochs = 1000
    c.seeds = (0,)
    return c
