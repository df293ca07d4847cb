"""The points of the fidelity harness: their names, what the thesis published for them, the rows they make.

A *point* is one experiment of the thesis's grids, named as the thesis-code
driver (``benchmarks/fidelity/thesis_driver.py``) names it: ``extN`` (E1: the
network extension of (4, 8, 8, 2) at level N), ``e2_extN`` (E2: base
(4, 20, 2)) and ``wW_LN`` (E4: width W, N levels pruned to 112 weights).
:func:`point_overrides` makes a point's experiment, :func:`experiment_of` and
:func:`point_axis` place it in its grid; :data:`THESIS_PUBLISHED` holds the
thesis's published split counts, :data:`ROW_FIELDS` the fields of a per-seed
row and :data:`SYSTEMS` who made it. :mod:`lth_jax.fidelity` runs the points,
:mod:`lth_jax.fidelity_report` tabulates them.
"""

from __future__ import annotations

import re

from lth_jax.errors import UserError

__all__ = ["E4_TARGET", "THESIS_PUBLISHED", "ROW_FIELDS", "SYSTEMS", "parse_point", "point_overrides", "experiment_of", "point_axis"]

E4_TARGET = 112

# What the thesis published: runs that split / runs, read off its figures (4 seeds a point for E1 and E4,
# 5 for E2): the E4 grid drawn by its analysis notebook (project/analysis/grid_plot.ipynb, "grid.png"),
# the E1 and E2 histograms (latex/thesis/images/{2,1}-layer-histogram-split-behaviour.png).
_E4_PUBLISHED = {57: (0, 1, 0, 3, 1, 1, 4, 2, 2, 3), 48: (0, 0, 1, 2, 0, 3, 3, 1, 2, 3), 38: (0,) * 10, 31: (0,) * 10}
THESIS_PUBLISHED = {
    **{f"w{w}_L{n:02d}": (k[n - 1], 4) for w, k in _E4_PUBLISHED.items() for n in range(1, 11)},
    **{f"ext{e}": (k, 4) for e, k in enumerate((0, 0, 0, 0, 0, 0, 0, 1, 1, 4, 2, 3, 4, 3, 4))},
    **{f"e2_ext{e}": (k, 5) for e, k in enumerate((0, 0, 0, 0, 0, 3, 4, 5, 3, 4, 5, 5, 4))},
}
ROW_FIELDS = ("system", "point", "seed", "split", "split_level", "degradation_level", "category", "levels_trained",
              "active_at_split", "loss_at_split", "final_weights", "final_test_loss", "epochs")
SYSTEMS = ("lth_jax", "thesis_code", "thesis_published")
_POINT = re.compile(r"^(?:ext(\d+)|e2_ext(\d+)|w(\d+)_L(\d+))$")


def parse_point(name: str) -> re.Match:
    """The parts of point ``name``: (E1 level, E2 level, E4 width, E4 levels), ``None`` where not its kind."""
    match = _POINT.match(name)
    if match is None:
        raise UserError(f"point {name!r} is not extN (E1), e2_extN (E2) or wW_LN (E4), e.g. ext9, e2_ext4, w48_L10")
    return match


def point_overrides(name: str) -> dict:
    """The :class:`ThesisConfig` fields that make point ``name`` (everything else: the thesis's defaults)."""
    e1, e2, width, levels = parse_point(name).groups()
    if e1 is not None:
        return {"base_shape": (4, 8, 8, 2), "extension_level": int(e1), "shape": None, "levels": None, "target": None, "rate": 0.32}
    if e2 is not None:
        return {"base_shape": (4, 20, 2), "extension_level": int(e2), "shape": None, "levels": None, "target": None, "rate": 0.32}
    return {"shape": (4, int(width), int(width), 2), "extension_level": None, "levels": int(levels), "target": E4_TARGET, "rate": None}


def experiment_of(name: str) -> str:
    """``"E1"``, ``"E2"`` or ``"E4"``."""
    e1, e2, _, _ = parse_point(name).groups()
    return "E1" if e1 is not None else "E2" if e2 is not None else "E4"


def point_axis(name: str) -> tuple[int, int | None]:
    """(x, y) of a point in its grid: (extension level, None) or (levels, width)."""
    e1, e2, width, levels = parse_point(name).groups()
    return (int(e1 if e1 is not None else e2), None) if width is None else (int(levels), int(width))
