"""The fidelity harness on three points (E4 width 38 and 48 at 10 levels, E1 extension level 3), 32 lth_jax seeds each."""

from lth_jax.fidelity import default_config


def get_config():
    return default_config("quick")
