"""A small IMP example: one MLP on the thesis's Moons+Circles data, one line per level.

:func:`run` is the experiment of ``experiments/imp_mlp.py``: plain iterative
magnitude pruning (global or layerwise, optional late resetting) of an MLP,
written as a resumable IMP run directory under ``workdir/imp`` with
``config.json``, ``metrics.jsonl`` (one object per level) and ``summary.json``.
"""

from __future__ import annotations

import os
from typing import Callable

import ml_collections
from etils import epath

from lth_jax import objectives
from lth_jax.data.synthetic import moons_circles
from lth_jax.errors import UserError
from lth_jax.imp import check_imp, run_imp
from lth_jax.models import MLP
from lth_jax.optim import OptimizerRecipe
from lth_jax.results import environment, remove_temporaries, write_json, write_jsonl
from lth_jax.train import TrainConfig
from lth_jax.trajectory import PruningPlan

__all__ = ["default_config", "run", "HEADER", "format_row"]

HEADER = f"{'level':>5}  {'weights':>8}  {'kept %':>7}  {'circles acc':>11}  {'moons acc':>9}  {'test loss':>9}  {'epochs':>6}"


def default_config() -> ml_collections.ConfigDict:
    """Every field of the example, with its defaults."""
    c = ml_collections.ConfigDict()
    c.shape = (4, 32, 32, 2)  # Moons+Circles has 4 inputs and 2 outputs
    c.rate = 0.32  # fraction of the remaining weights pruned per level
    c.levels = 8  # pruning levels after the dense level 0
    c.scope = "global"  # global or layerwise
    c.rewind = "0"  # 0 (the initialization), e.g. 1ep or 100it
    c.epochs = 60
    c.batch_size = 64
    c.optimizer = "adam"  # sgd, adam, adamw
    c.learning_rate = 1e-3
    c.patience = 0  # early stopping on the test loss (0: off)
    c.seed = 0
    c.data_seed = 0  # the Moons+Circles generators
    c.log_every_epochs = 0  # progress lines (0: levels only)
    return c


def format_row(record: dict) -> str:
    circles, moons = record["test_accuracy"]
    return (
        f"{record['level']:>5d}  {record['weights_remaining']:>8d}  {100 * record['fraction_remaining']:>6.2f}%  "
        f"{circles:>11.4f}  {moons:>9.4f}  {record['test_loss']:>9.4f}  {record['epochs']:>6d}"
    )


def run(c, workdir: str | os.PathLike, *, log_fn: Callable[[str], None] = print) -> dict:
    """IMP of the MLP ``c.shape`` on Moons+Circles into ``workdir``; returns the summary."""
    workdir = epath.Path(workdir)
    shape = tuple(int(v) for v in c.shape)
    data = moons_circles(c.data_seed)
    if len(shape) < 2 or shape[0] != data.num_inputs or shape[-1] != data.num_outputs:
        raise UserError(f"shape={shape} must start with {data.num_inputs} inputs and end with {data.num_outputs} outputs")
    config = TrainConfig(epochs=c.epochs, batch_size=c.batch_size, optimizer=OptimizerRecipe(name=c.optimizer, learning_rate=c.learning_rate),
                         early_stopping_patience=c.patience or None, data_seed=c.data_seed, log_every_epochs=c.log_every_epochs)
    if not 0.0 < c.rate < 1.0:
        raise UserError(f"rate={c.rate} is outside the open interval (0, 1)")
    plan = PruningPlan(rate=c.rate, levels=c.levels, scope=c.scope)
    args = (MLP(shape), objectives.sigmoid_tasks(data.num_outputs), data.train, data.test, config, plan)
    kwargs = dict(rewind=c.rewind, seed=c.seed, workdir=workdir / "imp",
                  ticket_info={"model": "mlp", "shape": list(shape), "dataset": "moons_circles", "task_classes": [2, 2]})
    check_imp(*args, **kwargs)  # a rejected rerun writes nothing
    remove_temporaries(workdir)
    write_json(workdir / "config.json", {"config": c.to_dict(), "environment": environment()})
    log_fn(f"IMP on Moons+Circles, MLP {shape}, {c.scope} pruning at rate {c.rate}, rewind {c.rewind}")
    log_fn(HEADER)
    result = run_imp(*args, level_callback=lambda level: log_fn(format_row(level.record)), log_fn=log_fn, **kwargs)
    write_jsonl(workdir / "metrics.jsonl", result.records)
    summary = {"trajectory": result.trajectory, "dense_test_accuracy": result.records[0]["test_accuracy"],
               "final": result.records[-1], "levels_trained": len(result.records)}
    write_json(workdir / "summary.json", summary)
    return summary
