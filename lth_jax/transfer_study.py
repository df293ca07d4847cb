"""The study of Morcos et al. (2019): find tickets on a source, train them on targets.

:func:`run_transfer_study` chains idempotent stages, each skipped when its
output exists and continued from its last checkpoint when interrupted:

1. **source**: IMP with late resetting on the source dataset with the source
   optimizer (:func:`lth_jax.recipes.find_ticket`), one run per seed, or the
   tickets of an existing workdir (``source_workdir``);
2. **target**: per target and seed, an IMP run on the target with the target's
   recipe. Its level 0 is the dense baseline; with the ``target_own`` baseline it
   goes on to the deepest transferred level, giving the target's own tickets;
3. **transfer**: per target, seed and level, the source ticket
   (:func:`lth_jax.transfer.transfer_ticket`) and, with the ``random`` baseline,
   a random ticket of the same per-layer sparsity on a fresh initialization
   (:func:`lth_jax.transfer.random_ticket`), each trained with the target's
   recipe from step 0 to the end of its schedule (:func:`lth_jax.transfer.train_ticket`).

Layout of ``workdir``::

    config.json  metrics.jsonl  summary.json
    source/<source>_<optimizer>/seed_<s>/         find_ticket workdirs (unless source_workdir)
    target/<target>_<optimizer>/seed_<s>/         find_ticket workdirs: dense and target-own tickets
    transfer/<source>_<opt>__<target>_<opt>/seed_<s>/{winning,random}_level_XX/

``metrics.jsonl`` has one row per trained ticket (keys in :data:`ROW_KEYS`);
rows of earlier invocations that this one does not produce are kept.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import ml_collections

from lth_jax import objectives
from lth_jax.checkpoint import load_ticket
from lth_jax.data.registry import ImageData, get_spec
from lth_jax.recipes import OPTIMIZER_PRESETS, build_model, find_ticket, load_data, planned_trajectory, preprocess_fn, train_config, with_optimizer
from lth_jax.report import aggregate
from lth_jax.results import environment, read_json, read_jsonl, write_json, write_jsonl
from lth_jax.train import init_variables
from lth_jax.transfer import level_ticket_dir, random_ticket, ticket_levels, ticket_trainer, train_ticket, transfer_ticket

__all__ = ["TransferStudy", "BASELINES", "ROW_KEYS", "run_transfer_study"]

BASELINES = ("random", "target_own")
ROW_KEYS = ("source", "source_optimizer", "target", "target_optimizer", "ticket", "level", "fraction_remaining",
            "weights_remaining", "test_accuracy", "test_loss", "train_loss", "epoch", "seed", "model", "ticket_dir")
_ROW_ID = ("source", "source_optimizer", "target", "target_optimizer", "ticket", "level", "seed")


@dataclasses.dataclass(frozen=True)
class TransferStudy:
    """What to transfer where.

    Attributes:
      source: the source dataset (ignored with ``source_workdir``: the tickets say).
      targets: target datasets.
      levels: source levels to transfer (default: every level of the source run).
      baselines: any of ``"random"`` and ``"target_own"``.
      seeds: replicates; seed ``s`` finds the source tickets, initialises and trains with ``s``.
      source_optimizer / target_optimizer: a key of ``OPTIMIZER_PRESETS`` or ``"config"``.
      source_workdir: reuse the tickets of an existing find_ticket workdir
        (``seed_<s>`` subdirectories, or the workdir itself for one seed).
      random_scope: ``"layer"`` (per-layer counts of the winning ticket) or ``"global"``.
      reinit_head: re-initialise the output layer even when the class counts match.
      prune_head: prune a fresh output layer to the ticket's sparsity (default: dense).
    """

    source: str | None
    targets: Sequence[str]
    levels: Sequence[int] | None = None
    baselines: Sequence[str] = ("random",)
    seeds: Sequence[int] = (0,)
    source_optimizer: str = "config"
    target_optimizer: str = "config"
    source_workdir: str | None = None
    random_scope: str = "layer"
    reinit_head: bool = False
    prune_head: bool = False

    def check(self) -> None:
        """One-line ``ValueError``s for settings that cannot work, before anything trains."""
        if not self.targets:
            raise ValueError("targets is empty: name at least one target dataset")
        for name in ([self.source] if self.source_workdir is None else []) + list(self.targets):
            get_spec(name)
        for which, preset in (("source_optimizer", self.source_optimizer), ("target_optimizer", self.target_optimizer)):
            if preset != "config" and preset not in OPTIMIZER_PRESETS:
                raise ValueError(f"{which}={preset!r} is not one of config, {', '.join(OPTIMIZER_PRESETS)}")
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ValueError(f"unknown baseline {unknown[0]!r}; known baselines: {', '.join(BASELINES)}")
        if not self.seeds:
            raise ValueError("seeds is empty: give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={list(self.seeds)} holds duplicates")
        if self.random_scope not in ("layer", "global"):
            raise ValueError(f"random_scope={self.random_scope!r} is not one of layer, global")


def _seeded(c, seed: int, **changes) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(c.to_dict())
    c.seed = seed
    for key, value in changes.items():
        c[key] = value
    return c


def _source_dirs(study: TransferStudy, workdir: Path, source_c) -> dict[int, Path]:
    if study.source_workdir is None:
        base = workdir / "source" / f"{study.source}_{source_c.optimizer.name}"
        return {s: base / f"seed_{s}" for s in study.seeds}
    base = Path(study.source_workdir)
    if (base / "imp.json").exists():
        if len(study.seeds) != 1:
            raise ValueError(f"source_workdir {base} holds one run; give one seed, or a directory of seed_<s> runs")
        return {study.seeds[0]: base}
    dirs = {s: base / f"seed_{s}" for s in study.seeds}
    missing = [s for s, d in dirs.items() if not (d / "imp.json").exists()]
    if missing:
        raise ValueError(f"source_workdir {base} has no run for seed {missing[0]} (expected {dirs[missing[0]]})")
    return dirs


def _levels(study: TransferStudy, source_dirs: dict[int, Path], source_c) -> list[int]:
    """The levels to transfer, checked against what exists (or will) before anything trains."""
    if study.source_workdir is not None:
        available = sorted(set.intersection(*(set(ticket_levels(d)) for d in source_dirs.values())))
    else:
        available = list(range(len(planned_trajectory(source_c))))
    levels = available if study.levels is None else sorted(set(int(level) for level in study.levels))
    for level in levels:
        if level not in available:
            where = study.source_workdir or f"the source plan of {source_c.dataset}"
            raise ValueError(f"level {level} does not exist in {where}; levels that do: {', '.join(map(str, available)) or 'none'}")
    if not levels:
        raise ValueError("no level to transfer")
    return levels


def _row(record: dict, ticket_kind: str, seed: int, model: str, ticket_dir: Path | None, workdir: Path, **names) -> dict:
    row = {**names, "ticket": ticket_kind, "level": record["level"], "epoch": record["epochs"], "seed": seed, "model": model}
    row.update({k: record.get(k) for k in ("fraction_remaining", "weights_remaining", "test_accuracy", "test_loss", "train_loss")})
    row["ticket_dir"] = None if ticket_dir is None else os.path.relpath(ticket_dir, workdir)
    return {k: row[k] for k in ROW_KEYS}


class _Metrics:
    """``metrics.jsonl``, rewritten after every stage; rows of earlier runs are kept."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = {tuple(r[k] for k in _ROW_ID): r for r in (read_jsonl(path) if path.exists() else [])}

    def add(self, row: dict) -> None:
        self.rows[tuple(row[k] for k in _ROW_ID)] = row
        write_jsonl(self.path, self.all())

    def all(self) -> list[dict]:
        return [self.rows[k] for k in sorted(self.rows, key=lambda key: tuple(map(str, key[:5])) + key[5:])]


def _random_start(start, model, example_x, seed: int, level: int, scope: str):
    """The random ticket of ``start``: a fresh initialization and a permutation of its
    mask, both drawn from ``(seed, level)`` apart from every other draw of the seed."""
    init_key, mask_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 1_000_003 + level))
    params, batch_stats = init_variables(model, init_key, example_x)
    return random_ticket(start, params, batch_stats, mask_key, scope=scope)


@dataclasses.dataclass
class _Target:
    """One target of the study: its recipe, data, model and compiled trainer."""

    name: str
    config: ml_collections.ConfigDict
    data: ImageData
    model: Any
    trainer: Any
    example_x: Any

    @classmethod
    def build(cls, name: str, c) -> "_Target":
        data = load_data(c)
        model = build_model(c, data.num_classes)
        trainer = ticket_trainer(model, objectives.softmax_classification(), data.train, data.test, train_config(c),
                                 preprocess=preprocess_fn(c, data))
        example_x = data.train.x[:1] if hasattr(data.train, "x") else next(iter(data.train.batches(1)))["x"]
        return cls(name, c, data, model, trainer, example_x)

    @property
    def optimizer(self) -> str:
        return self.config.optimizer.name


def _transfer(study, target: _Target, seed: int, levels, source_dirs, names: dict, workdir: Path, metrics: _Metrics, log_fn) -> None:
    """Train the source tickets of ``seed`` (and their random twins) on ``target``."""
    fresh_params, _ = init_variables(target.model, jax.random.PRNGKey(seed), target.example_x)
    stages = workdir / "transfer" / f"{names['source']}_{names['source_optimizer']}__{target.name}_{target.optimizer}" / f"seed_{seed}"
    for level in levels:
        ticket_dir = level_ticket_dir(source_dirs[seed], level)
        start = transfer_ticket(load_ticket(ticket_dir), fresh_params, num_classes=target.data.num_classes,
                                reinit_head=study.reinit_head, prune_head=study.prune_head)
        makers = {"winning": lambda: start}
        if "random" in study.baselines:
            makers["random"] = functools.partial(_random_start, start, target.model, target.example_x, seed, level, study.random_scope)
        for kind, make in makers.items():
            stage = stages / f"{kind}_level_{level:02d}"
            prefix = f"{names['source']}→{target.name} {kind} level {level:>2d} seed {seed}"
            done = (stage / "record.json").exists()
            record = read_json(stage / "record.json") if done else train_ticket(
                make(), target.trainer, seed=seed, workdir=stage, log_prefix=prefix, log_fn=log_fn)
            metrics.add(_row(record, kind, seed, target.config.model, ticket_dir, workdir, **names))
            log_fn(f"{prefix}: {100 * record['fraction_remaining']:6.2f}% remaining, test accuracy {record['test_accuracy']:.4f}"
                   + (" (done before)" if done else ""))


def _target_own(study, target: _Target, seed: int, levels, workdir: Path, metrics: _Metrics, log_fn) -> None:
    """IMP on the target itself: level 0 is the dense baseline; deeper levels (with the
    ``target_own`` baseline) are the target's own tickets."""
    own = "target_own" in study.baselines
    c = _seeded(target.config, seed)
    c.pruning.update(levels=max(levels) if own else 0, target=None)
    run_dir = workdir / "target" / f"{target.name}_{target.optimizer}" / f"seed_{seed}"
    log_fn(f"target {target.name} ({target.optimizer}), seed {seed}: {'own tickets' if own else 'dense baseline'}")
    find_ticket(c, run_dir, data=target.data, log_fn=log_fn)
    names = dict(source=target.name, source_optimizer=target.optimizer, target=target.name, target_optimizer=target.optimizer)
    metrics.add(_row(read_json(run_dir / "level_00" / "record.json"), "dense", seed, c.model, None, workdir, **names))
    for level in levels if own else ():
        level_dir = run_dir / f"level_{level:02d}"
        metrics.add(_row(read_json(level_dir / "record.json"), "target_own", seed, c.model, level_dir / "ticket", workdir, **names))


def run_transfer_study(c, study: TransferStudy, workdir: str | Path, *, target_config=None, log_fn: Callable[[str], None] = print) -> dict:
    """Run (or resume) the study; returns the summary also written to ``summary.json``.

    ``c`` is the source recipe (an image-experiment config,
    :func:`lth_jax.recipes.default_config`); ``target_config`` the targets'
    recipe (default: ``c``). Both get the study's optimizer presets. Every
    setting is checked, and every dataset loaded, before anything trains.
    """
    workdir = Path(workdir)
    study.check()
    source_c = with_optimizer(c, study.source_optimizer)
    if study.source is not None:
        source_c.dataset = study.source
    target_base = with_optimizer(c if target_config is None else target_config, study.target_optimizer)
    if target_base.pruning.rate is None:
        raise ValueError("the target recipe needs pruning.rate (target-own tickets prune at that rate)")
    source_dirs = _source_dirs(study, workdir, source_c)
    levels = _levels(study, source_dirs, source_c)
    targets = [_Target.build(t, _seeded(target_base, 0, dataset=t)) for t in study.targets]
    if not (workdir / "config.json").exists():
        write_json(workdir / "config.json", {"source_config": source_c.to_dict(), "target_config": target_base.to_dict(),
                                             "study": dataclasses.asdict(study), "levels": levels, "environment": environment()})
    metrics = _Metrics(workdir / "metrics.jsonl")

    if study.source_workdir is None:
        data = load_data(source_c)
        for seed in study.seeds:
            log_fn(f"source {source_c.dataset} ({source_c.optimizer.name}), seed {seed}: finding tickets")
            find_ticket(_seeded(source_c, seed), source_dirs[seed], data=data, log_fn=log_fn)
    first = load_ticket(level_ticket_dir(source_dirs[study.seeds[0]], levels[0])).info
    source_name, source_opt = first["dataset"], first.get("optimizer", source_c.optimizer.name)
    for target in targets:
        names = dict(source=source_name, source_optimizer=source_opt, target=target.name, target_optimizer=target.optimizer)
        for seed in study.seeds:
            _transfer(study, target, seed, levels, source_dirs, names, workdir, metrics, log_fn)  # a ticket that does not fit fails first
            _target_own(study, target, seed, levels, workdir, metrics, log_fn)

    summary = {"source": source_name, "source_optimizer": source_opt, "targets": list(study.targets), "levels": levels,
               "seeds": list(study.seeds), "groups": aggregate(metrics.all())}
    write_json(workdir / "summary.json", summary)
    return summary
