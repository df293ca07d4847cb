"""``find_ticket`` with ``rewind="auto"``: the rewind step chosen by instability analysis first.

Frankle et al. (2020) find that IMP works at scale when the survivors are
rewound to a step from which the dense network is stable (two copies trained
with different SGD noise end in one linear basin). With ``rewind="auto"`` the
dense network's instability is measured at ``c.auto_rewind.rewind_steps``
(into ``WORKDIR/auto_rewind``), then IMP runs with the recommended step
(:func:`lth_jax.instability.recommended_step`: the smallest step from which
every later step asked for is stable). The copies differ in the recipe's own
SGD noise: data order, and augmentation where the recipe augments.

This module sits above :mod:`lth_jax.find_ticket` and :mod:`lth_jax.instability`;
:func:`run` is the find_ticket experiment (``experiments/find_ticket.py``).
"""

from __future__ import annotations

import os
from typing import Callable

import ml_collections
from etils import epath

from lth_jax import find_ticket, instability
from lth_jax.data.registry import ImageData
from lth_jax.errors import UserError
from lth_jax.recipe import check_sizes, load_data

__all__ = ["noise_of", "resolve", "run"]


def noise_of(c, data: ImageData) -> str:
    """The SGD noise of find_ticket recipe ``c``: data order, and augmentation where it augments."""
    augments = bool(c.augment) and (bool(c.crop_padding) or bool(data.spec.flip))
    return "data_order_and_augmentation" if augments else "data_order"


def resolve(c, workdir: str | os.PathLike, *, data: ImageData, log_fn: Callable[[str], None] = print):
    """``(config, report)``: config ``c`` with the rewind step that instability analysis recommends
    (see the module's docstring), and that analysis' barriers; resumable in ``workdir``."""
    ic = instability.default_config(ml_collections.ConfigDict(c.to_dict()))
    ic.levels = (0,)
    ic.seeds = tuple(int(x) for x in (c.get("seeds") or ()))  # every seed's dense network: the mean barrier over them
    ic.rewind_steps, ic.threshold, ic.alphas = c.auto_rewind.rewind_steps, c.auto_rewind.threshold, c.auto_rewind.alphas
    ic.noise = noise_of(c, data)
    try:
        instability.check_config(ic)
    except UserError as e:  # named as the user typed it
        raise UserError(f"auto_rewind.{e}") from None
    log_fn(f"rewind auto: the dense network's instability at steps {ic.rewind_steps} ({ic.noise.replace('_', ' ')}; "
           f"in {os.fspath(workdir)})")
    summary = instability.run(ic, workdir, data=data, log_fn=log_fn)
    step = summary["recommended_rewind_step"]
    barriers = {k: cell["mean_barrier"] for k, cell in summary["levels"]["0"]["by_step"].items()}
    if step is None:
        shown = ", ".join(f"k={k}: {100 * b:.2f}%" for k, b in barriers.items())
        raise UserError(f"auto_rewind.rewind_steps={ic.rewind_steps}: the dense network is not stable (barrier below "
                        f"{100 * float(ic.threshold):g}%) from any of them on ({shown}); add later steps")
    log_fn(f"rewind auto: step {step} (the smallest from which every later step is stable, barrier below "
           f"{100 * float(ic.threshold):g}%)")
    resolved = ml_collections.ConfigDict(c.to_dict())
    resolved.rewind = f"{int(step)}it"
    return resolved, {"rewind_step": int(step), "threshold": float(ic.threshold), "noise": ic.noise, "barriers": barriers}


def run(c, workdir: str | os.PathLike, *, log_fn: Callable[[str], None] = print) -> dict:
    """The find_ticket experiment of config ``c`` (``experiments/find_ticket.py``): with
    ``rewind="auto"`` the rewind step is resolved first (:func:`resolve`), else as
    :func:`lth_jax.find_ticket.run`. Returns the summary."""
    if not find_ticket.is_auto_rewind(c):
        return find_ticket.run(c, workdir, log_fn=log_fn)
    workdir = epath.Path(workdir)
    check_sizes(c, workdir)
    data = load_data(c)
    resolved, report = resolve(c, workdir / "auto_rewind", data=data, log_fn=log_fn)
    return find_ticket.find_ticket(resolved, workdir, data=data, log_fn=log_fn, auto_rewind=report)
