"""Transferring tickets to other datasets and optimizers; random tickets (SPEC §1.2, §1.3).

A ticket found on a *source* (dataset, optimizer) is trained on a *target*:

- :func:`transfer_ticket` builds the target's start: the source's late-reset
  weights and mask (``θ_k ⊙ m``) and its batch statistics at step ``k``. When the
  class counts differ the output layer is replaced by the target model's freshly
  initialised one (dense by default, or pruned to the ticket's sparsity); when
  they match the source head is kept (or re-initialised on request).
- :func:`random_ticket` is the baseline: a random mask with the winning ticket's
  per-layer counts (or only its total count) applied to a fresh, independent
  initialization; the permutation starts from the *unmasked* fresh weights, so
  no weight is pruned twice.
- :func:`train_ticket` trains a start ticket with a recipe, resumably.

A ticket that does not fit the target model fails with the first mismatching
parameter path and both shapes (:func:`check_fits`). Inputs are adapted by the
data side (:func:`lth_jax.data.registry.adapt_images`: gray → 3 channels,
padding) to the model input the ticket was found with.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from lth_jax import masks as mask_lib
from lth_jax.checkpoint import StateCheckpointer, Ticket, is_ticket, save_ticket
from lth_jax.imp import level_record
from lth_jax.optim import make_optimizer
from lth_jax.pytree import named_leaves
from lth_jax.results import read_json, write_json, write_jsonl
from lth_jax.train import TrainConfig, create_train_state
from lth_jax.trainers import ReplicaRun, SequentialTrainer

__all__ = [
    "HEAD",
    "ticket_levels",
    "level_ticket_dir",
    "check_fits",
    "transfer_ticket",
    "random_ticket",
    "ticket_trainer",
    "train_ticket",
]

HEAD = "fc"  # the output layer's name in every model of the zoo


def ticket_levels(run_dir: str | Path) -> list[int]:
    """The levels of an IMP workdir (``run_imp`` / ``find_ticket``) that hold a complete ticket."""
    return sorted(int(p.parent.parent.name.split("_")[1]) for p in Path(run_dir).glob("level_*/ticket/ticket.json"))


def level_ticket_dir(run_dir: str | Path, level: int) -> Path:
    """The ticket directory of ``level`` in an IMP workdir; a ``ValueError`` lists the levels there are."""
    directory = Path(run_dir) / f"level_{level:02d}" / "ticket"
    if not is_ticket(directory):
        levels = ticket_levels(run_dir)
        there = ", ".join(map(str, levels)) if levels else "none"
        raise ValueError(f"level {level} has no ticket in {run_dir}; levels with a ticket: {there}")
    return directory


def _is_head(path: tuple[str, ...], head: str) -> bool:
    return bool(path) and path[0] == head


def check_fits(ticket_params: Any, target_params: Any, *, skip: Callable[[tuple[str, ...]], bool] = lambda path: False) -> None:
    """Raise ``ValueError`` naming the first parameter path (in the target's order)
    where the ticket does not fit the target model: missing on one side, or of
    another shape. Paths for which ``skip(path)`` is true are not compared."""
    ticket = {p: np.shape(x) for p, x in named_leaves(ticket_params)[0] if not skip(p)}
    target = {p: np.shape(x) for p, x in named_leaves(target_params)[0] if not skip(p)}
    for path, shape in target.items():
        name = "/".join(path)
        if path not in ticket:
            raise ValueError(f"the ticket does not fit the target model: the target has {name} {shape}, the ticket has no such parameter")
        if ticket[path] != shape:
            raise ValueError(f"the ticket does not fit the target model: {name} is {ticket[path]} in the ticket and {shape} in the target")
    for path, shape in ticket.items():
        if path not in target:
            raise ValueError(f"the ticket does not fit the target model: the ticket has {'/'.join(path)} {shape}, the target has no such parameter")


def _replace_where(tree: Any, other: Any, where: Callable[[tuple[str, ...]], bool]) -> Any:
    """``tree`` with the leaves at paths where ``where(path)`` taken from ``other`` (same structure)."""
    named, treedef = named_leaves(tree)
    others = jax.tree.leaves(other)
    return jax.tree.unflatten(treedef, [o if where(p) else x for (p, x), o in zip(named, others)])


def transfer_ticket(
    ticket: Ticket,
    target_params: Any,
    *,
    num_classes: int,
    head: str = HEAD,
    reinit_head: bool = False,
    prune_head: bool = False,
) -> Ticket:
    """The start of a source ticket on a target with ``num_classes`` classes.

    ``target_params`` is a fresh initialization of the target model; only its
    output layer (``head``) is used, when the class counts differ or
    ``reinit_head`` is set. A fresh head is dense unless ``prune_head``: then its
    kernel keeps the ticket's overall fraction of weights, chosen by magnitude of
    the fresh weights. Every other layer has exactly the source mask and the
    weights ``θ_k ⊙ m``; batch statistics are the source's at step ``k``.
    """
    source_classes = ticket.info.get("classes")
    fresh_head = reinit_head or source_classes != num_classes
    check_fits(ticket.params, target_params, skip=(lambda p: _is_head(p, head)) if fresh_head else (lambda p: False))
    target_params = jax.device_get(target_params)
    if not fresh_head:
        params, mask, head_state = ticket.params, ticket.mask, "kept"
    else:
        if not any(_is_head(p, head) for p, _ in named_leaves(target_params)[0]):
            raise ValueError(f"the target model has no output layer named {head!r} to replace")
        in_head = lambda p: _is_head(p, head)
        params = _replace_where(ticket.params, target_params, in_head)
        mask = _replace_where(ticket.mask, mask_lib.init_mask(target_params), in_head)
        head_state = "fresh"
        if prune_head:
            head_kernel = lambda p, leaf: in_head(p) and mask_lib.default_prunable(p, leaf)
            size = mask_lib.count_prunable(params, head_kernel)
            keep = round(float(ticket.info["fraction_remaining"]) * size)
            mask = mask_lib.global_magnitude_prune(params, mask, count=size - keep, prunable=head_kernel)
            head_state = "fresh, pruned"
    mask = jax.device_get(mask)
    info = {**ticket.info, "ticket": "winning", "classes": num_classes, "source_classes": source_classes, "head": head_state}
    return Ticket(mask=mask, params=jax.device_get(mask_lib.apply_mask(params, mask)), batch_stats=ticket.batch_stats, info=info)


def random_ticket(ticket: Ticket, fresh_params: Any, fresh_batch_stats: Any, key: jax.Array, *, scope: str = "layer") -> Ticket:
    """A random ticket with the sparsity of ``ticket``: its mask permuted within each
    prunable layer (``scope="layer"``: the per-layer counts of global pruning are
    kept) or over all prunable weights (``"global"``: only the total is kept),
    applied to an independent fresh initialization with its fresh batch statistics."""
    check_fits(ticket.params, fresh_params)
    mask = jax.device_get(mask_lib.random_mask(ticket.mask, key, scope=scope))
    params = jax.device_get(mask_lib.apply_mask(fresh_params, mask))
    return Ticket(mask=mask, params=params, batch_stats=jax.device_get(fresh_batch_stats), info={**ticket.info, "ticket": "random", "random_scope": scope})


def ticket_trainer(model, objective, train_data, eval_data, config: TrainConfig, *, mesh=None, preprocess=None) -> SequentialTrainer:
    """The trainer of :func:`train_ticket` for one model, dataset and recipe: its
    steps compile once and serve every ticket (masks are arguments, not constants)."""
    steps_per_epoch = train_data.steps_per_epoch(config.batch_size, config.drop_remainder)
    tx = make_optimizer(config.optimizer, steps_per_epoch, config.epochs * steps_per_epoch)
    return SequentialTrainer(model, tx, objective, train_data, eval_data, config, mesh=mesh, preprocess=preprocess)


def train_ticket(
    start: Ticket,
    trainer: SequentialTrainer,
    *,
    seed: int = 0,
    workdir: str | Path | None = None,
    log_prefix: str = "",
    log_fn: Callable[[str], None] = print,
) -> dict:
    """Train ``start`` (mask, weights, batch statistics) with the trainer's recipe from
    step 0 to the end of its schedule (:func:`ticket_trainer`); return the record
    (the keys of :func:`lth_jax.imp.level_record`, ``level`` from the ticket).

    With a ``workdir`` it is a stage: a finished one (``record.json``) is read, not
    retrained; an interrupted one continues from its last checkpoint. The workdir
    holds ``ticket/`` (the start), ``checkpoints/``, ``history.jsonl`` and
    ``record.json`` (written last), like a level of an IMP run.
    """
    workdir = None if workdir is None else Path(workdir)
    if workdir is not None and (workdir / "record.json").exists():
        return read_json(workdir / "record.json")
    state = create_train_state(start.params, trainer.tx, mask=start.mask, batch_stats=start.batch_stats, rng=jax.random.PRNGKey(seed), step=0)
    progress, checkpointer = None, None
    if workdir is not None:
        if not is_ticket(workdir / "ticket"):
            save_ticket(workdir / "ticket", start)
        checkpointer = StateCheckpointer(workdir / "checkpoints")
        state, progress = checkpointer.resume(state)
        if progress is not None:
            log_fn(f"{log_prefix}: resuming from step {int(state.step)}")
    started = time.perf_counter()
    run = ReplicaRun(
        state=state,
        data_seed=(trainer.config.data_seed, seed),
        progress=progress,
        checkpoint_fn=None if checkpointer is None else checkpointer.save_progress,
        log_prefix=log_prefix,
    )
    result = trainer.fit([run], log_fn=log_fn)[0]
    total = mask_lib.count_prunable(start.mask)
    record = level_record(int(start.info.get("level", 0)), mask_lib.count_remaining(start.mask), total, result, time.perf_counter() - started, 0)
    record["seed"] = seed
    if workdir is not None:
        write_jsonl(workdir / "history.jsonl", result.history)
        write_json(workdir / "record.json", record)
        checkpointer.clear()
    return record
