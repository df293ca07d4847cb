"""E8 of the thesis: MNIST and Fashion-MNIST side by side.

An MLP (1568, 784, 392, 20) pruned to 600 weights over 20 levels, batch 512,
at most 1000 epochs, output coverage (border pixels may never connect), a seed
stops when its ticket splits; seeds 0-2. Needs the TFDS datasets ``mnist`` and
``fashion_mnist`` prepared (see the README).
"""

from lth_jax.parallel_tasks import default_config


def get_config():
    c = default_config()
    c.dataset = "mnist_fashion"
    c.shape = (1568, 784, 392, 20)
    c.levels = 20
    c.target = 600
    c.batch_size = 512
    c.epochs = 1000
    c.stop_on_split = True
    c.seeds = (0, 1, 2)
    return c
