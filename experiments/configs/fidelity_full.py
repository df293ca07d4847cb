"""The fidelity harness on every point: E1 levels 0, 3, 6, 9, 12; E2 levels 0, 4, 8, 12; E4 widths 31-57 × 2-10 levels;
32 lth_jax seeds each; E5/E7 compared level by level on E1 extension level 9, seed 0."""

from lth_jax.fidelity import default_config


def get_config():
    c = default_config("full")
    c.structure_point = "ext9"
    return c
