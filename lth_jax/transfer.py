"""Transferring winning tickets across datasets and optimizers (Morcos et al. 2019).

:func:`run_transfer_study` chains stages (:mod:`lth_jax.stage`), each read back
when done and continued from its last checkpoint when interrupted:

1. **source**: IMP with late resetting on the source dataset with the source
   optimizer (:func:`lth_jax.find_ticket.find_ticket`), one run per seed, or the
   tickets of an existing workdir (``source_workdir``);
2. **transfer**: per target, seed and level, the source ticket
   (:func:`lth_jax.tickets.transfer_ticket`) and, with the ``random`` baseline, a
   random ticket of the same per-layer sparsity on a fresh initialization
   (:func:`lth_jax.tickets.random_ticket`), each trained with the target's recipe
   from step 0 to the end of its schedule (:func:`train_ticket`);
3. **target**: per target and seed, an IMP run on the target with the target's
   recipe. Its level 0 is the dense baseline; with the ``target_own`` baseline
   it goes on to the deepest transferred level, giving the target's own tickets.

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
import os
from typing import Any, Callable, Sequence

import jax
import ml_collections
from etils import epath
from ml_collections import config_dict

from lth_jax import objectives
from lth_jax.data.registry import ImageData, get_spec
from lth_jax.errors import UserError
from lth_jax.find_ticket import check_find_ticket, find_ticket
from lth_jax.recipe import (
    OPTIMIZER_PRESETS,
    abstract_params,
    build_model,
    load_data,
    planned_trajectory,
    preprocess_fn,
    recipe_settings,
    train_config,
    with_optimizer,
)
from lth_jax.recipe import default_config as recipe_config
from lth_jax.results import environment, read_json, remove_temporaries, write_json
from lth_jax.rng import Streams
from lth_jax.rows import StudyMetrics, aggregate, study_row
from lth_jax.stage import Stage
from lth_jax.tickets import (
    Ticket,
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
    train_ticket,
    transfer_ticket,
)
from lth_jax.train import init_variables

__all__ = ["TransferStudy", "BASELINES", "run_transfer_study", "default_config", "run"]

BASELINES = ("random", "target_own")


# --------------------------------------------------------------------------- the study


def _names(values) -> list[str]:
    """Names from a list, a tuple or comma-separated strings (as config overrides give them)."""
    values = [values] if isinstance(values, str) else list(values or ())
    return [name.strip() for value in values for name in str(value).split(",") if name.strip()]


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
      reinit_head: re-initialise the output layer even when its shape matches.
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

    @classmethod
    def from_config(cls, c) -> "TransferStudy":
        """The study of a transfer config (:func:`default_config`; names may be
        given comma-separated, as ``--config.targets=cifar10,svhn_cropped``)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(c) - fields - {"recipe"})
        if unknown:
            raise UserError(f"the config has fields a transfer study does not know: {', '.join(unknown)}")
        values = {k: v for k, v in c.items() if k in fields}
        values["source"] = values.get("source") or c.recipe.dataset
        values["targets"] = _names(values.get("targets"))
        values["baselines"] = _names(values.get("baselines"))
        values["seeds"] = tuple(int(s) for s in values.get("seeds", (0,)))
        if values.get("levels") is not None:
            values["levels"] = tuple(int(level) for level in values["levels"])
        return cls(**values)

    def check(self) -> None:
        """One-line ``UserError``s for settings that cannot work, before anything trains."""
        if not self.targets:
            raise UserError("targets is empty: name at least one target dataset")
        for name in ([self.source] if self.source_workdir is None else []) + list(self.targets):
            get_spec(name)
        for which, preset in (("source_optimizer", self.source_optimizer), ("target_optimizer", self.target_optimizer)):
            if preset != "config" and preset not in OPTIMIZER_PRESETS:
                raise UserError(f"{which}={preset!r} is not one of config, {', '.join(OPTIMIZER_PRESETS)}")
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise UserError(f"unknown baseline {unknown[0]!r}; known baselines: {', '.join(BASELINES)}")
        if not self.seeds:
            raise UserError("seeds is empty: give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"seeds={list(self.seeds)} holds duplicates")
        if self.random_scope not in ("layer", "global"):
            raise UserError(f"random_scope={self.random_scope!r} is not one of layer, global")


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
        self.targets = [_Target.build(t, _seeded(self.target_base, 0, dataset=t)) for t in study.targets]
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

    def kinds(self) -> list[str]:
        return ["winning"] + (["random"] if "random" in self.study.baselines else [])

    def target_run(self, target: _Target, seed: int) -> tuple[ml_collections.ConfigDict, epath.Path]:
        c = _seeded(target.config, seed)
        c.pruning.update(levels=max(self.levels) if "target_own" in self.study.baselines else 0, target=None)
        return c, self.workdir / "target" / f"{target.name}_{target.optimizer}" / f"seed_{seed}"

    def check(self) -> dict[str, str]:
        """Every fit, stage and IMP run of the plan checked; the head state per target."""
        source_params = self.source_params()
        heads = {}
        if self.study.source_workdir is None:
            for seed in self.study.seeds:
                check_find_ticket(_seeded(self.source_c, seed), self.source_dirs[seed], data=self.source_data)
        for target in self.targets:
            heads[target.name] = self.head_state(target, source_params)
            for seed in self.study.seeds:
                for level in self.levels:
                    for kind in self.kinds():
                        settings = self.stage_settings(target, seed, kind, level, heads[target.name])
                        Stage(self.stage_dir(target, seed, kind, level), {"kind": "ticket", **settings}).check()
                c, run_dir = self.target_run(target, seed)
                check_find_ticket(c, run_dir, data=target.data)
        return heads


def _transfer(plan: _Study, target: _Target, seed: int, head_state: str, metrics: StudyMetrics) -> None:
    """Train the source tickets of ``seed`` (and their random twins) on ``target``."""
    study, log_fn = plan.study, plan.log
    fresh_params, _ = init_variables(target.model, Streams(seed).init(), target.example_x)
    exclude = tuple(target.config.pruning.exclude)
    for level in plan.levels:
        ticket_dir = level_ticket_dir(plan.source_dirs[seed], level)
        start = transfer_ticket(load_ticket(ticket_dir), fresh_params, reinit_head=study.reinit_head,
                                prune_head=study.prune_head, exclude=exclude)
        starts = {"winning": lambda: start}
        if "random" in study.baselines:
            starts["random"] = lambda: _random_start(start, target, seed, level, study.random_scope)
        for kind, make in starts.items():
            workdir = plan.stage_dir(target, seed, kind, level)
            prefix = f"{plan.names(target)['source']}→{target.name} {kind} level {level:>2d} seed {seed}"
            done = (workdir / Stage.RECORD).exists()
            settings = plan.stage_settings(target, seed, kind, level, head_state)
            record = train_ticket(make(), target.trainer, seed=seed, workdir=workdir, settings=settings, log_prefix=prefix, log_fn=log_fn)
            metrics.add(study_row(record, kind, seed, target.config.model, ticket_dir, plan.workdir, **plan.names(target)))
            log_fn(f"{prefix}: {100 * record['fraction_remaining']:6.2f}% remaining, test accuracy {record['test_accuracy']:.4f}"
                   + (" (done before)" if done else ""))


def _random_start(start: Ticket, target: _Target, seed: int, level: int, scope: str) -> Ticket:
    """The random ticket of ``start``: a fresh initialization and a permutation of its
    mask, both from the seed's random-ticket stream of ``level``."""
    init_key, mask_key = jax.random.split(Streams(seed).random_ticket(level))
    params, batch_stats = init_variables(target.model, init_key, target.example_x)
    return random_ticket(start, params, batch_stats, mask_key, scope=scope)


def _target_own(plan: _Study, target: _Target, seed: int, metrics: StudyMetrics) -> None:
    """IMP on the target itself: level 0 is the dense baseline; deeper levels (with the
    ``target_own`` baseline) are the target's own tickets."""
    own = "target_own" in plan.study.baselines
    c, run_dir = plan.target_run(target, seed)
    plan.log(f"target {target.name} ({target.optimizer}), seed {seed}: {'own tickets' if own else 'dense baseline'}")
    find_ticket(c, run_dir, data=target.data, log_fn=plan.log)
    names = dict(source=target.name, source_optimizer=target.optimizer, target=target.name, target_optimizer=target.optimizer)
    metrics.add(study_row(read_json(run_dir / "level_00" / Stage.RECORD), "dense", seed, c.model, None, plan.workdir, **names))
    for level in plan.levels if own else ():
        level_dir = run_dir / f"level_{level:02d}"
        metrics.add(study_row(read_json(level_dir / Stage.RECORD), "target_own", seed, c.model, level_dir / "ticket", plan.workdir, **names))


def run_transfer_study(c, study: TransferStudy, workdir: str | os.PathLike, *, target_config=None,
                       log_fn: Callable[[str], None] = print) -> dict:
    """Run (or resume) the study; returns the summary also written to ``summary.json``.

    ``c`` is the source recipe (an image-experiment config,
    :func:`lth_jax.find_ticket.default_config`); ``target_config`` the targets'
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
        for seed in study.seeds:
            log_fn(f"source {plan.source_c.dataset} ({plan.source_c.optimizer.name}), seed {seed}: finding tickets")
            find_ticket(_seeded(plan.source_c, seed), plan.source_dirs[seed], data=plan.source_data, log_fn=log_fn)
    for target in plan.targets:
        for seed in study.seeds:
            _transfer(plan, target, seed, heads[target.name], metrics)
            _target_own(plan, target, seed, metrics)
    info = plan.source_info
    summary = {"source": info["dataset"], "source_optimizer": info["optimizer"], "targets": list(study.targets), "levels": plan.levels,
               "seeds": list(study.seeds), "groups": aggregate(metrics.all())}
    write_json(workdir / "summary.json", summary)
    return summary


def default_config(recipe=None) -> ml_collections.ConfigDict:
    """Every field of a transfer study: ``recipe``, the source's recipe (a find_ticket
    config, by default :func:`lth_jax.recipe.default_config`), and the fields
    of :class:`TransferStudy`."""
    c = ml_collections.ConfigDict()
    c.recipe = recipe_config() if recipe is None else recipe
    c.source = config_dict.placeholder(str)  # default: the recipe's dataset
    c.targets = ()  # target datasets (comma-separated on the command line)
    c.levels = config_dict.placeholder(tuple)  # default: every level of the source run
    c.baselines = ("random",)  # random, target_own
    c.seeds = (0,)
    c.source_optimizer = "config"  # config (the recipe's), sgd or adam
    c.target_optimizer = "config"
    c.source_workdir = config_dict.placeholder(str)  # reuse the tickets of a find_ticket workdir
    c.random_scope = "layer"  # layer: per-layer counts; global: the total only
    c.reinit_head = False  # re-initialise the output layer even when its shape matches
    c.prune_head = False  # prune a fresh output layer to the ticket's sparsity
    return c


def run(c, workdir: str | os.PathLike, *, target_config=None, log_fn: Callable[[str], None] = print) -> dict:
    """The transfer experiment of a transfer config (``experiments/transfer.py``):
    ``c.recipe`` is the source recipe (and the targets', unless ``target_config``),
    the other fields are those of :class:`TransferStudy`."""
    return run_transfer_study(c.recipe, TransferStudy.from_config(c), workdir, target_config=target_config, log_fn=log_fn)
