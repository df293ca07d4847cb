"""E1: the network extension of (4, 8, 8, 2) at levels 0-25, 4 seeds: when do networks split?"""

from lth_jax.thesis_sweep import default_config


def get_config():
    return default_config("e1")
