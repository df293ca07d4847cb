"""E3: E1 with three hidden layers, the extension of (4, 8, 8, 8, 2) at levels 0-25 (our base shape)."""

from lth_jax.thesis_sweep import default_config


def get_config():
    return default_config("e3")
