"""Offline demonstration: Conv-2 on scikit-learn's digits as 32×32×3 images.

The 8×8 gray digits are upsampled ×4 and replicated to 3 channels, the input of
the CIFAR models (as Morcos et al. adapt gray images), with 4-pixel random crops. Adam 1e-3 for 15
epochs, batch 64; 20% global pruning for 8 levels; rewind to epoch 1.
"""

from lth_jax.find_ticket import default_config


def get_config():
    c = default_config()
    c.dataset = "digits"
    c.input_shape = (32, 32, 3)
    c.model_kwargs.width_multiplier = 1.0  # < 1 for narrow models (tests, quick looks)
    c.model = "conv_2"
    c.rewind = "1ep"
    c.training.epochs = 15
    c.training.batch_size = 64
    c.training.drop_remainder = False
    c.training.log_every_epochs = 0
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.weight_decay = 0.0
    c.optimizer.schedule = "constant"
    c.optimizer.milestones = ()
    c.pruning.levels = 8
    return c
