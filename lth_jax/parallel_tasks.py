"""Winning tickets on parallel tasks (the thesis "Winning the lottery twice").

:func:`run_parallel_tasks` is one experiment: data, MLP shape and pruning
trajectory (or the network extension), IMP reset to the initialization for
several seeds at once, the structure of every level's ticket, the stop rules,
and the run directory (``config.json``, ``metrics.jsonl``, ``summary.json``,
``figures/``, TensorBoard event files in ``tensorboard/``, the IMP runs under ``imp/``). :class:`ThesisConfig` is its typed
configuration; :func:`default_config` the same fields as an ml_collections
config, which :func:`run` (``experiments/parallel_tasks.py``) converts.
The grids of the thesis are in :mod:`lth_jax.thesis_sweep`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Sequence

import jax
import ml_collections
import numpy as np
from etils import epath
from ml_collections import config_dict

from lth_jax import objectives, parallel
from lth_jax.data.tasks import load_task_data
from lth_jax.errors import UserError
from lth_jax.imp import check_imp
from lth_jax.imp_pack import run_imp_pack
from lth_jax.models.mlp import MLP, kernels_in_order
from lth_jax.optim import OptimizerRecipe
from lth_jax.progress import Progress
from lth_jax.sizes import Divergences, check_disk, check_memory
from lth_jax.results import environment, note_damaged_rows, write_json, write_jsonl
from lth_jax.rng import BATCH_ORDERS, SHARED_ORDERS, order_name
from lth_jax.stage import Stage
from lth_jax.structure import StructureReport, analyze
from lth_jax.tensorboard import EventLog, scalars
from lth_jax.thesis_rows import LEVEL_SCALARS, ROW_HEADER, format_row, level_row, test_metrics
from lth_jax.thesis_rows import summary as summary_of
from lth_jax.train import TrainConfig, make_eval_step
from lth_jax.trajectory import PruningPlan, extension_shape, extension_trajectory, weight_count

__all__ = ["ThesisConfig", "default_config", "run_parallel_tasks", "run_parallel_tasks_pack", "train_parallel_tasks_pack", "pack_groups", "run",
           "format_row"]


@dataclasses.dataclass(frozen=True)
class ThesisConfig:
    """One parallel-task experiment (defaults: the thesis's Moons+Circles setting).

    The MLP is either the network extension of ``base_shape`` at
    ``extension_level`` (pruned along ``[P_E, ..., P_1, N]``), or an explicit
    ``shape`` pruned along the trajectory of two of ``rate``, ``levels``,
    ``target``. ``coverage`` is ``"total"`` or ``"output"`` (``None``: output for
    the MNIST+Fashion data, total otherwise). ``validation_split`` holds a
    fraction of the train set out for early stopping instead of the test set.
    ``batch_order``: ``"per_seed"``, each seed draws its own epoch order (independent
    runs), or ``"shared"``, every seed trains on one order, as the thesis's code does
    (:meth:`lth_jax.rng.Streams.data_seed`); ``shared_order`` numbers that order (orders
    that differ in nothing else, the data included; 0: the one ``"shared"`` always meant).
    """

    dataset: str = "moons_circles"
    num_tasks: int = 3
    base_shape: tuple[int, ...] = (4, 8, 8, 2)
    extension_level: int | None = 9
    shape: tuple[int, ...] | None = None
    rate: float | None = 0.32
    levels: int | None = None
    target: int | None = None
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    epochs: int = 3000
    patience: int | None = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    coverage: str | None = None
    stop_on_degradation: bool = True
    stop_on_split: bool = False
    validation_split: float = 0.0
    data_seed: int = 0
    batch_order: str = "per_seed"
    shared_order: int = 0
    vmap: bool = True
    data_dir: str | None = None
    download: bool = False
    log_every_epochs: int = 0
    checkpoint_every_epochs: int = 0

    def __post_init__(self):
        for name in ("base_shape", "shape", "seeds"):
            value = getattr(self, name)
            if value is not None:
                try:
                    object.__setattr__(self, name, tuple(int(v) for v in value))
                except (TypeError, ValueError):
                    raise UserError(f"{name}={value!r} is not a list of integers") from None
        if any(s < 0 for s in self.seeds):
            raise UserError(f"seeds={','.join(map(str, self.seeds))} holds a negative seed; seeds are integers >= 0")
        for name in ("base_shape", "shape"):
            value = getattr(self, name)
            if value is not None and min(value) < 1:
                raise UserError(f"{name}={','.join(map(str, value))} has a layer of width < 1; every width must be >= 1")
        if not self.seeds:
            raise UserError("seeds is empty: give at least one seed")
        if self.rate is not None and not 0.0 < self.rate < 1.0:
            raise UserError(f"rate={self.rate} is outside the open interval (0, 1)")
        if self.coverage not in (None, "total", "output"):
            raise UserError(f"coverage={self.coverage!r} is not one of 'total', 'output'")
        if self.batch_order not in BATCH_ORDERS:
            raise UserError(f"batch_order={self.batch_order!r} is not one of {', '.join(map(repr, BATCH_ORDERS))}")
        if isinstance(self.shared_order, bool) or not isinstance(self.shared_order, int) or not 0 <= self.shared_order < SHARED_ORDERS:
            raise UserError(f"shared_order={self.shared_order!r} is not an integer from 0 to {SHARED_ORDERS - 1}")
        if self.shared_order and self.batch_order != "shared":
            raise UserError(f"shared_order={self.shared_order} numbers the orders of batch_order='shared', not of {self.batch_order!r}")
        if self.extension_level is not None and self.shape is not None:
            raise UserError("give either a shape or an extension level, not both")
        if self.extension_level is None and self.shape is None:
            raise UserError("give a shape (with two of rate, levels, target) or an extension level")
        if self.extension_level is not None and (self.levels is not None or self.target is not None):
            raise UserError("the network extension fixes the trajectory: levels and target need a shape")
        if not 0.0 <= self.validation_split < 1.0:
            raise UserError(f"validation_split={self.validation_split} is outside [0, 1)")

    def network(self) -> tuple[tuple[int, ...], PruningPlan]:
        """The MLP shape and the pruning plan."""
        if self.extension_level is not None:
            rate = 0.32 if self.rate is None else self.rate
            shape = extension_shape(self.base_shape, self.extension_level, rate)
            return shape, PruningPlan(counts=tuple(extension_trajectory(self.base_shape, self.extension_level, rate)))
        given = {k: getattr(self, k) for k in ("levels", "target") if getattr(self, k) is not None}
        if len(given) == 2:
            return self.shape, PruningPlan(**given)
        if len(given) == 1 and self.rate is not None:
            return self.shape, PruningPlan(rate=self.rate, **given)
        raise UserError("with a shape, give two of rate, levels, target")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, c) -> "ThesisConfig":
        """The experiment of an ml_collections config (:func:`default_config`'s fields).

        A ``shape`` replaces the network extension; with a shape and both
        ``levels`` and ``target`` the trajectory ends exactly at the target and
        ``rate`` is not used. ``patience=0`` trains every epoch; ``coverage="auto"``
        is output coverage for image data, total otherwise.
        """
        d = dict(c)
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise UserError(f"the config has fields a parallel-task experiment does not know: {', '.join(unknown)}")
        if d.get("shape"):
            d["extension_level"] = None
            if d.get("levels") is not None and d.get("target") is not None:
                d["rate"] = None
        else:
            d["shape"] = None
        d["patience"] = d.get("patience") or None
        d["coverage"] = None if d.get("coverage") in (None, "auto") else d["coverage"]
        return cls(**d)


def default_config() -> ml_collections.ConfigDict:
    """Every field of a parallel-task experiment, with the thesis's Moons+Circles values
    (see :class:`ThesisConfig`); fields left ``None`` are set from the command line
    with ``--config.shape=4,40,40,2``, ``--config.levels=8`` and so on."""
    c = ml_collections.ConfigDict()
    defaults = ThesisConfig()
    c.dataset = defaults.dataset  # moons_circles, parallel_moons, mnist_fashion, mnist, fashion_mnist
    c.num_tasks = defaults.num_tasks  # tasks of parallel_moons
    c.base_shape = defaults.base_shape  # base MLP of the network extension
    c.extension_level = defaults.extension_level  # the network extension's level (when no shape is given)
    c.shape = config_dict.placeholder(tuple)  # an explicit MLP, pruned along two of rate, levels, target
    c.rate = defaults.rate  # pruning rate per level (also the extension's rate)
    c.levels = config_dict.placeholder(int)
    c.target = config_dict.placeholder(int)
    c.seeds = defaults.seeds  # trained at once
    c.epochs = defaults.epochs  # maximum epochs per level
    c.patience = defaults.patience  # early stopping on the eval loss; 0: train every epoch
    c.batch_size = defaults.batch_size
    c.learning_rate = defaults.learning_rate  # Adam
    c.coverage = "auto"  # auto, total or output
    c.stop_on_degradation = defaults.stop_on_degradation
    c.stop_on_split = defaults.stop_on_split
    c.validation_split = defaults.validation_split  # > 0: early-stop on held-out training data
    c.data_seed = defaults.data_seed  # the synthetic data and the epoch order
    c.batch_order = defaults.batch_order  # per_seed: each seed its own epoch order; shared: one for every seed (the thesis's code)
    c.shared_order = defaults.shared_order  # which shared order (batch_order=shared): 0, 1, ...; the data stay the same
    c.vmap = defaults.vmap  # all seeds in one compiled program
    c.data_dir = config_dict.placeholder(str)  # TFDS data_dir for the image datasets
    c.download = defaults.download
    c.log_every_epochs = defaults.log_every_epochs  # progress lines (0: levels only)
    c.checkpoint_every_epochs = defaults.checkpoint_every_epochs
    return c


def run(c, workdir: str | os.PathLike, *, log_fn: Callable[[str], None] = print) -> dict:
    """The parallel-task experiment of config ``c`` (``experiments/parallel_tasks.py``)."""
    return run_parallel_tasks(ThesisConfig.from_config(c), workdir, log_fn=log_fn)


def _check_shape(shape, data) -> None:
    if len(shape) < 3:
        raise UserError(f"shape={shape} needs at least one hidden layer")
    if shape[0] != data.num_inputs or shape[-1] != data.num_outputs:
        raise UserError(
            f"shape={shape} does not fit the data: it needs {data.num_inputs} inputs and {data.num_outputs} outputs"
        )


# Fields that do not change what an experiment computes: how and where it runs, which
# seeds this invocation reports (each seed's IMP run records its own settings).
_VOLATILE = ("seeds", "vmap", "data_dir", "download", "log_every_epochs", "checkpoint_every_epochs")
# Settings at these defaults are left out of the recorded ones, so that workdirs made before the field resume.
_DEFAULTS_LEFT_OUT = {("batch_order", "per_seed"), ("shared_order", 0)}


def _order_text(experiment: dict) -> str:
    order, number = experiment.get("batch_order", "per_seed"), experiment.get("shared_order", 0)  # per_seed, 0: not recorded
    return f"experiment.batch_order={order!r}" + (f", experiment.shared_order={number}" if order == "shared" else "")


@dataclasses.dataclass
class _Setup:
    """What an experiment config and its data determine."""

    shape: tuple[int, ...]
    plan: PruningPlan
    coverage: str
    objective: objectives.Objective
    train_data: object
    eval_data: object
    eval_name: str
    train: TrainConfig

    @classmethod
    def build(cls, config: ThesisConfig, data) -> "_Setup":
        shape, plan = config.network()
        _check_shape(shape, data)
        # Image inputs: border pixels may never connect, so only outputs decide coverage;
        # under "total" a single-task E9 run would read "degraded" from level 1 on.
        coverage = config.coverage or ("output" if data.image_shape is not None else "total")
        objective = objectives.sigmoid_tasks(data.num_tasks) if set(data.classes) == {2} else objectives.softmax_tasks(data.classes)
        if objective.num_outputs != data.num_outputs:
            raise UserError(f"dataset {config.dataset} has {data.num_outputs} outputs for classes {data.classes}")
        train_data, eval_data, eval_name = data.train, data.test, "test"
        if config.validation_split:
            train_data, eval_data = data.train.split(config.validation_split, seed=config.data_seed)
            eval_name = "val"
        train = TrainConfig(
            epochs=config.epochs,
            batch_size=config.batch_size,
            optimizer=OptimizerRecipe(name="adam", learning_rate=config.learning_rate),
            early_stopping_patience=config.patience,
            data_seed=config.data_seed,
            log_every_epochs=config.log_every_epochs,
            checkpoint_every_epochs=config.checkpoint_every_epochs,
            checkpoint_every_seconds=300.0,
        )
        return cls(shape, plan, coverage, objective, train_data, eval_data, eval_name, train)

    def imp_arguments(self, config: ThesisConfig, data, workdir: epath.Path) -> tuple[tuple, dict]:
        args = (MLP(self.shape), self.objective, self.train_data, self.eval_data, self.train, self.plan)
        ticket_info = {"model": "mlp", "shape": list(self.shape), "dataset": config.dataset, "task_classes": list(data.classes)}
        experiment = {"dataset": config.dataset, "num_tasks": config.num_tasks, "validation_split": config.validation_split}
        return args, dict(seeds=config.seeds, rewind=0, workdir=workdir / "imp", ticket_info=ticket_info, settings=experiment,
                          eval_name=self.eval_name, batch_order=order_name(config.batch_order, config.shared_order))


def run_parallel_tasks(config: ThesisConfig, workdir: str | os.PathLike, *, log_fn: Callable[[str], None] = print,
                       progress: bool | None = None) -> dict:
    """Run one experiment into ``workdir`` (resumable) and return its summary.

    The workdir is a stage: a rerun with a setting that changes the results
    (data, shape, trajectory, training, coverage, stop rules) is refused with
    one line naming it, before anything is written. ``progress``: a progress bar
    (default: when stderr is a terminal and ``log_fn`` is ``print``).
    """
    return run_parallel_tasks_pack([(config, workdir)], log_fn=log_fn, progress=progress)[0]


def run_parallel_tasks_pack(points: Sequence[tuple[ThesisConfig, str | os.PathLike]], *, log_fn: Callable[[str], None] = print,
                            progress: bool | None = None) -> list[dict]:
    """Several experiments of one MLP shape, data and training (``(config, workdir)`` each;
    they may differ in their trajectory, stop rules and seeds) trained as one IMP run
    (:func:`lth_jax.imp_pack.run_imp_pack`): level ``l`` of every experiment's seeds in
    one program. Each experiment is what :func:`run_parallel_tasks` makes of it
    (its workdir, resume, results); returns their summaries."""
    return train_parallel_tasks_pack(points, log_fn=log_fn, progress=progress)()


def train_parallel_tasks_pack(points: Sequence[tuple[ThesisConfig, str | os.PathLike]], *, log_fn: Callable[[str], None] = print,
                              progress: bool | None = None, finisher=None) -> Callable[[], list[dict]]:
    """:func:`run_parallel_tasks_pack` up to the end of training; returns what finishes it (summaries,
    figures, the first divergence raised), to call in any thread. A ``finisher`` (an ``Executor``)
    is handed each experiment's finishing once its last level is trained, while the rest of the
    pack trains (a sweep draws figures beside training); what is returned then waits for it."""
    experiments = [_Experiment(config, workdir, log_fn, progress if len(points) == 1 else False) for config, workdir in points]
    finishing: dict = {}

    def run_done(i: int, _) -> None:
        experiments[i].close()
        if finisher is not None:
            finishing[i] = finisher.submit(experiments[i].finish)

    try:
        run_imp_pack([e.job for e in experiments], on_run_done=run_done)
    finally:
        for e in experiments:
            e.close()

    def finish() -> list[dict]:
        summaries, errors = [], []
        for i, e in enumerate(experiments):  # every experiment's results written, then its first divergence reported
            try:
                summaries.append(finishing[i].result() if i in finishing else e.finish())
            except UserError as error:
                errors.append(error)
        if errors:
            raise errors[0]
        return summaries

    return finish


def pack_groups(configs: Sequence[ThesisConfig], pack: bool = True) -> list[list[int]]:
    """The indices of ``configs`` in the order given, grouped into what
    :func:`run_parallel_tasks_pack` trains together: vmapped experiments of one MLP
    shape (each alone when ``pack`` is False)."""
    groups: dict = {}
    for i, config in enumerate(configs):
        groups.setdefault(config.network()[0] if pack and config.vmap else i, []).append(i)
    return list(groups.values())


class _Experiment:
    """One experiment's checks, run directory, IMP job (``job``: the arguments of
    :func:`lth_jax.imp.run_imp_seeds`) and level callbacks; :meth:`finish` writes its results."""

    def __init__(self, config: ThesisConfig, workdir, log_fn, progress):
        workdir = epath.Path(workdir)
        shape, plan = config.network()
        given = f"extension_level={config.extension_level}" if config.shape is None else f"shape={','.join(map(str, shape))}"
        parameters = weight_count(shape) + sum(shape[1:])
        check_memory(parameters, len(config.seeds), given)
        check_disk(parameters, len(plan.trajectory(weight_count(shape))), len(config.seeds), config.epochs, workdir, given)
        data = load_task_data(config.dataset, data_seed=config.data_seed, num_tasks=config.num_tasks, data_dir=config.data_dir,
                              download=config.download)
        setup = _Setup.build(config, data)
        experiment = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE and (k, v) not in _DEFAULTS_LEFT_OUT}
        stage = Stage(workdir, {"kind": "parallel_tasks", "experiment": experiment, "coverage": setup.coverage})
        args, kwargs = setup.imp_arguments(config, data, workdir)
        held, asked = _order_text((stage.saved_settings() or {}).get("experiment", experiment)), _order_text(experiment)
        if held != asked:  # named here: the stage's own message would read None for the unrecorded default
            raise UserError(f"workdir {os.fspath(workdir)} holds a run with {held}; this run asks {asked}. "
                            "Use another workdir, or the same order to resume")
        stage.check()
        check_imp(*args, **{k: v for k, v in kwargs.items() if k != "eval_name"})
        stage.open()
        note_damaged_rows(workdir / "metrics.jsonl", log_fn)
        self.trajectory = trajectory = setup.plan.trajectory(weight_count(setup.shape))
        settings = {"experiment": config.to_dict(), "shape": list(setup.shape), "trajectory": trajectory, "coverage": setup.coverage,
                    "train": setup.train.to_dict(), "environment": environment()}
        write_json(workdir / "config.json", settings)
        self.config, self.workdir, self.data, self.setup = config, workdir, data, setup

        one_device = parallel.data_mesh(jax.local_devices()[:1])  # the replicas may spread over the devices; this is one model
        test_eval = make_eval_step(args[0], setup.objective, mesh=one_device) if config.validation_split else None
        self.reports: dict[tuple[int, int], StructureReport] = {}
        self.rows: list[dict] = []
        log_fn(f"{config.dataset}: MLP {setup.shape}, {len(trajectory)} levels, seeds {list(config.seeds)}, {setup.coverage} coverage")
        log_fn(ROW_HEADER)

        self.events = events = EventLog(workdir / "tensorboard")
        self.bar = bar = Progress(levels=len(trajectory), epochs=config.epochs, seeds=len(config.seeds), description=config.dataset,
                                  enabled=progress if progress is not None or log_fn is print else False)
        self.log_fn = log_fn = bar.write if log_fn is print else log_fn
        self.divergences = divergences = Divergences(float(np.mean([np.log(c) for c in data.classes])))  # chance: predicting every class alike
        rows, reports = self.rows, self.reports

        def on_level(result) -> bool:
            report = analyze(kernels_in_order(result.mask), data.input_tasks, data.output_tasks, setup.coverage)
            reports[(result.seed, result.level)] = report
            rows.append(level_row(result, report, test_metrics(result.record, result, test_eval, data, setup.eval_name)))
            diverged = rows[-1]["diverged"] = divergences.check(result.seed, result.level, result.record)
            if diverged:
                rows[-1]["status"] = "diverged"
            events.level(result.level, scalars(rows[-1], LEVEL_SCALARS) | {f"edges/{k}": v for k, v in rows[-1]["edges"].items()}, seed=result.seed)
            bar.level(result.record)
            log_fn(format_row(rows[-1]))
            return (diverged or (config.stop_on_degradation and report.status == "degraded")
                    or (config.stop_on_split and report.status == "split"))

        def on_epoch(record) -> None:
            events.epoch(record, by_seed=True)
            bar.epoch(record)

        self.job = (args, dict(kwargs, vmap=config.vmap, level_callback=on_level, on_epoch=on_epoch, log_fn=log_fn,
                               divergence_loss=divergences.limit))

    def close(self) -> None:
        self.events.close()
        self.bar.close()

    def finish(self) -> dict:
        config, rows = self.config, self.rows
        rows.sort(key=lambda r: (r["seed"], r["level"]))
        write_jsonl(self.workdir / "metrics.jsonl", rows)
        summary = summary_of(config, self.setup.shape, self.trajectory, rows)
        write_json(self.workdir / "summary.json", summary)
        from lth_jax import plots  # matplotlib: imported when a figure is drawn

        plots.save_thesis_figures(self.workdir / "figures", self.data, rows, self.reports, self.setup.shape)
        for seed in config.seeds:
            s = summary["seeds"][str(seed)]
            self.log_fn(f"seed {seed}: {s['category']}, split at level {s['split_level']}, degraded at level {s['degradation_level']}")
        self.divergences.raise_first(f"learning_rate={config.learning_rate:g}", len(config.seeds))
        return summary
