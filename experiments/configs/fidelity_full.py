"""The fidelity harness on every point: E1 levels 0, 3, 6, 9, 12; E2 levels 0, 4, 8, 12; E4 widths 31-57 × 2-10 levels; 32 lth_jax seeds each."""

from lth_jax.fidelity import default_config


def get_config():
    return default_config("full")
