"""Iterative magnitude pruning with late resetting (SPEC §1.1, §2.3).

Level 0 trains the dense network and captures the *rewind state* (weights and
batch statistics at step ``k``; ``k = 0`` is the initialization). Every later
level prunes from the previous level's trained weights (globally or per layer,
to the exact count of the trajectory), resets the survivors and the batch
statistics to step ``k``, and trains from step ``k`` to the end of the schedule
with a fresh optimizer state; the learning-rate schedule continues at ``k``.
Masks are nested: ``mask_{l+1} ⊆ mask_l``.

With a ``workdir`` the run is resumable: finished levels are skipped, an
interrupted level continues from its last checkpoint. Layout::

    workdir/
      imp.json                 the run's settings and trajectory (checked on resume)
      rewind/                  θ_k and batch statistics at step k (orbax)
      level_00/
        ticket/                mask, θ_k ⊙ m, batch statistics, ticket.json
        trained/               the level's trained params and batch statistics
        checkpoints/           train state of the unfinished level (removed when done)
        history.jsonl          one record per epoch
        record.json            the level's record; written last: the level is done
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import jax
import numpy as np

from lth_jax import masks as mask_lib
from lth_jax.checkpoint import StateCheckpointer, Ticket, is_ticket, load_ticket, load_tree, save_ticket, save_tree
from lth_jax.objectives import Objective
from lth_jax.optim import make_optimizer
from lth_jax.results import read_json, write_json, write_jsonl
from lth_jax.trainers import ReplicaRun, SequentialTrainer, VmapTrainer
from lth_jax.trajectory import rate_for_target, trajectory
from lth_jax.train import (
    RewindState,
    TrainConfig,
    TrainState,
    create_train_state,
    init_variables,
    parse_steps,
)

__all__ = ["PruningPlan", "LevelResult", "ImpResult", "run_imp", "run_imp_seeds", "format_level", "level_record"]

SCOPES = ("global", "layerwise")


@dataclasses.dataclass(frozen=True)
class PruningPlan:
    """How many weights each level keeps.

    Give two of ``rate``, ``levels``, ``target`` (see :func:`lth_jax.trajectory.trajectory`),
    or ``counts``: an explicit trajectory ``[T0, T1, ..., T_L]`` of prunable weights
    remaining (``T0`` must be the model's prunable total), e.g. the thesis's
    network extension. ``scope="global"`` ranks all prunable weights together and
    follows the trajectory exactly; ``"layerwise"`` removes the same fraction
    from every layer (counts then follow per-layer rounding). ``exclude`` holds
    regular expressions of prunable paths to keep dense (e.g. ``"^output/"``).
    """

    rate: float | None = None
    levels: int | None = None
    target: int | None = None
    counts: tuple[int, ...] | None = None
    scope: str = "global"
    exclude: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "exclude", tuple([self.exclude] if isinstance(self.exclude, str) else self.exclude))
        if self.scope not in SCOPES:
            raise ValueError(f"scope={self.scope!r} is not one of {', '.join(SCOPES)}")
        if self.counts is not None:
            counts = tuple(int(c) for c in self.counts)
            object.__setattr__(self, "counts", counts)
            if any(v is not None for v in (self.rate, self.levels, self.target)):
                raise ValueError("give either counts or two of rate, levels, target, not both")
            if not counts or min(counts) < 0 or any(b > a for a, b in zip(counts, counts[1:])):
                raise ValueError(f"counts={list(counts)} must be non-negative and non-increasing")
            if self.scope == "layerwise":
                raise ValueError("an explicit counts trajectory needs scope='global' (layerwise pruning prunes fractions)")
        elif self.levels is not None and self.levels < 0:
            raise ValueError(f"levels={self.levels} is negative")

    def trajectory(self, total: int) -> list[int]:
        """Prunable weights remaining after each level, starting from ``total``."""
        if self.counts is not None:
            if self.counts[0] != total:
                raise ValueError(f"counts start at {self.counts[0]} but the model has {total} prunable weights")
            return list(self.counts)
        return trajectory(total, rate=self.rate, levels=self.levels, target=self.target)

    def layerwise_fraction(self, total: int) -> float:
        """The per-layer fraction pruned at each level in layerwise scope."""
        if self.rate is not None:
            return float(self.rate)
        return rate_for_target(total, self.target, self.levels)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class LevelResult:
    """What a level callback receives."""

    level: int
    record: dict
    mask: Any
    trained_params: Any
    trained_batch_stats: Any
    seed: int = 0


class _Tickets(Sequence):
    """Tickets by level: held in memory, or loaded from the workdir on access."""

    def __init__(self):
        self._items: list[Any] = []

    def append(self, item) -> None:
        self._items.append(item)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):
        item = self._items[i]
        if isinstance(i, slice):
            return [load_ticket(t) if isinstance(t, Path) else t for t in item]
        return load_ticket(item) if isinstance(item, Path) else item


@dataclasses.dataclass
class ImpResult:
    """Per-level records and tickets (``tickets[l]``, loaded from disk when there is a workdir)."""

    records: list[dict]
    tickets: Sequence[Ticket]
    trajectory: list[int]
    rewind: RewindState | None
    stopped_at_level: int | None = None


def format_level(record: dict) -> str:
    """One summary line of a level record."""
    parts = [
        f"level {record['level']:>2d}",
        f"weights {record['weights_remaining']:>9,d} ({100 * record['fraction_remaining']:6.2f}%)",
    ]
    for key, value in record.items():
        if key.endswith(("_loss", "_accuracy")) and not key.startswith("train_"):
            shown = "/".join(f"{v:.4f}" for v in value) if isinstance(value, list) else f"{value:.4f}"
            parts.append(f"{key} {shown}")
    parts.append(f"epochs {record['epochs']:>4d}{' (early stop)' if record['stopped_early'] else ''}")
    return "  ".join(parts)


# Settings that change what a run computes (compared on resume). Logging and
# checkpoint cadence are left out: changing them on resume is harmless.
_VOLATILE_TRAIN_KEYS = ("log_every_epochs", "checkpoint_every_epochs", "checkpoint_every_seconds")


def _settings(model, objective, config, plan, rewind, seed, prunable) -> dict:
    train = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_TRAIN_KEYS}
    plan_dict = plan.to_dict()
    return _normalise(
        {
            "model": repr(model),
            "objective": objective.name,
            "train": train,
            "plan": {k: plan_dict[k] for k in ("rate", "scope", "exclude")},
            "rewind": str(rewind),
            "seed": seed,
            "prunable": getattr(prunable, "__qualname__", None) if prunable is not None else None,
        }
    )


def _normalise(value):
    """As it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value, default=list))


def _first_difference(old, new, prefix: str = ""):
    """``(dotted key, old, new)`` of the first leaf where two JSON trees differ, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            found = _first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if old == new else (prefix.rstrip("."), old, new)


def _check_resume(workdir: Path, settings: dict, counts: list[int]) -> None:
    """Refuse to continue a run made with other settings; allow more levels."""
    path = workdir / "imp.json"
    if not path.exists():
        return
    saved = read_json(path)
    difference = _first_difference(saved["settings"], settings)
    if difference:
        key, old, new = difference
        raise ValueError(
            f"workdir {workdir} holds a run with {key}={old!r}; this run asks {key}={new!r}. "
            "Use another workdir, or the same settings to resume"
        )
    for level, old in enumerate(saved["trajectory"]):
        done = (workdir / f"level_{level:02d}" / "record.json").exists()
        if done and (level >= len(counts) or counts[level] != old):
            new = counts[level] if level < len(counts) else None
            raise ValueError(
                f"workdir {workdir}: level {level} was trained with {old} weights; this run's trajectory has {new}"
            )


class _Replica:
    """The per-seed part of an IMP run."""

    def __init__(self, seed: int, workdir: Path | None):
        self.seed, self.workdir = seed, workdir
        self.records: list[dict] = []
        self.tickets = _Tickets()
        self.previous: tuple[Any, Any] | Path | None = None  # (trained params, mask) or the finished level's dir
        self.rewind: RewindState | None = None
        self.stopped_at: int | None = None
        self.params0 = self.batch_stats0 = None

    def level_dir(self, level: int) -> Path | None:
        return None if self.workdir is None else self.workdir / f"level_{level:02d}"

    def result(self, counts: list[int]) -> ImpResult:
        return ImpResult(self.records, self.tickets, counts, self.rewind, self.stopped_at)


def run_imp(
    model,
    objective: Objective,
    train_data,
    eval_data,
    config: TrainConfig,
    plan: PruningPlan,
    *,
    rewind: int | str = 0,
    seed: int = 0,
    workdir: str | Path | None = None,
    level_callback: Callable[[LevelResult], bool | None] | None = None,
    on_level_start: Callable[[int, TrainState, int], None] | None = None,
    prunable: mask_lib.Prunable | None = None,
    mesh=None,
    preprocess=None,
    ticket_info: dict | None = None,
    hooks: Iterable[Callable] = (),
    eval_name: str = "test",
    log_fn: Callable[[str], None] = print,
) -> ImpResult:
    """Find tickets by IMP with late resetting.

    Args:
      model: a Flax module called as ``model.apply(variables, x, train=...)``.
      objective: loss and metrics (:mod:`lth_jax.objectives`).
      train_data, eval_data: datasets with ``batches(...)`` and ``steps_per_epoch(...)``
        (e.g. :class:`lth_jax.data.ArrayDataset`); ``eval_data`` is evaluated every epoch.
      config: the training recipe; every level trains to the end of its schedule.
      plan: the pruning trajectory and scope.
      rewind: the rewind step ``k``: an int, ``"500it"`` or ``"1ep"``; 0 resets to the initialization.
      seed: initialization seed, base key of per-step randomness, and (with
        ``config.data_seed``) the seed of the epoch order.
      workdir: where tickets, records and checkpoints go; resumes when it holds a run.
      level_callback: called after each level (also for levels loaded on resume)
        with a :class:`LevelResult`; return True to stop the run.
      on_level_start: called with ``(level, state, seed)`` just before a level trains.
      prunable: a predicate replacing the default rule (``plan.exclude`` is then ignored).
      mesh: device mesh for data parallelism (default: all devices).
      preprocess: ``(x, rng, train) -> x`` run inside the jitted steps (augmentation).
      ticket_info: extra metadata for every ``ticket.json`` (model name, dataset, classes...).
      hooks: ``hook(state, epoch_record)`` after every epoch (records carry ``level`` and ``seed``).
    """
    replicas = [_Replica(seed, None if workdir is None else Path(workdir))]
    return _run(replicas, False, model, objective, train_data, eval_data, config, plan, rewind, level_callback,
                on_level_start, prunable, mesh, preprocess, ticket_info, hooks, eval_name, log_fn)[0]


def run_imp_seeds(
    model,
    objective: Objective,
    train_data,
    eval_data,
    config: TrainConfig,
    plan: PruningPlan,
    *,
    seeds: Sequence[int],
    vmap: bool = True,
    rewind: int | str = 0,
    workdir: str | Path | None = None,
    level_callback: Callable[[LevelResult], bool | None] | None = None,
    on_level_start: Callable[[int, TrainState, int], None] | None = None,
    prunable: mask_lib.Prunable | None = None,
    mesh=None,
    preprocess=None,
    ticket_info: dict | None = None,
    hooks: Iterable[Callable] = (),
    eval_name: str = "test",
    log_fn: Callable[[str], None] = print,
) -> list[ImpResult]:
    """IMP for several seeds of one model, level by level in lockstep.

    With ``vmap=True`` all seeds train in one compiled program
    (:class:`lth_jax.trainers.VmapTrainer`: small in-memory models); with
    ``vmap=False`` one after the other, each data-parallel over the devices.
    Either way each seed has its own initialization, epoch order, early stopping
    and masks, and the results equal those of :func:`run_imp` per seed (up to
    float tolerance). A seed whose ``level_callback`` returns True stops; the
    others go on. Seed ``s`` writes to ``workdir/seed_s`` (the layout of a
    :func:`run_imp` workdir). The other arguments are those of :func:`run_imp`.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds={seeds} holds duplicates")
    replicas = [_Replica(s, None if workdir is None else Path(workdir) / f"seed_{s}") for s in seeds]
    return _run(replicas, vmap, model, objective, train_data, eval_data, config, plan, rewind, level_callback,
                on_level_start, prunable, mesh, preprocess, ticket_info, hooks, eval_name, log_fn)


def _run(replicas, vmap, model, objective, train_data, eval_data, config, plan, rewind, level_callback,
         on_level_start, prunable, mesh, preprocess, ticket_info, hooks, eval_name, log_fn) -> list[ImpResult]:
    """The level loop of :func:`run_imp` and :func:`run_imp_seeds` over replicas (seeds)."""
    example_x = next(iter(train_data.batches(config.batch_size)))["x"][:1]
    for rep in replicas:
        rep.params0, rep.batch_stats0 = init_variables(model, jax.random.PRNGKey(rep.seed), example_x)
    params0 = replicas[0].params0
    if prunable is None:
        mask_lib.check_exclude_patterns(params0, plan.exclude)
        rule = mask_lib.prunable_rule(plan.exclude)
    else:
        rule = prunable
    total = mask_lib.count_prunable(params0, rule)
    counts = plan.trajectory(total)
    steps_per_epoch = train_data.steps_per_epoch(config.batch_size, config.drop_remainder)
    total_steps = config.epochs * steps_per_epoch
    rewind_step = parse_steps(rewind, steps_per_epoch)
    if rewind_step > total_steps or (rewind_step == total_steps and len(counts) > 1):
        raise ValueError(f"rewind step {rewind!r} = {rewind_step} steps is {'past' if rewind_step > total_steps else 'at'} the end of "
                         f"training ({total_steps} steps): pruned levels would not train")
    if vmap and rewind_step % steps_per_epoch:
        raise ValueError(f"rewind step {rewind!r} is not at an epoch boundary; vmapped seeds rewind to the end of an epoch")
    settings = {rep.seed: _settings(model, objective, config, plan, rewind, rep.seed, prunable) for rep in replicas}
    for rep in replicas:  # check every seed before writing anything
        if rep.workdir is not None:
            _check_resume(rep.workdir, settings[rep.seed], counts)
    for rep in replicas:
        if rep.workdir is not None:
            write_json(rep.workdir / "imp.json", {"settings": settings[rep.seed], "trajectory": counts, "rewind_step": rewind_step})
        rep.rewind = _load_rewind(rep.workdir, rep.params0, rep.batch_stats0)

    tx = make_optimizer(config.optimizer, steps_per_epoch, total_steps)
    # States come from create_train_state (pruned weights are 0): the forward pass can skip the mask.
    if vmap:
        trainer = VmapTrainer(model, tx, objective, train_data, eval_data, config, preprocess=preprocess)
    else:
        trainer = SequentialTrainer(model, tx, objective, train_data, eval_data, config, mesh=mesh, preprocess=preprocess)
    info = dict(ticket_info or {})
    info.setdefault("model", type(model).__name__)
    info.update(rewind_step=rewind_step, total_prunable=total)
    tag = (lambda rep, level: f"seed {rep.seed} level {level:>2d}") if len(replicas) > 1 else (lambda rep, level: f"level {level:>2d}")

    active = list(replicas)
    for level in range(len(counts)):
        pending = []  # (replica, state, progress, mask, weights remaining, checkpointer)
        for rep in active:
            level_dir = rep.level_dir(level)
            if level_dir is not None and (level_dir / "record.json").exists():
                record = read_json(level_dir / "record.json")
                rep.records.append(record)
                rep.tickets.append(level_dir / "ticket")
                rep.previous = level_dir
                result = _level_result(record, level_dir, rep.params0, rep.batch_stats0, rep.seed)
                if level_callback is not None and level_callback(result):
                    rep.stopped_at = level
                continue
            pending.append(_start_level(rep, level, counts, plan, rule, total, tx, rewind_step, info, tag, log_fn))
            if on_level_start is not None:
                on_level_start(level, pending[-1][1], rep.seed)
        if pending:
            _train_level(pending, level, trainer, config, rewind_step, hooks, tag, eval_name, log_fn, info, total, level_callback)
        active = [rep for rep in active if rep.stopped_at is None]
        if not active:
            break
    return [rep.result(counts) for rep in replicas]


def _start_level(rep: _Replica, level, counts, plan, rule, total, tx, rewind_step, info, tag, log_fn):
    """The start state of ``rep`` at ``level``: its mask (saved ticket or pruning), rewound weights, checkpoint."""
    level_dir = rep.level_dir(level)
    if level_dir is not None and is_ticket(level_dir / "ticket"):
        mask = load_ticket(level_dir / "ticket").mask
    elif level == 0:
        mask = mask_lib.init_mask(rep.params0)
    else:
        prev_params, prev_mask = _previous(rep.previous, rep.params0, rep.batch_stats0)
        if plan.scope == "global":
            mask = mask_lib.global_magnitude_prune(prev_params, prev_mask, count=counts[level - 1] - counts[level], prunable=rule)
        else:
            mask = mask_lib.layerwise_magnitude_prune(prev_params, prev_mask, fraction=plan.layerwise_fraction(total), prunable=rule)
    weights_remaining = mask_lib.count_remaining(mask, rule)
    base_rng = jax.random.PRNGKey(rep.seed)
    if level == 0:
        state = create_train_state(rep.params0, tx, batch_stats=rep.batch_stats0, rng=base_rng, step=0)
    else:
        state = create_train_state(
            rep.rewind.params, tx, mask=mask, batch_stats=rep.rewind.batch_stats, rng=base_rng, step=rewind_step
        )
        if level_dir is not None and not is_ticket(level_dir / "ticket"):
            save_ticket(level_dir / "ticket", _ticket(state.params, state.batch_stats, mask, info, rep.seed, level, weights_remaining, total))
    progress, checkpointer = None, None
    if level_dir is not None:
        checkpointer = StateCheckpointer(level_dir / "checkpoints")
        state, progress = checkpointer.resume(state)
        if progress is not None:
            log_fn(f"{tag(rep, level)}: resuming from step {int(state.step)}")
    return rep, state, progress, mask, weights_remaining, checkpointer


def _train_level(pending, level, trainer, config, rewind_step, hooks, tag, eval_name, log_fn, info, total, level_callback):
    """Train the pending replicas of ``level`` together, then save and report each."""

    def save_rewind(rep: _Replica):
        def save(captured: RewindState) -> None:
            rep.rewind = captured
            if rep.workdir is not None:
                save_tree(rep.workdir / "rewind", {"params": captured.params, "batch_stats": captured.batch_stats})
                write_json(rep.workdir / "rewind.json", {"step": captured.step})

        return save

    started = time.perf_counter()
    runs = [
        ReplicaRun(
            state=state,
            data_seed=(config.data_seed, rep.seed),
            progress=progress,
            on_rewind=save_rewind(rep),
            checkpoint_fn=None if checkpointer is None else checkpointer.save_progress,
            hooks=[_with_context(hook, level, rep.seed) for hook in hooks],
            log_prefix=tag(rep, level),
        )
        for rep, state, progress, _, _, checkpointer in pending
    ]
    results = trainer.fit(runs, rewind_step=rewind_step if level == 0 else None, eval_name=eval_name, log_fn=log_fn)
    seconds = (time.perf_counter() - started) / len(pending)
    for (rep, _, _, mask, weights_remaining, checkpointer), result in zip(pending, results):
        if rep.rewind is None:  # early stopping ended level 0 before the rewind step
            raise ValueError(
                f"{tag(rep, level)} stopped early at step {int(result.state.step)}, before the rewind step {rewind_step}: "
                "rewind earlier or raise the early-stopping patience"
            )
        level_dir = rep.level_dir(level)
        trained_params, trained_batch_stats = jax.device_get((result.state.params, result.state.batch_stats))
        if level == 0:
            ticket = _ticket(rep.rewind.params, rep.rewind.batch_stats, mask, info, rep.seed, level, weights_remaining, total)
        elif level_dir is None:
            ticket = _ticket(mask_lib.apply_mask(rep.rewind.params, mask), rep.rewind.batch_stats, mask, info, rep.seed, level, weights_remaining, total)
        record = level_record(level, weights_remaining, total, result, seconds, rewind_step)
        record["seed"] = rep.seed
        rep.records.append(record)
        if level_dir is not None:
            if level == 0:
                save_ticket(level_dir / "ticket", ticket)
            save_tree(level_dir / "trained", {"params": trained_params, "batch_stats": trained_batch_stats})
            write_jsonl(level_dir / "history.jsonl", result.history)
            write_json(level_dir / "record.json", record)
            checkpointer.clear()
        rep.tickets.append(ticket if level_dir is None else level_dir / "ticket")
        rep.previous = (trained_params, jax.device_get(mask))
        if level_callback is not None and level_callback(
            LevelResult(level, record, rep.previous[1], trained_params, trained_batch_stats, rep.seed)
        ):
            rep.stopped_at = level


# --------------------------------------------------------------------------- helpers


def _with_context(hook, level, seed):
    def wrapped(state, record):
        return hook(state, {"level": level, "seed": seed, **record})

    return wrapped


def _ticket(params, batch_stats, mask, info: dict, seed: int, level: int, weights_remaining: int, total: int) -> Ticket:
    params, batch_stats, mask = jax.device_get((params, batch_stats, mask))
    return Ticket(
        mask=mask,
        params=params,
        batch_stats=batch_stats,
        info={
            **info,
            "seed": seed,
            "level": level,
            "weights_remaining": weights_remaining,
            "fraction_remaining": weights_remaining / total,
        },
    )


def level_record(level, weights_remaining, total, result, seconds, rewind_step) -> dict:
    """The record of a trained level (or ticket): counts, final metrics, epochs, speed."""
    final = {k: v for k, v in result.final.items() if k.endswith(("_loss", "_accuracy"))}
    speeds = [r["examples_per_second"] for r in result.history]
    return {
        "level": level,
        "weights_remaining": weights_remaining,
        "fraction_remaining": weights_remaining / total,
        "total_prunable": total,
        **final,
        "epochs": result.history[-1]["epoch"] if result.history else 0,
        "steps": int(result.state.step),
        "rewind_step": rewind_step,
        "stopped_early": result.progress.stopped_early,
        "examples_per_second": float(np.median(speeds)) if speeds else None,
        "seconds": seconds,
    }


def _load_rewind(workdir: Path | None, params0, batch_stats0) -> RewindState | None:
    if workdir is None or not (workdir / "rewind.json").exists():
        return None
    arrays = load_tree(workdir / "rewind", {"params": params0, "batch_stats": batch_stats0})
    return RewindState(read_json(workdir / "rewind.json")["step"], *jax.device_get((arrays["params"], arrays["batch_stats"])))


def _previous(previous, params0, batch_stats0) -> tuple[Any, Any]:
    """(trained params, mask) of the previous level, loaded from disk if needed."""
    if isinstance(previous, Path):
        trained = load_tree(previous / "trained", {"params": params0, "batch_stats": batch_stats0})
        return jax.device_get(trained["params"]), load_ticket(previous / "ticket").mask
    return previous


def _level_result(record, level_dir: Path, params0, batch_stats0, seed: int) -> LevelResult:
    trained = load_tree(level_dir / "trained", {"params": params0, "batch_stats": batch_stats0})
    return LevelResult(
        record["level"],
        record,
        load_ticket(level_dir / "ticket").mask,
        *jax.device_get((trained["params"], trained["batch_stats"])),
        seed,
    )
