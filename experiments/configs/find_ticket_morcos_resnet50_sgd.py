"""Morcos et al. (NeurIPS 2019), ResNet50 on CIFAR-10 with SGD.

The ReScience C (2020) replication of the paper: SGD momentum 0.9, weight decay 1e-4, batch 512, lr 0.1 ×0.1
at epochs 50, 65 and 80 of 90; 20% global pruning per level for 30 levels;
rewind to epoch 1. 32×32 inputs use the CIFAR stem (3x3 conv, stride 1, no
max-pool) (our default); for ImageNet-sized data set
``--config.model_kwargs.stem=imagenet --config.input_shape="(224, 224, 3)"``.
"""

from lth_jax.find_ticket import default_config


def get_config():
    c = default_config()
    c.dataset = "cifar10"
    c.model_kwargs.width_multiplier = 1.0  # < 1 for narrow models (tests, quick looks)
    c.model = "resnet_50"
    c.model_kwargs.stem = "cifar"
    c.training.epochs = 90
    c.optimizer.milestones = (50.0, 65.0, 80.0)
    return c
