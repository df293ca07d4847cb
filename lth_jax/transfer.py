"""Transferring winning tickets across datasets and optimizers (Morcos et al. 2019).

:func:`run_transfer_study` chains stages (:mod:`lth_jax.stage`), each read back
when done and continued from its last checkpoint when interrupted:

1. **source**: IMP with late resetting on the source dataset with the source
   optimizer (:func:`lth_jax.find_ticket.find_ticket`), every seed in one run
   (``seed_<s>`` each), or the tickets of an existing workdir (``source_workdir``);
2. **transfer**: per target, seed and level, the source ticket
   (:func:`lth_jax.tickets.transfer_ticket`) and, with the ``random`` baseline, a
   random ticket of the same per-layer sparsity on a fresh initialization
   (:func:`lth_jax.tickets.random_ticket`), each trained with the target's recipe
   from step 0 to the end of its schedule: all of a target's as replicas of one
   program where they fit (:func:`lth_jax.recipe.replicas_together`), else one
   after another (:func:`lth_jax.tickets.train_tickets`);
3. **target**: per target, an IMP run of every seed with the target's recipe.
   Its level 0 is the dense baseline; with the ``target_own`` baseline it goes
   on to the deepest transferred level, giving the target's own tickets.

Every setting is checked before anything trains: the recipes, every stage's
recorded settings (a stage made with another head rule, random scope or target
recipe is refused, naming the setting) and whether the source model fits every
target model. All rows of one target count their weights with the target's
prunable rule, so their ``fraction_remaining`` share one denominator.

Layout of ``workdir``::

    config.json  metrics.jsonl  summary.json
    source/<source>_<optimizer>/seed_<s>/         find_ticket workdirs (unless source_workdir)
    target/<target>_<optimizer>/seed_<s>/         find_ticket workdirs: dense and target-own tickets
    transfer/<source>_<opt>__<target>_<opt>/seed_<s>/{winning,random}_level_XX/   stages

``metrics.jsonl`` has one row per trained ticket (keys in :data:`lth_jax.rows.ROW_KEYS`);
rows of earlier invocations that this one does not produce are kept.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable

import jax
import ml_collections
from etils import epath

from lth_jax import objectives
from lth_jax.data.registry import ImageData, get_spec
from lth_jax.errors import UserError
from lth_jax.find_ticket import check_find_ticket, find_ticket
from lth_jax.recipe import (
    abstract_params,
    build_model,
    load_data,
    planned_trajectory,
    preprocess_fn,
    recipe_settings,
    replicas_together,
    train_config,
    with_optimizer,
)
from lth_jax.results import environment, read_json, remove_temporaries, write_json
from lth_jax.rng import Streams
from lth_jax.rows import StudyMetrics, aggregate, study_row
from lth_jax.stage import Stage
from lth_jax.tickets import (
    Ticket,
    TicketJob,
    TicketTrainer,
    check_fits,
    head_info,
    is_imp_run,
    level_ticket_dir,
    load_ticket,
    needs_fresh_head,
    random_ticket,
    ticket_levels,
    ticket_trainer,
    train_tickets,
    transfer_ticket,
)
from lth_jax.train import init_variables
from lth_jax.transfer_study import BASELINES, TransferStudy, default_config

__all__ = ["TransferStudy", "BASELINES", "run_transfer_study", "default_config", "run"]



def _seeded(c, seed: int, **changes) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(c.to_dict())
    c.seed = seed
    for key, value in changes.items():
        c[key] = value
    return c


@dataclasses.dataclass
class _Target:
    """One target of the study: its recipe, data, model and compiled trainer."""

    name: str
    config: ml_collections.ConfigDict
    data: ImageData
    model: Any
    trainer: TicketTrainer
    example_x: Any

    @classmethod
    def build(cls, name: str, c, trainings: int) -> "_Target":
        """``trainings``: how many tickets train on it at once (replicas of one program where they fit)."""
        data = load_data(c)
        model = build_model(c, data.num_classes)
        trainer = ticket_trainer(model, objectives.softmax_classification(), data.train, data.test, train_config(c),
                                 preprocess=preprocess_fn(c, data), vmap=replicas_together(c, data, trainings))
        example_x = data.train.x[:1] if hasattr(data.train, "x") else next(iter(data.train.batches(1)))["x"]
        return cls(name, c, data, model, trainer, example_x)

    @property
    def optimizer(self) -> str:
        return self.config.optimizer.name


class _Study:
    """The plan of a transfer study: what exists, what will, and every stage's settings."""

    def __init__(self, c, study: TransferStudy, workdir, target_config, log_fn):
        study.check()
        self.study, self.workdir, self.log = study, epath.Path(workdir), log_fn
        self.source_c = with_optimizer(c, study.source_optimizer)
        if study.source is not None and study.source_workdir is None:
            self.source_c.dataset = study.source
        self.target_base = with_optimizer(c if target_config is None else target_config, study.target_optimizer)
        if self.target_base.pruning.rate is None:
            raise UserError("the target recipe needs pruning.rate (target-own tickets prune at that rate)")
        self.source_dirs = self._source_dirs()
        self.levels = self._levels()
        self.source_info = self._source_info()
        trainings = len(study.seeds) * len(self.levels) * len(self.kinds())
        self.targets = [_Target.build(t, _seeded(self.target_base, 0, dataset=t), trainings) for t in study.targets]
        self.source_data = load_data(self.source_c) if study.source_workdir is None else None

    def _source_dirs(self) -> dict[int, epath.Path]:
        study = self.study
        if study.source_workdir is None:
            base = self.workdir / "source" / f"{self.source_c.dataset}_{self.source_c.optimizer.name}"
            return {s: base / f"seed_{s}" for s in study.seeds}
        base = epath.Path(study.source_workdir)
        if is_imp_run(base):
            if len(study.seeds) != 1:
                raise UserError(f"source_workdir {study.source_workdir} holds one run; give one seed, or a directory of seed_<s> runs")
            return {study.seeds[0]: base}
        dirs = {s: base / f"seed_{s}" for s in study.seeds}
        missing = [s for s, d in dirs.items() if not is_imp_run(d)]
        if missing:
            raise UserError(f"source_workdir {study.source_workdir} has no run for seed {missing[0]} (expected {os.fspath(dirs[missing[0]])})")
        return dirs

    def _levels(self) -> list[int]:
        """The levels to transfer, checked against what exists (or will) before anything trains."""
        study = self.study
        if study.source_workdir is not None:
            available = sorted(set.intersection(*(set(ticket_levels(d)) for d in self.source_dirs.values())))
        else:
            available = list(range(len(planned_trajectory(self.source_c))))
        levels = available if study.levels is None else sorted(set(int(level) for level in study.levels))
        for level in levels:
            if level not in available:
                where = study.source_workdir or f"the source plan of {self.source_c.dataset}"
                raise UserError(f"levels={','.join(map(str, levels))}: level {level} does not exist in {where}; "
                                f"levels that do: {', '.join(map(str, available)) or 'none'}")
        if not levels:
            raise UserError("no level to transfer")
        return levels

    def _source_info(self) -> dict:
        """Dataset, optimizer and output layer of the source tickets (read, or as they will be)."""
        if self.study.source_workdir is not None:
            info = load_ticket(level_ticket_dir(self.source_dirs[self.study.seeds[0]], self.levels[0])).info
            return {"dataset": info["dataset"], "optimizer": info.get("optimizer"), "classes": info.get("classes"), "ticket": info}
        classes = get_spec(self.source_c.dataset).num_classes
        return {"dataset": self.source_c.dataset, "optimizer": self.source_c.optimizer.name, "classes": classes, "ticket": None}

    def source_params(self):
        """The parameter shapes of the source model (or the first source ticket's)."""
        if self.source_info["ticket"] is not None:
            ticket = load_ticket(level_ticket_dir(self.source_dirs[self.study.seeds[0]], self.levels[0]))
            return ticket.params
        return abstract_params(self.source_c, self.source_info["classes"])

    def names(self, target: _Target) -> dict:
        info = self.source_info
        return dict(source=info["dataset"], source_optimizer=info["optimizer"], target=target.name, target_optimizer=target.optimizer)

    def head_state(self, target: _Target, source_params) -> str:
        target_params = abstract_params(target.config, target.data.num_classes)
        head = getattr(target.model, "output_layer", "fc")
        fresh = needs_fresh_head({"head": head_info(source_params, head)}, target_params, reinit_head=self.study.reinit_head)
        check_fits(source_params, target_params, skip=(lambda p: p[0] == head) if fresh else (lambda p: False))
        return ("fresh, pruned" if self.study.prune_head else "fresh") if fresh else "kept"

    def stage_dir(self, target: _Target, seed: int, kind: str, level: int) -> epath.Path:
        names = self.names(target)
        pair = f"{names['source']}_{names['source_optimizer']}__{target.name}_{target.optimizer}"
        return self.workdir / "transfer" / pair / f"seed_{seed}" / f"{kind}_level_{level:02d}"

    def stage_settings(self, target: _Target, seed: int, kind: str, level: int, head_state: str) -> dict:
        names = self.names(target)
        source = {"dataset": names["source"], "optimizer": names["source_optimizer"],
                  "run": os.path.relpath(os.fspath(self.source_dirs[seed]), os.fspath(self.workdir))}
        settings = {"ticket": kind, "level": level, "seed": seed, "source": source,
                    "target": recipe_settings(target.config), "head": head_state,
                    "prunable": list(target.config.pruning.exclude)}
        return {**settings, "random_scope": self.study.random_scope} if kind == "random" else settings

    def source_run(self) -> tuple[ml_collections.ConfigDict, epath.Path]:
        """The find_ticket run of every seed on the source (``seed_<s>`` below its directory)."""
        return _seeded(self.source_c, self.study.seeds[0], seeds=tuple(self.study.seeds)), self.source_dirs[self.study.seeds[0]].parent

    def kinds(self) -> list[str]:
        return ["winning"] + (["random"] if "random" in self.study.baselines else [])

    def target_run(self, target: _Target) -> tuple[ml_collections.ConfigDict, epath.Path]:
        """The find_ticket run of every seed on ``target`` (``seed_<s>`` below its directory)."""
        c = _seeded(target.config, self.study.seeds[0], seeds=tuple(self.study.seeds),
                    init_stream="source" if self.study.shared_init else "target_own")
        c.pruning.update(levels=max(self.levels) if "target_own" in self.study.baselines else 0, target=None)
        return c, self.workdir / "target" / f"{target.name}_{target.optimizer}"

    def check(self) -> dict[str, str]:
        """Every fit, stage and IMP run of the plan checked; the head state per target."""
        source_params = self.source_params()
        heads = {}
        if self.study.source_workdir is None:
            check_find_ticket(*self.source_run(), data=self.source_data)
        for target in self.targets:
            heads[target.name] = self.head_state(target, source_params)
            for seed in self.study.seeds:
                for level in self.levels:
                    for kind in self.kinds():
                        settings = self.stage_settings(target, seed, kind, level, heads[target.name])
                        Stage(self.stage_dir(target, seed, kind, level), {"kind": "ticket", **settings}).check()
            check_find_ticket(*self.target_run(target), data=target.data)
        return heads


# Tickets a program trains together on a CPU: a power of two (the vmapped executor pads its rows to one); 44 tickets at
# once measured slower than one at a time there (BUILD_NOTES, "Seeds together").
CPU_GROUP = 8


def _transfer(plan: _Study, target: _Target, head_state: str, metrics: StudyMetrics) -> None:
    """Train the source tickets of every seed (and their random twins) on ``target``: together, as
    replicas of one program, where the target's trainer vmaps; else one after another."""
    study, jobs, rows = plan.study, [], []
    for seed in study.seeds:
        fresh_params, _ = init_variables(target.model, Streams(seed).init(), target.example_x)
        for level in plan.levels:
            ticket_dir = level_ticket_dir(plan.source_dirs[seed], level)
            start = transfer_ticket(load_ticket(ticket_dir), fresh_params, reinit_head=study.reinit_head,
                                    prune_head=study.prune_head, exclude=tuple(target.config.pruning.exclude))
            for kind in plan.kinds():
                workdir = plan.stage_dir(target, seed, kind, level)
                done = (workdir / Stage.RECORD).exists()  # read back: no start to make
                made = start if kind == "winning" or done else _random_start(start, target, seed, level, study.random_scope)
                prefix = f"{plan.names(target)['source']}→{target.name} {kind} level {level:>2d} seed {seed}"
                jobs.append(TicketJob(made, seed, workdir, plan.stage_settings(target, seed, kind, level, head_state), prefix))
                rows.append((kind, seed, ticket_dir, done))
    size = (len(jobs) if jax.default_backend() != "cpu" else CPU_GROUP) if target.trainer.vmap else 1
    records = [r for i in range(0, len(jobs), size) for r in train_tickets(jobs[i:i + size], target.trainer, log_fn=plan.log)]
    for job, (kind, seed, ticket_dir, done), record in zip(jobs, rows, records):
        metrics.add(study_row(record, kind, seed, target.config.model, ticket_dir, plan.workdir, **plan.names(target)))
        plan.log(f"{job.log_prefix}: {100 * record['fraction_remaining']:6.2f}% remaining, test accuracy {record['test_accuracy']:.4f}"
                 + (" (done before)" if done else ""))


def _random_start(start: Ticket, target: _Target, seed: int, level: int, scope: str) -> Ticket:
    """The random ticket of ``start``: a fresh initialization and a permutation of its
    mask, both from the seed's random-ticket stream of ``level``."""
    init_key, mask_key = jax.random.split(Streams(seed).random_ticket(level))
    params, batch_stats = init_variables(target.model, init_key, target.example_x)
    return random_ticket(start, params, batch_stats, mask_key, scope=scope)


def _target_own(plan: _Study, target: _Target, metrics: StudyMetrics) -> None:
    """IMP on the target itself, every seed in one find_ticket run: level 0 is the dense baseline;
    deeper levels (with the ``target_own`` baseline) are the target's own tickets."""
    own = "target_own" in plan.study.baselines
    c, base = plan.target_run(target)
    plan.log(f"target {target.name} ({target.optimizer}), seeds {','.join(map(str, plan.study.seeds))}: "
             f"{'own tickets' if own else 'dense baseline'}")
    find_ticket(c, base, data=target.data, log_fn=plan.log)
    names = dict(source=target.name, source_optimizer=target.optimizer, target=target.name, target_optimizer=target.optimizer)
    for seed in plan.study.seeds:
        run_dir = base / f"seed_{seed}"
        metrics.add(study_row(read_json(run_dir / "level_00" / Stage.RECORD), "dense", seed, c.model, None, plan.workdir, **names))
        for level in plan.levels if own else ():
            level_dir = run_dir / f"level_{level:02d}"
            metrics.add(study_row(read_json(level_dir / Stage.RECORD), "target_own", seed, c.model, level_dir / "ticket", plan.workdir,
                                  **names))


def run_transfer_study(c, study: TransferStudy, workdir: str | os.PathLike, *, target_config=None,
                       log_fn: Callable[[str], None] = print) -> dict:
    """Run (or resume) the study; returns the summary also written to ``summary.json``.

    ``c`` is the source recipe (an image-experiment config,
    :func:`lth_jax.recipe.default_config`); ``target_config`` the targets'
    recipe (default: ``c``). Both get the study's optimizer presets. Every
    setting is checked, every dataset loaded and every stage's settings compared
    with the workdir before anything trains.
    """
    plan = _Study(c, study, workdir, target_config, log_fn)
    heads = plan.check()
    workdir = plan.workdir
    remove_temporaries(workdir)  # what a killed run's writes left
    if not (workdir / "config.json").exists():
        write_json(workdir / "config.json", {"source_config": plan.source_c.to_dict(), "target_config": plan.target_base.to_dict(),
                                             "study": dataclasses.asdict(study), "levels": plan.levels, "environment": environment()})
    metrics = StudyMetrics(workdir / "metrics.jsonl", log_fn)
    if study.source_workdir is None:
        log_fn(f"source {plan.source_c.dataset} ({plan.source_c.optimizer.name}), seeds {','.join(map(str, study.seeds))}: finding tickets")
        find_ticket(*plan.source_run(), data=plan.source_data, log_fn=log_fn)
    for target in plan.targets:
        _transfer(plan, target, heads[target.name], metrics)
        _target_own(plan, target, metrics)
    info = plan.source_info
    summary = {"source": info["dataset"], "source_optimizer": info["optimizer"], "targets": list(study.targets), "levels": plan.levels,
               "seeds": list(study.seeds), "groups": [_strict(group) for group in aggregate(metrics.all())]}
    write_json(workdir / "summary.json", summary)
    return summary




def _strict(group: dict) -> dict:
    """A summary group as strict JSON: a one-seed group's undefined std and interval are null, not NaN / ±Infinity."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in group.items()}


def run(c, workdir: str | os.PathLike, *, target_config=None, log_fn: Callable[[str], None] = print) -> dict:
    """The transfer experiment of a transfer config (``experiments/transfer.py``):
    ``c.recipe`` is the source recipe (and the targets', unless ``target_config``),
    the other fields are those of :class:`TransferStudy`."""
    return run_transfer_study(c.recipe, TransferStudy.from_config(c), workdir, target_config=target_config, log_fn=log_fn)
