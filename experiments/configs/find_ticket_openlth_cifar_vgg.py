"""OpenLTH's default lottery run for ``cifar_vgg_N`` (``--config=...openlth_cifar_vgg.py:16``).

From facebookresearch/open_lth ``models/cifar_vgg.py`` ``default_hparams``:
CIFAR-10, batch 128, SGD lr 0.1 momentum 0.9 weight decay 1e-4, ×0.1 at epochs
80 and 120 of 160; sparse global pruning of 20% per level with the output layer
(``fc.weight``) kept dense; OpenLTH rewinds to the initialization by default.
OpenLTH draws BatchNorm scales from U(0, 1); we keep Flax's 1.
"""

from lth_jax.find_ticket import default_config


def get_config(depth: str = "16"):
    c = default_config()
    c.dataset = "cifar10"
    c.model_kwargs.width_multiplier = 1.0  # < 1 for narrow models (tests, quick looks)
    c.model = f"cifar_vgg_{int(depth)}"
    c.training.batch_size = 128
    c.rewind = "0"
    c.pruning.exclude = ("^fc/",)
    return c
