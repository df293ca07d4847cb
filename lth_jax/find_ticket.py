"""Finding winning tickets on image classifiers, from an ml_collections config.

:func:`find_ticket` runs IMP with late resetting on the recipe that a config
describes (:mod:`lth_jax.recipe` turns the config into data, model, training
recipe and pruning plan, and documents every field) and writes the run
directory (with ``figures/levels.png``: accuracy against the fraction pruned,
and every layer's sparsity per level; and TensorBoard event files in
``tensorboard/``). ``rewind="auto"`` is resolved above this module, by
:func:`lth_jax.auto_rewind.run`, the experiment that ``experiments/find_ticket.py``
runs (presets: ``experiments/configs/find_ticket_*.py``).
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
from etils import epath

from lth_jax import masks as mask_lib
from lth_jax.data.registry import ImageData
from lth_jax.errors import UserError
from lth_jax.imp import check_imp, run_imp
from lth_jax.loop import format_level
from lth_jax.progress import Progress
from lth_jax.recipe import (  # noqa: F401  (the composition of a recipe, importable from here as before)
    OPTIMIZER_PRESETS,
    abstract_params,
    build_model,
    check_sizes,
    default_config,
    imp_arguments,
    load_data,
    planned_trajectory,
    preprocess_fn,
    pruning_plan,
    recipe_settings,
    ticket_info,
    train_config,
    with_optimizer,
)
from lth_jax.results import environment, note_damaged_rows, write_json, write_jsonl
from lth_jax.sizes import Divergences
from lth_jax.tensorboard import EventLog, scalars

__all__ = ["metrics_row", "find_ticket", "check_find_ticket", "run", "is_auto_rewind"]

LEVEL_SCALARS = ("weights_remaining", "fraction_remaining", "test_accuracy", "test_loss", "train_loss", "train_accuracy", "epoch")


def metrics_row(record: dict) -> dict:
    """A ``metrics.jsonl`` row from a level record."""
    keys = ("level", "weights_remaining", "fraction_remaining", "test_accuracy", "test_loss", "train_loss", "train_accuracy",
            "examples_per_second", "stopped_early", "diverged", "steps", "seconds")
    return {**{k: record.get(k) for k in keys}, "epoch": record["epochs"]}


def check_find_ticket(c, workdir: str | os.PathLike, *, data: ImageData) -> None:
    """Refuse (``UserError``) when ``workdir`` holds a find_ticket run with other
    settings; computes and writes nothing."""
    args, kwargs = imp_arguments(c, data)
    check_imp(*args, workdir=workdir, **kwargs)


def find_ticket(c, workdir: str | os.PathLike, *, data: ImageData | None = None, log_fn: Callable[[str], None] = print,
                progress: bool | None = None, auto_rewind: dict | None = None) -> dict:
    """IMP with late resetting on an image dataset; resumable. Returns the summary.
    ``data``: the config's dataset, already loaded (else it is loaded here);
    ``progress``: a progress bar (default: when stderr is a terminal and ``log_fn``
    is ``print``)."""
    if is_auto_rewind(c):
        raise UserError("rewind=auto: the rewind step is chosen by lth_jax.auto_rewind.run (experiments/find_ticket.py runs it)")
    workdir = epath.Path(workdir)
    check_sizes(c, workdir)
    data = load_data(c) if data is None else data
    args, kwargs = imp_arguments(c, data)
    check_imp(*args, workdir=workdir, **kwargs)  # a rejected rerun writes nothing
    if not (workdir / "config.json").exists():
        write_json(workdir / "config.json", {"config": c.to_dict(), "environment": environment()})
    note_damaged_rows(workdir / "metrics.jsonl", log_fn)
    plan = args[-1]
    bar = Progress(levels=len(planned_trajectory(c)), epochs=c.training.epochs, description=f"{c.model} on {c.dataset}",
                   enabled=progress if progress is not None or log_fn is print else False)
    log_fn = bar.write if log_fn is print else log_fn
    log_fn(f"{c.model} on {c.dataset} ({len(data.train)} train / {len(data.test)} test, input {tuple(data.image_shape)}), "
           f"{plan.scope} pruning, rewind {c.rewind}")
    rows: list[dict] = []
    layers: list[dict] = []  # per level, the ticket's per-layer sparsity (for the figure)
    rule = mask_lib.prunable_rule(plan.exclude)
    events = EventLog(workdir / "tensorboard")

    divergences = Divergences(float(np.log(data.num_classes)))  # chance: predicting every class alike

    def on_level(result) -> bool:
        rows.append(metrics_row(result.record))
        diverged = rows[-1]["diverged"] = divergences.check(result.seed, result.level, result.record)
        layers.append(mask_lib.sparsity_report(result.mask, rule))
        write_jsonl(workdir / "metrics.jsonl", rows)
        events.level(result.level, scalars(rows[-1], LEVEL_SCALARS))
        bar.level(result.record)
        log_fn(format_level(result.record))
        return diverged

    def on_epoch(record) -> None:
        events.epoch(record)
        bar.epoch(record)

    try:
        result = run_imp(*args, workdir=workdir, level_callback=on_level, on_epoch=on_epoch, log_fn=log_fn,
                         divergence_loss=divergences.limit, **kwargs)
    finally:
        events.close()
        bar.close()
    summary = {
        "model": c.model,
        "dataset": c.dataset,
        "trajectory": result.trajectory,
        "levels_trained": len(result.records),
        "dense_test_accuracy": result.records[0].get("test_accuracy"),  # none: diverged before its first evaluation
        "final": metrics_row(result.records[-1]),
        "tickets": [f"level_{r['level']:02d}/ticket" for r in result.records],
        **({"auto_rewind": auto_rewind} if auto_rewind is not None else {}),
    }
    write_json(workdir / "config.json", {"config": c.to_dict(), "environment": environment()})
    write_json(workdir / "summary.json", summary)
    title = f"{c.model} on {c.dataset} ({c.optimizer.name})"
    from lth_jax import plots  # matplotlib: imported when a figure is drawn

    drawn = [i for i, row in enumerate(rows) if row["test_accuracy"] is not None]  # a level may diverge before its first evaluation
    if drawn:
        plots.save(plots.plot_find_ticket([rows[i] for i in drawn], [layers[i] for i in drawn], title), workdir / "figures" / "levels.png")
    divergences.raise_first(f"--config.optimizer.learning_rate={c.optimizer.learning_rate:g}")
    return summary


def is_auto_rewind(c) -> bool:
    """Whether config ``c`` asks for the rewind step that instability analysis recommends."""
    return str(c.rewind).strip() == "auto"


def run(c, workdir: str | os.PathLike, *, log_fn: Callable[[str], None] = print) -> dict:
    """The find_ticket experiment of config ``c`` with a rewind step given (``rewind="auto"``:
    :func:`lth_jax.auto_rewind.run`, which ``experiments/find_ticket.py`` runs)."""
    return find_ticket(c, workdir, log_fn=log_fn)
