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

import ml_collections
import numpy as np
from etils import epath

from lth_jax import masks as mask_lib
from lth_jax.data.registry import ImageData
from lth_jax.drawing import Drawers, helpers_for
from lth_jax.errors import UserError
from lth_jax.imp import check_imp, run_imp, run_imp_seeds
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
    replicas_together,
    run_seeds,
    ticket_info,
    train_config,
    with_optimizer,
)
from lth_jax.results import environment, note_damaged_rows, remove_temporaries, write_json, write_jsonl
from lth_jax.sizes import Divergences
from lth_jax.tensorboard import EventLog, scalars

__all__ = ["metrics_row", "seed_config", "find_ticket", "check_find_ticket", "run", "is_auto_rewind"]

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
    seeds, several = run_seeds(c)
    kwargs.pop("seed")
    check_imp(*args, workdir=workdir, **({"seeds": seeds} if several else {"seed": seeds[0]}), **kwargs)


def seed_config(c, seed: int):
    """Config ``c`` as the run of one of its seeds (what ``WORKDIR/seed_<s>/config.json`` records)."""
    seeded = ml_collections.ConfigDict(c.to_dict())
    seeded.seed, seeded.seeds = int(seed), ()
    return seeded


class _SeedRun:
    """The outputs of one seed: ``metrics.jsonl`` rows, each level's layer sparsity, summary and figure."""

    def __init__(self, c, directory: epath.Path, log_fn):
        self.c, self.directory = c, directory
        self.rows: list[dict] = []
        self.layers: list[dict] = []  # per level, the ticket's per-layer sparsity (for the figure)
        note_damaged_rows(directory / "metrics.jsonl", log_fn)
        if not (directory / "config.json").exists():
            write_json(directory / "config.json", {"config": c.to_dict(), "environment": environment()})

    def level(self, result, diverged: bool, rule) -> dict:
        row = metrics_row(result.record)
        row["diverged"] = diverged
        self.rows.append(row)
        self.layers.append(mask_lib.sparsity_report(result.mask, rule))
        write_jsonl(self.directory / "metrics.jsonl", self.rows)
        return row

    def finish(self, result, extra: dict) -> tuple[dict, tuple | None]:
        """Write the seed's summary; returns it and its figure, ``(plot, args, path)`` for
        :meth:`lth_jax.drawing.Drawers.save` (None when no level was evaluated)."""
        c = self.c
        summary = {
            "model": c.model,
            "dataset": c.dataset,
            "seed": int(c.seed),
            "trajectory": result.trajectory,
            "levels_trained": len(result.records),
            "dense_test_accuracy": result.records[0].get("test_accuracy"),  # none: diverged before its first evaluation
            "final": metrics_row(result.records[-1]),
            "tickets": [f"level_{r['level']:02d}/ticket" for r in result.records],
            **extra,
        }
        write_json(self.directory / "config.json", {"config": c.to_dict(), "environment": environment()})
        write_json(self.directory / "summary.json", summary)
        from lth_jax import plots  # matplotlib: imported when a figure is drawn

        drawn = [i for i, row in enumerate(self.rows) if row["test_accuracy"] is not None]  # a level may diverge before evaluation
        title = f"{c.model} on {c.dataset} ({c.optimizer.name}, seed {c.seed})"
        figure = (plots.plot_find_ticket, ([self.rows[i] for i in drawn], [self.layers[i] for i in drawn], title),
                  self.directory / "figures" / "levels.png")
        return summary, figure if drawn else None


def find_ticket(c, workdir: str | os.PathLike, *, data: ImageData | None = None, log_fn: Callable[[str], None] = print,
                progress: bool | None = None, auto_rewind: dict | None = None) -> dict:
    """IMP with late resetting on an image dataset; resumable. Returns the summary.

    One seed (``c.seed``): the workdir is its run. Several (``c.seeds``): each seed's run is
    ``workdir/seed_<s>`` (its own levels, stages, metrics, summary and figure) and they train
    level by level together, as replicas of one compiled program where
    :func:`lth_jax.recipe.replicas_together` says so, else one after another; the
    workdir's ``summary.json`` holds every seed's.
    ``data``: the config's dataset, already loaded (else it is loaded here);
    ``progress``: a progress bar (default: when stderr is a terminal and ``log_fn``
    is ``print``)."""
    if is_auto_rewind(c):
        raise UserError("rewind=auto: the rewind step is chosen by lth_jax.auto_rewind.run (experiments/find_ticket.py runs it)")
    workdir = epath.Path(workdir)
    seeds, several = run_seeds(c)
    check_sizes(c, workdir)
    data = load_data(c) if data is None else data
    together = replicas_together(c, data, len(seeds))
    if together:
        check_sizes(c, workdir, replicas=len(seeds))
    check_find_ticket(c, workdir, data=data)  # a rejected rerun writes nothing
    args, kwargs = imp_arguments(c, data)
    kwargs.pop("seed")
    if several:  # the seeds' directory: its own files (each seed's run is a stage of its own)
        remove_temporaries(workdir)  # what a killed run's writes left
        if not (workdir / "config.json").exists():
            write_json(workdir / "config.json", {"config": c.to_dict(), "environment": environment()})
    plan = args[-1]
    bar = Progress(levels=len(planned_trajectory(c)), epochs=c.training.epochs, seeds=len(seeds), description=f"{c.model} on {c.dataset}",
                   enabled=progress if progress is not None or log_fn is print else False)
    log_fn = bar.write if log_fn is print else log_fn
    runs = {s: _SeedRun(seed_config(c, s) if several else c, workdir / f"seed_{s}" if several else workdir, log_fn) for s in seeds}
    log_fn(f"{c.model} on {c.dataset} ({len(data.train)} train / {len(data.test)} test, input {tuple(data.image_shape)}), "
           f"{plan.scope} pruning, rewind {c.rewind}" + (f", seeds {','.join(map(str, seeds))} "
                                                        f"{'as replicas of one program' if together else 'one after another'}"
                                                        if several else ""))
    rule = mask_lib.prunable_rule(plan.exclude)
    events = EventLog(workdir / "tensorboard")
    divergences = Divergences(float(np.log(data.num_classes)))  # chance: predicting every class alike

    def on_level(result) -> bool:
        diverged = divergences.check(result.seed, result.level, result.record)
        row = runs[result.seed].level(result, diverged, rule)
        events.level(result.level, scalars(row, LEVEL_SCALARS), seed=result.seed if several else None)
        bar.level(result.record)
        log_fn((f"seed {result.seed}  " if several else "") + format_level(result.record))
        return diverged

    def on_epoch(record) -> None:
        events.epoch(record, by_seed=several)
        bar.epoch(record)

    with Drawers(helpers_for(len(seeds))) as drawers:  # helpers import matplotlib while the seeds train
        try:
            results = run_imp_seeds(*args, seeds=seeds, vmap=together, workdir=workdir if several else None, level_callback=on_level,
                                    on_epoch=on_epoch, log_fn=log_fn, divergence_loss=divergences.limit, **kwargs) if several else \
                [run_imp(*args, seed=seeds[0], workdir=workdir, vmap=together, level_callback=on_level, on_epoch=on_epoch, log_fn=log_fn,
                         divergence_loss=divergences.limit, **kwargs)]
        finally:
            events.close()
            bar.close()
        extra = {"auto_rewind": auto_rewind} if auto_rewind is not None else {}
        finished = {s: runs[s].finish(result, extra) for s, result in zip(seeds, results)}
        drawers.save([figure for _, figure in finished.values() if figure is not None])  # each seed's, shared with the helpers
    summaries = {s: summary for s, (summary, _) in finished.items()}
    summary = summaries[seeds[0]]
    if several:
        summary = {"model": c.model, "dataset": c.dataset, "seeds": {str(s): v for s, v in summaries.items()},
                   "replicas": "vmap" if together else "sequential", "levels_trained": sum(v["levels_trained"] for v in summaries.values()),
                   **extra}
        write_json(workdir / "config.json", {"config": c.to_dict(), "environment": environment()})
        write_json(workdir / "summary.json", summary)
    divergences.raise_first(f"--config.optimizer.learning_rate={c.optimizer.learning_rate:g}", seeds=len(seeds))
    return summary


def is_auto_rewind(c) -> bool:
    """Whether config ``c`` asks for the rewind step that instability analysis recommends."""
    return str(c.rewind).strip() == "auto"


def run(c, workdir: str | os.PathLike, *, log_fn: Callable[[str], None] = print) -> dict:
    """The find_ticket experiment of config ``c`` with a rewind step given (``rewind="auto"``:
    :func:`lth_jax.auto_rewind.run`, which ``experiments/find_ticket.py`` runs)."""
    return find_ticket(c, workdir, log_fn=log_fn)
