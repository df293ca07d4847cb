"""E2: E1 with one hidden layer, the extension of (4, 20, 2) at levels 0-16."""

from lth_jax.thesis_sweep import default_config


def get_config():
    return default_config("e2")
