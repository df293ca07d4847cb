"""Offline demonstration: LeNet-300-100 on scikit-learn's real 8×8 digits (no download).

The digits are upsampled ×3 and padded to 28×28 (the LeNet's MNIST input);
1437 train / 360 test (stratified, fixed). SGD momentum 0.9 lr 0.05 for 20
epochs, batch 64; 20% global pruning for 10 levels; late resetting to epoch 1.
Our choice, sized to run in about a minute on a laptop CPU.
"""

from lth_jax.find_ticket import default_config


def get_config():
    c = default_config()
    c.dataset = "digits"
    c.input_shape = (28, 28, 1)
    c.model = "lenet_300_100"
    c.augment = False
    c.rewind = "1ep"
    c.training.epochs = 20
    c.training.batch_size = 64
    c.training.drop_remainder = False
    c.training.log_every_epochs = 0
    c.optimizer.learning_rate = 0.05
    c.optimizer.schedule = "constant"
    c.optimizer.milestones = ()
    c.pruning.levels = 10
    return c
