"""OpenLTH's default lottery run for ``mnist_lenet_300_100``.

From facebookresearch/open_lth ``models/mnist_lenet.py`` ``default_hparams``:
MNIST (28×28 gray, no augmentation), batch 128, plain SGD lr 0.1 for 40 epochs;
sparse global pruning of 20% per level with the output layer kept dense;
rewinding to the initialization.
"""

from lth_jax.find_ticket import default_config


def get_config():
    c = default_config()
    c.dataset = "mnist"
    c.input_shape = (28, 28, 1)
    c.model = "lenet_300_100"
    c.augment = False
    c.rewind = "0"
    c.training.epochs = 40
    c.training.batch_size = 128
    c.training.drop_remainder = False
    c.optimizer.momentum = 0.0
    c.optimizer.weight_decay = 0.0
    c.optimizer.schedule = "constant"
    c.optimizer.milestones = ()
    c.pruning.exclude = ("^fc/",)
    c.pruning.levels = 20
    return c
