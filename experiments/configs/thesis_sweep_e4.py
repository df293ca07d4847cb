"""E4: widths {31, 38, 48, 57} x 1-10 levels pruned to 112 weights (the rate varies), 4 seeds."""

from lth_jax.thesis_sweep import default_config


def get_config():
    return default_config("e4")
