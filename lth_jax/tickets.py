"""Tickets: a mask and the weights to start from, and what they were made with.

A ticket directory holds everything transfer needs::

    ticket/
      arrays.npz    {"mask", "params", "batch_stats"}  (params = θ_k ⊙ m)
      ticket.json   how the ticket was made (written last: the directory is complete)

``ticket.json`` records, besides the model, dataset, level, seed and rewind
step, what the operations on a ticket must not guess (:class:`TicketInfo`):

- ``prunable``: the prunable rule, as the regular expressions of the paths kept
  dense (``{"exclude": [...]}``). Counting, random permutations and fractions
  remaining use it, so every ticket of a study counts over the same weights;
- ``head``: the output layer's parameter path and kernel shape, and
  ``classes``, the number of outputs as an integer. A transfer replaces the
  output layer exactly when its shape differs on the target (or on request).

A missing entry is a clear error (a ticket written by an older lth_jax, or by
hand), never a silent default. This module also holds the operations on
tickets: :func:`transfer_ticket` (Morcos et al.'s transfer to a target),
:func:`random_ticket` (the random-ticket baseline) and :func:`check_fits`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np
from etils import epath

from lth_jax import masks as mask_lib
from lth_jax.checkpoint import is_complete, load_tree, save_tree, tree_meta
from lth_jax.errors import UserError
from lth_jax.executors import build_executor
from lth_jax.loop import Replica, fit_replicas, level_record, resume_stage
from lth_jax.optim import make_optimizer
from lth_jax.pytree import named_leaves
from lth_jax.rng import Streams
from lth_jax.stage import Stage
from lth_jax.train import TrainConfig, create_train_state

__all__ = [
    "Ticket",
    "save_ticket",
    "load_ticket",
    "is_ticket",
    "ticket_rule",
    "ticket_head",
    "head_info",
    "prunable_info",
    "ticket_counts",
    "needs_fresh_head",
    "check_fits",
    "transfer_ticket",
    "random_ticket",
    "is_imp_run",
    "ticket_levels",
    "level_ticket_dir",
    "TicketTrainer",
    "ticket_trainer",
    "TicketJob",
    "train_ticket",
    "train_tickets",
]


@dataclasses.dataclass
class Ticket:
    """A winning (or random) ticket.

    ``params`` are the rewind weights with the mask applied (``θ_k ⊙ m``),
    ``batch_stats`` the BatchNorm statistics at the rewind step (``{}`` if none),
    ``info`` the metadata of ``ticket.json``.
    """

    mask: Any
    params: Any
    batch_stats: Any
    info: dict


def save_ticket(directory: str | os.PathLike, ticket: Ticket) -> None:
    """Write ``ticket`` to ``directory`` (``ticket.json`` last)."""
    save_tree(directory, {"mask": ticket.mask, "params": ticket.params, "batch_stats": ticket.batch_stats}, ticket.info, name="ticket")


def is_ticket(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a complete ticket."""
    return is_complete(directory, "ticket")


def load_ticket(directory: str | os.PathLike) -> Ticket:
    """Load a ticket directory written by :func:`save_ticket`."""
    if not is_ticket(directory):
        raise UserError(f"{os.fspath(directory)} is not a ticket directory (no complete ticket.json)")
    arrays = load_tree(directory, name="ticket")
    return Ticket(arrays["mask"], arrays["params"], arrays.get("batch_stats") or {}, tree_meta(directory, "ticket"))


# --------------------------------------------------------------------------- metadata


def prunable_info(exclude) -> dict:
    """The ``prunable`` entry of ``ticket.json`` for a rule excluding ``exclude``."""
    return {"exclude": [exclude] if isinstance(exclude, str) else list(exclude)}


def head_info(params: Any, head: str) -> dict:
    """The ``head`` entry of ``ticket.json``: the output layer's path and kernel shape."""
    if head not in params or "kernel" not in params[head]:
        raise UserError(f"the model has no output layer {head!r} with a kernel")
    return {"path": head, "shape": list(np.shape(params[head]["kernel"]))}


def _required(info: dict, key: str):
    if key not in info or info[key] is None:
        raise UserError(
            f"the ticket does not record {key!r} (ticket.json has {', '.join(sorted(info)) or 'nothing'}): "
            "it was written by an older lth_jax or by hand; find it again with this version"
        )
    return info[key]


def ticket_rule(info: dict) -> mask_lib.Prunable:
    """The prunable rule a ticket was made with (from its ``prunable`` entry)."""
    prunable = _required(info, "prunable")
    if "exclude" not in prunable:
        raise UserError(f"the ticket was made with a custom prunable rule {prunable}: pass the rule explicitly")
    return mask_lib.prunable_rule(prunable["exclude"])


def ticket_head(info: dict) -> tuple[str, tuple[int, ...]]:
    """The output layer's path and kernel shape a ticket records."""
    head = _required(info, "head")
    return head["path"], tuple(head["shape"])


# --------------------------------------------------------------------------- operations


def check_fits(ticket_params: Any, target_params: Any, *, skip: Callable[[tuple[str, ...]], bool] = lambda path: False) -> None:
    """Raise a ``UserError`` naming the first parameter path (in the target's order)
    where the ticket does not fit the target model: missing on one side, or of
    another shape. Paths for which ``skip(path)`` is true are not compared.
    Either tree may hold ``ShapeDtypeStruct`` leaves (nothing is computed)."""
    ticket = {p: tuple(np.shape(x)) for p, x in named_leaves(ticket_params)[0] if not skip(p)}
    target = {p: tuple(np.shape(x)) for p, x in named_leaves(target_params)[0] if not skip(p)}
    for path, shape in target.items():
        name = "/".join(path)
        if path not in ticket:
            raise UserError(f"the ticket does not fit the target model: the target has {name} {shape}, the ticket has no such parameter")
        if ticket[path] != shape:
            raise UserError(f"the ticket does not fit the target model: {name} is {ticket[path]} in the ticket and {shape} in the target")
    for path, shape in ticket.items():
        if path not in target:
            raise UserError(f"the ticket does not fit the target model: the ticket has {'/'.join(path)} {shape}, the target has no such parameter")


def needs_fresh_head(info: dict, target_params: Any, *, reinit_head: bool = False) -> bool:
    """Whether a transfer replaces the output layer: on request, or when the
    target's output kernel has another shape than the ticket's."""
    path, shape = ticket_head(info)
    if path not in target_params or "kernel" not in target_params[path]:
        raise UserError(f"the target model has no output layer {path!r} (the ticket's) to keep or replace")
    return bool(reinit_head) or tuple(np.shape(target_params[path]["kernel"])) != shape


def _replace_where(tree: Any, other: Any, where: Callable[[tuple[str, ...]], bool]) -> Any:
    """``tree`` with the leaves at paths where ``where(path)`` taken from ``other`` (same structure)."""
    named, treedef = named_leaves(tree)
    others = jax.tree.leaves(other)
    return jax.tree.unflatten(treedef, [o if where(p) else x for (p, x), o in zip(named, others)])


def _counts(mask: Any, rule: mask_lib.Prunable) -> dict:
    remaining, total = mask_lib.count_remaining(mask, rule), mask_lib.count_prunable(mask, rule)
    return {"weights_remaining": remaining, "total_prunable": total, "fraction_remaining": remaining / total}


def ticket_counts(ticket: Ticket) -> dict:
    """``weights_remaining``, ``total_prunable`` and ``fraction_remaining`` of a
    ticket's mask, counted with the prunable rule it records."""
    return _counts(ticket.mask, ticket_rule(ticket.info))


def transfer_ticket(
    ticket: Ticket, target_params: Any, *, reinit_head: bool = False, prune_head: bool = False, exclude=None
) -> Ticket:
    """The start of a source ticket on a target model.

    ``target_params`` is a fresh initialization of the target model; only its
    output layer is used, when its shape differs from the ticket's or
    ``reinit_head`` is set. A fresh head is dense unless ``prune_head``: then its
    kernel keeps the ticket's fraction of weights, chosen by magnitude of the
    fresh weights. Every other layer has exactly the source mask and the weights
    ``θ_k ⊙ m``; batch statistics are the source's at step ``k``. ``exclude``:
    the target's prunable rule (default: the ticket's), which the new ticket
    records and counts its weights with.
    """
    info = ticket.info
    head, _ = ticket_head(info)
    in_head = lambda p: bool(p) and p[0] == head  # noqa: E731
    fresh = needs_fresh_head(info, target_params, reinit_head=reinit_head)
    check_fits(ticket.params, target_params, skip=in_head if fresh else (lambda p: False))
    rule = ticket_rule(info) if exclude is None else mask_lib.prunable_rule(exclude)
    target_params = jax.device_get(target_params)
    params, mask, head_state = ticket.params, ticket.mask, "kept"
    if fresh:
        params = _replace_where(ticket.params, target_params, in_head)
        mask = _replace_where(ticket.mask, mask_lib.init_mask(target_params), in_head)
        head_state = "fresh"
        if prune_head:
            head_kernel = lambda p, leaf: in_head(p) and mask_lib.default_prunable(p, leaf)  # noqa: E731
            size = mask_lib.count_prunable(params, head_kernel)
            keep = round(float(_required(info, "fraction_remaining")) * size)
            mask = mask_lib.global_magnitude_prune(params, mask, count=size - keep, prunable=head_kernel)
            head_state = "fresh, pruned"
    mask = jax.device_get(mask)
    new_info = {
        **info,
        "ticket": "winning",
        "source_classes": _required(info, "classes"),
        "classes": int(np.shape(target_params[head]["kernel"])[-1]),
        "head": head_info(target_params, head),
        "head_state": head_state,
        "prunable": prunable_info(rule.exclude),
        **_counts(mask, rule),
    }
    return Ticket(mask=mask, params=jax.device_get(mask_lib.apply_mask(params, mask)), batch_stats=ticket.batch_stats, info=new_info)


def random_ticket(ticket: Ticket, fresh_params: Any, fresh_batch_stats: Any, key: jax.Array, *, scope: str = "layer") -> Ticket:
    """A random ticket with the sparsity of ``ticket``, on an independent fresh initialization.

    The mask is permuted over the weights the ticket's prunable rule counts,
    except a fresh dense output layer: within each layer (``scope="layer"``: the
    per-layer counts of global pruning are kept) or over all of them together
    (``"global"``: only the total is kept). Layers kept dense by the rule, and a
    fresh dense head, stay exactly as they are. The permutation starts from the
    *unmasked* fresh weights, so no weight is pruned twice.
    """
    check_fits(ticket.params, fresh_params)
    info = ticket.info
    rule = ticket_rule(info)
    head, _ = ticket_head(info)
    dense_head = info.get("head_state") == "fresh"
    pool = lambda p, leaf: rule(p, leaf) and not (dense_head and p[0] == head)  # noqa: E731
    mask = jax.device_get(mask_lib.random_mask(ticket.mask, key, scope=scope, prunable=pool))
    params = jax.device_get(mask_lib.apply_mask(fresh_params, mask))
    new_info = {**info, "ticket": "random", "random_scope": scope, **_counts(mask, rule)}
    return Ticket(mask=mask, params=params, batch_stats=jax.device_get(fresh_batch_stats), info=new_info)


# --------------------------------------------------------------------------- tickets in an IMP run directory


def is_imp_run(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` is the workdir of an IMP run (``run_imp``, ``find_ticket``)."""
    path = epath.Path(directory) / "settings.json"
    return path.exists() and '"kind": "imp"' in path.read_text()


def ticket_levels(run_dir: str | os.PathLike) -> list[int]:
    """The levels of an IMP workdir that hold a complete ticket."""
    return sorted(int(p.parent.parent.name.split("_")[1]) for p in epath.Path(run_dir).glob("level_*/ticket/ticket.json"))


def level_ticket_dir(run_dir: str | os.PathLike, level: int) -> epath.Path:
    """The ticket directory of ``level`` in an IMP workdir; a ``UserError`` lists the levels there are."""
    directory = epath.Path(run_dir) / f"level_{level:02d}" / "ticket"
    if not (directory / "ticket.json").exists():
        there = ", ".join(map(str, ticket_levels(run_dir))) or "none"
        raise UserError(f"level {level} has no ticket in {os.fspath(run_dir)}; levels with a ticket: {there}")
    return directory


# --------------------------------------------------------------------------- training a ticket


@dataclasses.dataclass
class TicketTrainer:
    """One model, dataset and recipe, compiled once for every ticket (masks are arguments)."""

    model: Any
    tx: Any
    config: TrainConfig
    executor: Any  # DataParallelEpochs, or VmappedEpochs (``vmap``: tickets trained as replicas of one program)
    vmap: bool = False


def ticket_trainer(model, objective, train_data, eval_data, config: TrainConfig, *, mesh=None, preprocess=None,
                   vmap: bool = False) -> TicketTrainer:
    """The trainer of :func:`train_tickets` for one model, dataset and recipe; ``vmap``: the
    tickets of one call train as replicas of one compiled program (in-memory data)."""
    steps_per_epoch = train_data.steps_per_epoch(config.batch_size, config.drop_remainder)
    tx = make_optimizer(config.optimizer, steps_per_epoch, config.epochs * steps_per_epoch)
    executor = build_executor(model, tx, objective, train_data, eval_data, config, vmap=vmap, mesh=mesh, preprocess=preprocess)
    return TicketTrainer(model, tx, config, executor, vmap)


def _default_settings(start: Ticket, trainer: TicketTrainer) -> dict:
    train = {k: v for k, v in trainer.config.to_dict().items() if not k.startswith(("log_", "checkpoint_"))}
    return {"ticket": start.info, "model": repr(trainer.model), "train": train}


@dataclasses.dataclass
class TicketJob:
    """One ticket to train (the arguments of :func:`train_ticket` but the trainer)."""

    start: Ticket
    seed: int = 0
    workdir: str | os.PathLike | None = None
    settings: dict | None = None
    log_prefix: str = ""


def train_ticket(start: Ticket, trainer: TicketTrainer, *, seed: int = 0, workdir: str | os.PathLike | None = None,
                 settings: dict | None = None, log_prefix: str = "", log_fn: Callable[[str], None] = print) -> dict:
    """Train ``start`` (mask, weights, batch statistics) with the trainer's recipe from
    step 0 to the end of its schedule; return the record (the keys of
    :func:`lth_jax.imp.level_record`; ``level`` and the weight counts from the ticket).

    With a ``workdir`` it is a stage with ``settings`` (default: the ticket's info,
    the model and the recipe): done, it is read back; interrupted, it continues
    from its last checkpoint; made with other settings, it is refused. The
    workdir holds ``ticket/`` (the start), ``checkpoints/``, ``history.jsonl``
    and ``record.json`` (written last), like a level of an IMP run.
    """
    return train_tickets([TicketJob(start, seed, workdir, settings, log_prefix)], trainer, log_fn=log_fn)[0]


def train_tickets(jobs: Sequence[TicketJob], trainer: TicketTrainer, *, log_fn: Callable[[str], None] = print) -> list[dict]:
    """Train every ticket of ``jobs`` as :func:`train_ticket` does, together: the ones not done
    yet are the replicas of one :func:`lth_jax.loop.fit_replicas` call (one compiled program
    with a vmapping trainer), each its own stage. Returns the records in the order of ``jobs``."""
    records: list[dict | None] = [None] * len(jobs)
    pending = []
    for i, job in enumerate(jobs):
        stage = None if job.workdir is None else Stage(job.workdir, {"kind": "ticket", **(job.settings or _default_settings(job.start, trainer))},
                                                      checkpoint_async=trainer.config.checkpoint_async)
        if stage is not None:
            stage.open()
            if stage.done:
                records[i] = stage.record()
                continue
            if not stage.has("ticket"):
                save_ticket(stage.path("ticket"), job.start)
        state = create_train_state(job.start.params, trainer.tx, mask=job.start.mask, batch_stats=job.start.batch_stats,
                                   rng=Streams(job.seed).steps(), step=0)
        state, progress, checkpoint = resume_stage(stage, state, tag=job.log_prefix, log_fn=log_fn)
        pending.append((i, stage, Replica(state, (trainer.config.data_seed, job.seed), progress, checkpoint=checkpoint,
                                          log_prefix=job.log_prefix)))
    began = time.perf_counter()
    results = fit_replicas([replica for _, _, replica in pending], trainer.executor, trainer.config, log_fn=log_fn) if pending else []
    seconds = (time.perf_counter() - began) / max(1, len(pending))
    for (i, stage, _), result in zip(pending, results):
        start = jobs[i].start
        records[i] = {**level_record(int(start.info.get("level", 0)), ticket_counts(start), result, seconds, 0), "seed": jobs[i].seed}
        if stage is not None:
            stage.finish(records[i], result.history)
    return records
