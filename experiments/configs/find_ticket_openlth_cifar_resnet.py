"""OpenLTH's default lottery run for ``cifar_resnet_N`` (``--config=...openlth_cifar_resnet.py:20``).

From facebookresearch/open_lth ``models/cifar_resnet.py`` ``default_hparams``:
CIFAR-10, batch 128, SGD lr 0.1 momentum 0.9 weight decay 1e-4, ×0.1 at epochs
80 and 120 of 160; sparse global pruning of 20% per level over every layer;
rewinding to the initialization.
"""

from lth_jax.find_ticket import default_config


def get_config(depth: str = "20"):
    c = default_config()
    c.dataset = "cifar10"
    c.model_kwargs.width_multiplier = 1.0  # < 1 for narrow models (tests, quick looks)
    c.model = f"cifar_resnet_{int(depth)}"
    c.training.batch_size = 128
    c.rewind = "0"
    return c
