"""Iterative magnitude pruning with late resetting (Frankle & Carbin; Morcos et al.).

Level 0 trains the dense network and captures the *rewind state* (weights and
batch statistics at step ``k``; ``k = 0`` is the initialization). Every later
level prunes from the previous level's trained weights (globally or per layer,
to the exact count of the trajectory), resets the survivors and the batch
statistics to step ``k``, and trains from step ``k`` to the end of the schedule
with a fresh optimizer state; the learning-rate schedule continues at ``k``. Masks are nested: ``mask_{l+1} ⊆ mask_l``.

With a ``workdir`` the run is resumable; the run and each level are stages (:mod:`lth_jax.stage`): a rerun with other
settings is refused, finished levels are read back, an interrupted level continues from its last checkpoint. Layout::

    workdir/
      settings.json            the run's settings (checked on resume)
      level_00/
        settings.json          the level and its planned weight count
        rewind/                θ_k and batch statistics at step k (level 0 only)
        ticket/                mask, θ_k ⊙ m, batch statistics, ticket.json
        trained/               the level's trained params and batch statistics
        checkpoints/           train state of the unfinished level (removed when done)
        history.jsonl          one record per epoch
        record.json            the level's record; written last: the level is done
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Sequence

import jax
from etils import epath

from lth_jax import masks as mask_lib
from lth_jax.errors import UserError
from lth_jax.executors import build_executor
from lth_jax.loop import Replica, RewindState, fit_replicas, level_record, resume_stage
from lth_jax.objectives import Objective
from lth_jax.optim import make_optimizer
from lth_jax.rng import Streams
from lth_jax.stage import Stage
from lth_jax.tickets import Ticket, head_info, load_ticket, prunable_info, save_ticket
from lth_jax.train import TrainConfig, TrainState, create_train_state, init_variables, rewind_step
from lth_jax.trajectory import PruningPlan

__all__ = ["PruningPlan", "ImpOptions", "LevelResult", "ImpResult", "run_imp", "run_imp_seeds", "check_imp"]


@dataclasses.dataclass(frozen=True)
class ImpOptions:
    """The optional parts of an IMP run (the keyword arguments of :func:`run_imp`)."""

    rewind: int | str = 0
    vmap: bool = False
    level_callback: Callable[["LevelResult"], bool | None] | None = None
    on_level_start: Callable[[int, TrainState, int], None] | None = None
    prunable: mask_lib.Prunable | None = None
    mesh: Any = None
    preprocess: Any = None
    ticket_info: dict | None = None
    settings: dict | None = None
    hooks: Sequence[Callable] = ()
    on_epoch: Callable[[dict], None] | None = None
    eval_name: str = "test"
    divergence_loss: float | None = None
    init_role: str = "source"  # the seed's initialization stream (lth_jax.rng.Streams.init)
    batch_order: str = "per_seed"  # each seed's own epoch order, or "shared": one for every seed (lth_jax.rng.Streams.data_seed)
    log_fn: Callable[[str], None] = print


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
        load = lambda t: load_ticket(t) if isinstance(t, epath.Path) else t  # noqa: E731
        return [load(t) for t in self._items[i]] if isinstance(i, slice) else load(self._items[i])


@dataclasses.dataclass
class ImpResult:
    """Per-level records and tickets (``tickets[l]``, loaded from disk when there is a workdir)."""

    records: list[dict]
    tickets: Sequence[Ticket]
    trajectory: list[int]
    rewind: RewindState | None
    stopped_at_level: int | None = None


# ------------------------------------------------------------------ the engine

# Settings that change what a run computes (compared on resume). Logging and
# checkpoint cadence are left out: changing them on resume is harmless.
_VOLATILE_TRAIN_KEYS = ("log_every_epochs", "checkpoint_every_epochs", "checkpoint_every_seconds", "checkpoint_async")


class _Seed:
    """One replica of an IMP run: a seed, its workdir and what its levels produced."""

    def __init__(self, seed: int, workdir: str | os.PathLike | None):
        self.seed, self.streams = int(seed), Streams(int(seed))
        self.workdir = None if workdir is None else epath.Path(workdir)
        self.records: list[dict] = []
        self.tickets = _Tickets()
        self.previous: tuple[Any, Any] | None = None  # (trained params, mask) of the last level
        self.rewind: RewindState | None = None
        self.stopped_at: int | None = None
        self.params0 = self.batch_stats0 = self.order = None  # order: the seed of its epoch order (set by _Imp.check)

    def result(self, counts: list[int]) -> ImpResult:
        return ImpResult(self.records, self.tickets, counts, self.rewind, self.stopped_at)


class _Imp:
    """An IMP run over seeds; :meth:`run` is the algorithm, top to bottom."""

    def __init__(self, model, objective: Objective, train_data, eval_data, config: TrainConfig, plan: PruningPlan, options: ImpOptions):
        self.model, self.objective, self.config, self.plan, self.options = model, objective, config, plan, options
        self.train_data, self.eval_data = train_data, eval_data
        self.log = options.log_fn

    def run(self, seeds: list[_Seed]) -> list[ImpResult]:
        self.several = len(seeds) > 1
        self.setup(seeds)
        for level in range(len(self.counts)):
            active = [s for s in seeds if s.stopped_at is None]
            if not active:
                break
            to_train = [s for s in active if not self.read_finished_level(s, level)]
            if to_train:
                self.train_level(to_train, level)
        return [s.result(self.counts) for s in seeds]

    # ------------------------------------------------------------------ setup

    def check(self, seeds: list[_Seed]) -> None:
        """The trajectory and rewind step, and every seed's and level's settings
        checked against the workdir; computes no weights and writes nothing."""
        config, options = self.config, self.options
        self.example_x = next(iter(self.train_data.batches(config.batch_size)))["x"][:1]
        shapes, _ = jax.eval_shape(lambda key: init_variables(self.model, key, self.example_x), seeds[0].streams.init())
        if options.prunable is None:
            mask_lib.check_exclude_patterns(shapes, self.plan.exclude)
            self.rule = mask_lib.prunable_rule(self.plan.exclude)
        else:
            self.rule = options.prunable
        self.total = mask_lib.count_prunable(shapes, self.rule)
        self.counts = self.plan.trajectory(self.total)
        spe = self.train_data.steps_per_epoch(config.batch_size, config.drop_remainder)
        self.total_steps = config.epochs * spe
        self.rewind_step = rewind_step(options.rewind, spe, self.total_steps, pruned_levels=len(self.counts) > 1, whole_epochs=options.vmap)
        for s in seeds:
            s.order = s.streams.data_seed(config.data_seed, options.batch_order)  # a bad batch_order is refused here
            if s.workdir is not None:
                self.run_stage(s).check()
                for level in range(len(self.counts)):
                    self.level_stage(s, level).check()

    def setup(self, seeds: list[_Seed]) -> None:
        self.check(seeds)  # every seed and level checked before anything is written
        for s in seeds:
            s.params0, s.batch_stats0 = init_variables(self.model, s.streams.init(self.options.init_role), self.example_x)
            if s.workdir is None:
                continue
            self.run_stage(s).open()
            level0 = self.level_stage(s, 0)
            if level0.has("rewind"):
                arrays = level0.load("rewind", {"params": s.params0, "batch_stats": s.batch_stats0})
                s.rewind = RewindState(level0.meta("rewind")["step"], *jax.device_get((arrays["params"], arrays["batch_stats"])))
        spe = self.train_data.steps_per_epoch(self.config.batch_size, self.config.drop_remainder)
        self.tx = make_optimizer(self.config.optimizer, spe, self.total_steps)
        self.executor = self.build_executor()
        self.info = self.ticket_info(seeds[0].params0)

    def settings(self, seed: int) -> dict:
        train = {k: v for k, v in self.config.to_dict().items() if k not in _VOLATILE_TRAIN_KEYS}
        plan = self.plan.to_dict()
        prunable = self.options.prunable
        return {
            "kind": "imp",
            "model": repr(self.model),
            "objective": self.objective.name,
            "train": train,
            "plan": {k: plan[k] for k in ("rate", "scope", "exclude")},
            "rewind": str(self.options.rewind),
            "seed": seed,
            **({"init": self.options.init_role} if self.options.init_role != "source" else {}),
            **({"batch_order": self.options.batch_order} if self.options.batch_order != "per_seed" else {}),
            "prunable": getattr(prunable, "__qualname__", None) if prunable is not None else None,
            **({"experiment": self.options.settings} if self.options.settings else {}),
        }

    def run_stage(self, s: _Seed) -> Stage:
        return Stage(s.workdir, self.settings(s.seed))

    def level_stage(self, s: _Seed, level: int) -> Stage | None:
        meta = {"level": level, "weights_remaining": self.counts[level]}
        return None if s.workdir is None else Stage(s.workdir / f"level_{level:02d}", meta, checkpoint_async=self.config.checkpoint_async)

    def build_executor(self):
        return build_executor(self.model, self.tx, self.objective, self.train_data, self.eval_data, self.config,
                              vmap=self.options.vmap, mesh=self.options.mesh, preprocess=self.options.preprocess)

    def ticket_info(self, params0) -> dict:
        """What every ticket of the run records about how it was made."""
        info = dict(self.options.ticket_info or {})
        info.setdefault("model", type(self.model).__name__)
        head = info.pop("head", getattr(self.model, "output_layer", None))
        if head is not None:
            info["head"] = head_info(params0, head)
            info["classes"] = info["head"]["shape"][-1]
        exclude = None if self.options.prunable is not None else self.plan.exclude
        info["prunable"] = prunable_info(exclude) if exclude is not None else {"rule": self.settings(0)["prunable"]}
        return {**info, "rewind_step": self.rewind_step, "total_prunable": self.total}

    # ------------------------------------------------------------------ levels

    def tag(self, s: _Seed, level: int) -> str:
        return f"seed {s.seed} level {level:>2d}" if self.several else f"level {level:>2d}"

    def report(self, s: _Seed, result: LevelResult) -> None:
        callback = self.options.level_callback
        if callback is not None and callback(result):
            s.stopped_at = result.level

    def read_finished_level(self, s: _Seed, level: int) -> bool:
        """A finished level of ``s`` read back (and reported) instead of trained."""
        stage = self.level_stage(s, level)
        if stage is None or not stage.done:
            return False
        stage.open()
        record = stage.record()
        s.records.append(record)
        s.tickets.append(stage.path("ticket"))
        trained = jax.device_get(stage.load("trained", {"params": s.params0, "batch_stats": s.batch_stats0}))
        mask = load_ticket(stage.path("ticket")).mask
        s.previous = (trained["params"], mask)
        self.report(s, LevelResult(level, record, mask, trained["params"], trained["batch_stats"], s.seed))
        return True

    def level_mask(self, s: _Seed, level: int, stage: Stage | None):
        """The mask of ``level``: its saved ticket's, the dense mask, or the previous level's trained weights pruned."""
        if stage is not None and stage.has("ticket"):
            return load_ticket(stage.path("ticket")).mask
        if level == 0:
            return mask_lib.init_mask(s.params0)
        params, mask = s.previous
        if self.plan.scope == "global":
            return mask_lib.global_magnitude_prune(params, mask, count=self.counts[level - 1] - self.counts[level], prunable=self.rule)
        return mask_lib.layerwise_magnitude_prune(params, mask, fraction=self.plan.layerwise_fraction(self.total), prunable=self.rule)

    def ticket(self, s: _Seed, level: int, params, batch_stats, mask) -> Ticket:
        params, batch_stats, mask = jax.device_get((params, batch_stats, mask))
        remaining = mask_lib.count_remaining(mask, self.rule)
        counts = {"weights_remaining": remaining, "fraction_remaining": remaining / self.total}
        return Ticket(mask, params, batch_stats, {**self.info, "seed": s.seed, "level": level, **counts})

    def start_level(self, s: _Seed, level: int) -> tuple[Replica, Stage | None, Any]:
        """The replica of ``s`` at ``level``: its mask, rewound weights, ticket and last checkpoint."""
        stage = self.level_stage(s, level)
        if stage is not None:
            stage.open()
        mask = self.level_mask(s, level, stage)
        if level == 0:
            state = create_train_state(s.params0, self.tx, batch_stats=s.batch_stats0, rng=s.streams.steps(), step=0)
        else:
            state = create_train_state(s.rewind.params, self.tx, mask=mask, batch_stats=s.rewind.batch_stats,
                                       rng=s.streams.steps(), step=self.rewind_step)
            if stage is not None and not stage.has("ticket"):
                save_ticket(stage.path("ticket"), self.ticket(s, level, state.params, state.batch_stats, mask))
        state, progress, checkpoint = resume_stage(stage, state, tag=self.tag(s, level), log_fn=self.log)
        if self.options.on_level_start is not None:
            self.options.on_level_start(level, state, s.seed)

        def on_rewind(captured: RewindState) -> None:
            s.rewind = captured
            if stage is not None and not stage.has("rewind"):
                stage.save("rewind", {"params": captured.params, "batch_stats": captured.batch_stats}, {"step": captured.step})

        hooks = [_with_context(hook, level, s.seed) for hook in self.options.hooks]
        on_epoch = () if self.options.on_epoch is None else [lambda record: self.options.on_epoch({"level": level, "seed": s.seed, **record})]
        replica = Replica(state, s.order, progress, on_rewind, checkpoint, hooks, self.tag(s, level), on_epoch)
        return replica, stage, mask

    def train_level(self, seeds: list[_Seed], level: int) -> None:
        """Train ``level`` of every seed in ``seeds`` together, then save and report each."""
        started = [self.start_level(s, level) for s in seeds]
        began = time.perf_counter()
        rewind_step = self.rewind_step if level == 0 else None
        results = fit_replicas([r for r, _, _ in started], self.executor, self.config, rewind_step=rewind_step,
                               eval_name=self.options.eval_name, divergence_loss=self.options.divergence_loss, log_fn=self.log)
        seconds = (time.perf_counter() - began) / len(seeds)
        for s, (_, stage, mask), result in zip(seeds, started, results):
            self.finish_level(s, level, stage, mask, result, seconds)

    def finish_level(self, s: _Seed, level: int, stage: Stage | None, mask, result, seconds: float) -> None:
        """Save and report the trained ``level`` of ``s`` (``result``: its :class:`~lth_jax.loop.FitResult`)."""
        if s.rewind is None and result.progress.diverged:
            raise UserError(f"{self.tag(s, level)} diverged at step {int(result.state.step)}, before the rewind step "
                            f"{self.rewind_step} (loss NaN, infinite or far above chance): lower the learning rate")
        if s.rewind is None:  # early stopping ended level 0 before the rewind step
            raise UserError(f"{self.tag(s, level)} stopped early at step {int(result.state.step)}, before the rewind step "
                            f"{self.rewind_step}: rewind earlier or raise the early-stopping patience")
        trained = jax.device_get({"params": result.state.params, "batch_stats": result.state.batch_stats})
        if level == 0:
            ticket = self.ticket(s, level, s.rewind.params, s.rewind.batch_stats, mask)
        else:
            ticket = self.ticket(s, level, mask_lib.apply_mask(s.rewind.params, mask), s.rewind.batch_stats, mask)
        counts = {"weights_remaining": ticket.info["weights_remaining"], "total_prunable": self.total}
        record = {**level_record(level, counts, result, seconds, self.rewind_step), "seed": s.seed}
        if stage is not None:
            if not stage.has("ticket"):
                save_ticket(stage.path("ticket"), ticket)
            stage.save("trained", trained)
            stage.finish(record, result.history)
        s.records.append(record)
        s.tickets.append(ticket if stage is None else stage.path("ticket"))
        s.previous = (trained["params"], jax.device_get(mask))
        self.report(s, LevelResult(level, record, s.previous[1], trained["params"], trained["batch_stats"], s.seed))


def _with_context(hook, level: int, seed: int):
    def wrapped(state, record):
        return hook(state, {"level": level, "seed": seed, **record})

    return wrapped


def run_imp(model, objective: Objective, train_data, eval_data, config: TrainConfig, plan: PruningPlan, *,
            seed: int = 0, workdir: str | os.PathLike | None = None, **options) -> ImpResult:
    """Find tickets by IMP with late resetting.

    Args:
      model: a Flax module called as ``model.apply(variables, x, train=...)``;
        its ``output_layer`` attribute (the zoo's models have one) names the
        output layer that tickets record.
      objective: loss and metrics (:mod:`lth_jax.objectives`).
      train_data, eval_data: datasets with ``batches(...)`` and ``steps_per_epoch(...)``
        (e.g. :class:`lth_jax.data.ArrayDataset`); ``eval_data`` is evaluated every epoch.
      config: the training recipe; every level trains to the end of its schedule.
      plan: the pruning trajectory and scope.
      seed: the seed of the initialization, the per-step randomness and (with
        ``config.data_seed``) the epoch order (:class:`lth_jax.rng.Streams`; ``batch_order="shared"``: one order for every seed).
      workdir: where tickets, records and checkpoints go; resumes when it holds this run.
      **options: the fields of :class:`ImpOptions`: ``rewind`` (the rewind step
        ``k``: an int, ``"500it"`` or ``"1ep"``; 0 resets to the initialization),
        ``level_callback`` (called after each level, also for levels read back on
        resume, with a :class:`LevelResult`; return True to stop),
        ``on_level_start(level, state, seed)``, ``prunable`` (a predicate replacing
        the default rule; ``plan.exclude`` is then ignored), ``mesh``,
        ``preprocess`` (``(x, rng, train) -> x`` inside the jitted steps),
        ``ticket_info`` (extra ``ticket.json`` metadata; ``head`` names the output
        layer), ``settings`` (more settings that change results, e.g. the dataset,
        recorded and compared on resume), ``hooks`` (``hook(state, epoch_record)`` after every epoch),
        ``on_epoch(epoch_record)`` (the record alone, with ``level`` and ``seed``),
        ``eval_name``, ``divergence_loss`` (a level whose loss is NaN, infinite or
        above it stops at that epoch: its record says ``diverged``), ``log_fn``.
    """
    return _Imp(model, objective, train_data, eval_data, config, plan, ImpOptions(**options)).run([_Seed(seed, workdir)])[0]


def check_imp(model, objective: Objective, train_data, eval_data, config: TrainConfig, plan: PruningPlan, *,
              seeds: Sequence[int] = (0,), seed: int | None = None, workdir: str | os.PathLike, **options) -> None:
    """Refuse (``UserError``) when ``workdir`` holds this IMP run with other settings
    (``seed``: a :func:`run_imp` workdir; ``seeds``: a :func:`run_imp_seeds` one).
    Computes no weights and writes nothing; the arguments are those of the run."""
    if seed is not None:
        replicas = [_Seed(seed, workdir)]
    else:
        replicas = [_Seed(s, epath.Path(workdir) / f"seed_{s}") for s in seeds]
    _Imp(model, objective, train_data, eval_data, config, plan, ImpOptions(**options)).check(replicas)


def run_imp_seeds(model, objective: Objective, train_data, eval_data, config: TrainConfig, plan: PruningPlan, *,
                  seeds: Sequence[int], vmap: bool = True, workdir: str | os.PathLike | None = None, **options) -> list[ImpResult]:
    """IMP for several seeds of one model, level by level in lockstep.

    With ``vmap=True`` all seeds train in one compiled program
    (:class:`lth_jax.loop.VmappedEpochs`: small in-memory models); with
    ``vmap=False`` each is trained data-parallel over the devices. Either way
    each seed has its own initialization, epoch order (unless ``batch_order="shared"``), early stopping and masks,
    and the results equal those of :func:`run_imp` per seed (up to float
    tolerance). A seed whose ``level_callback`` returns True stops; the others
    go on. Seed ``s`` writes to ``workdir/seed_s`` (the layout of a
    :func:`run_imp` workdir). The other arguments are those of :func:`run_imp`.
    """
    replicas = _replicas(seeds, workdir)
    return _Imp(model, objective, train_data, eval_data, config, plan, ImpOptions(vmap=vmap, **options)).run(replicas)


def _replicas(seeds: Sequence[int], workdir) -> list[_Seed]:
    """The replicas of :func:`run_imp_seeds` (seed ``s`` in ``workdir/seed_s``)."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise UserError("seeds is empty: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"seeds={seeds} holds duplicates")
    return [_Seed(s, None if workdir is None else epath.Path(workdir) / f"seed_{s}") for s in seeds]
