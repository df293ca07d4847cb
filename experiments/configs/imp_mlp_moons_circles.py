"""The small IMP example: an MLP (4, 32, 32, 2) on Moons+Circles, rate 0.32 for 8 levels, Adam 1e-3."""

from lth_jax.imp_mlp import default_config


def get_config():
    return default_config()
