"""Finding winning tickets on image classifiers, from an ml_collections config.

A config names a dataset, a model, a training recipe, a pruning plan and a
rewind step; :func:`default_config` documents every field and
``experiments/configs/*.py`` are the papers' presets. The helpers turn a config
into the library's objects; :func:`find_ticket` runs IMP with late resetting
and writes the run directory (with ``figures/levels.png``: accuracy against the
fraction pruned, and every layer's sparsity per level; and TensorBoard event
files in ``tensorboard/``); :func:`run` is the experiment that
``experiments/find_ticket.py`` runs (presets: ``experiments/configs/find_ticket_*.py``).
"""

from __future__ import annotations

import functools
import json
import math
import os
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from ml_collections import config_dict

from lth_jax import masks as mask_lib
from lth_jax import objectives
from lth_jax.data.augment import image_preprocess
from lth_jax.data.registry import ImageData, get_spec, load_dataset
from lth_jax.errors import UserError
from lth_jax.imp import check_imp, run_imp
from lth_jax.loop import format_level
from lth_jax.models import get_model
from lth_jax.optim import OptimizerRecipe
from lth_jax.progress import Progress
from lth_jax.results import environment, note_damaged_rows, write_json, write_jsonl
from lth_jax.sizes import DIVERGENCE_FACTOR, activation_values, check_disk, check_memory, divergence
from lth_jax.tensorboard import EventLog, scalars
from lth_jax.train import TrainConfig
from lth_jax.trajectory import PruningPlan

__all__ = [
    "default_config",
    "load_data",
    "build_model",
    "train_config",
    "pruning_plan",
    "preprocess_fn",
    "ticket_info",
    "metrics_row",
    "find_ticket",
    "check_find_ticket",
    "run",
    "OPTIMIZER_PRESETS",
    "with_optimizer",
    "planned_trajectory",
    "abstract_params",
    "recipe_settings",
    "check_sizes",
    "imp_arguments",
]

# The optimizers of Morcos et al.'s optimizer transfer (as the ReScience C 2020 replication sets them). Only the
# optimizer changes; epochs, schedule shape and milestones stay the config's.
OPTIMIZER_PRESETS = {
    "sgd": dict(name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4),
    "adam": dict(name="adam", learning_rate=3e-4, weight_decay=0.0),
}


def default_config() -> ml_collections.ConfigDict:
    """Every field of an image experiment, with Morcos et al.'s VGG19/CIFAR-10 values."""
    c = ml_collections.ConfigDict()
    c.dataset = "cifar10"  # see lth_jax.data.registry.dataset_names()
    c.data_dir = config_dict.placeholder(str)  # TFDS data_dir (default ~/tensorflow_datasets)
    c.download = False  # let TFDS download and prepare (needs internet and TensorFlow)
    c.input_shape = (32, 32, 3)  # model input; gray 28×28 becomes 3-channel 32×32
    c.model = "cifar_vgg_19"  # see lth_jax.models.model_names()
    c.model_kwargs = ml_collections.ConfigDict()  # e.g. width_multiplier, stem
    c.mixed_precision = False  # bf16 compute, float32 parameters (GPU/TPU)
    c.augment = True  # random crop (padding crop_padding) and flip where the dataset allows it
    c.crop_padding = 4
    c.workers = 16  # threads reading streaming datasets
    c.seed = 0  # initialization seed
    c.rewind = "1ep"  # late resetting: int steps, "Nit" or "Nep"; 0 resets to the initialization; "auto": see auto_rewind
    # rewind="auto": the dense network's instability at these steps first (lth_jax.instability, into WORKDIR/auto_rewind);
    # the rewind step is the smallest whose error barrier is below the threshold
    c.auto_rewind = ml_collections.ConfigDict(dict(rewind_steps="0,1ep,2ep,4ep", threshold=0.02, alphas=31))
    c.training = ml_collections.ConfigDict(
        dict(
            epochs=160,
            batch_size=512,
            drop_remainder=True,  # BatchNorm models: no padded examples in the statistics
            data_seed=0,
            eval_every_epochs=1,
            early_stopping_patience=config_dict.placeholder(int),
            log_every_epochs=1,
            checkpoint_every_epochs=0,
            checkpoint_every_seconds=600.0,
        )
    )
    c.optimizer = ml_collections.ConfigDict(
        dict(
            name="sgd",
            learning_rate=0.1,
            momentum=0.9,
            nesterov=False,
            weight_decay=1e-4,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            schedule="step",
            milestones=(80.0, 120.0),
            gamma=0.1,
            values=(),
            warmup_epochs=0.0,
        )
    )
    c.pruning = ml_collections.ConfigDict(
        dict(
            rate=0.2,
            levels=30,
            target=config_dict.placeholder(int),
            scope="global",
            exclude=(),  # regexes of prunable paths kept dense, e.g. ("^fc/",)
        )
    )
    return c


def with_optimizer(c, preset: str | None) -> ml_collections.ConfigDict:
    """A copy of config ``c`` with the optimizer of ``OPTIMIZER_PRESETS[preset]``
    (``None`` or ``"config"``: unchanged)."""
    c = ml_collections.ConfigDict(c.to_dict())
    if preset in (None, "config"):
        return c
    if preset not in OPTIMIZER_PRESETS:
        raise UserError(f"unknown optimizer preset {preset!r}; known: config, {', '.join(OPTIMIZER_PRESETS)}")
    c.optimizer.update(OPTIMIZER_PRESETS[preset])
    return c


def abstract_params(c, num_classes: int):
    """The parameter shapes (``ShapeDtypeStruct`` leaves) of config ``c``'s model; nothing is computed."""
    model = build_model(c, num_classes)
    x = jnp.zeros((1,) + tuple(c.input_shape), jnp.float32)
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))["params"]


def planned_trajectory(c) -> list[int]:
    """Prunable weights remaining at each level of the run config ``c`` describes
    (level 0 first), from the model's parameter shapes; nothing is trained."""
    params = abstract_params(c, get_spec(c.dataset).num_classes)
    plan = pruning_plan(c)
    mask_lib.check_exclude_patterns(params, plan.exclude)
    return plan.trajectory(mask_lib.count_prunable(params, mask_lib.prunable_rule(plan.exclude)))


@functools.lru_cache(maxsize=32)
def _model_size(model: str, model_kwargs: str, num_classes: int, input_shape: tuple, mixed_precision: bool) -> tuple[int, int]:
    """Parameters, and activation values per example, of a model (abstract; cached per process)."""
    c = ml_collections.ConfigDict(dict(model=model, model_kwargs=json.loads(model_kwargs), input_shape=input_shape,
                                       mixed_precision=mixed_precision))
    parameters = sum(math.prod(p.shape) for p in jax.tree.leaves(abstract_params(c, num_classes)))
    return parameters, activation_values(build_model(c, num_classes), jnp.zeros((1,) + input_shape, jnp.float32))


def check_sizes(c, workdir: str | os.PathLike) -> None:
    """Refuse (``UserError``), before data or weights are allocated, a run of config ``c`` whose
    parameters, optimizer state and a batch's activations do not fit in this machine's memory
    (the batch split over the local devices), or whose levels do not fit on ``workdir``'s disk."""
    parameters, values = _model_size(c.model, config_dict.ConfigDict(c.model_kwargs).to_json(), get_spec(c.dataset).num_classes,
                                     tuple(c.input_shape), bool(c.mixed_precision))
    per_device = -(-int(c.training.batch_size) // max(1, jax.local_device_count()))
    given = f"batch_size={c.training.batch_size} with model={c.model}"
    check_memory(parameters, 1, given, activation_bytes=values * per_device * (2 if c.mixed_precision else 4))
    check_disk(parameters, len(planned_trajectory(c)), 1, int(c.training.epochs), workdir, f"model={c.model}")


# Config fields that do not change what a recipe computes.
VOLATILE_FIELDS = ("data_dir", "download", "workers")
VOLATILE_TRAINING = ("log_every_epochs", "checkpoint_every_epochs", "checkpoint_every_seconds", "checkpoint_async")


def recipe_settings(c) -> dict:
    """The fields of config ``c`` that change how a ticket trains (stage settings)."""
    d = c.to_dict()
    d["training"] = {k: v for k, v in d["training"].items() if k not in VOLATILE_TRAINING}
    return {k: v for k, v in d.items() if k not in VOLATILE_FIELDS + ("seed", "pruning", "rewind", "auto_rewind")}


def load_data(c) -> ImageData:
    return load_dataset(c.dataset, data_dir=c.data_dir, download=c.download, input_shape=tuple(c.input_shape), workers=c.workers)


def build_model(c, num_classes: int):
    dtype = jnp.bfloat16 if c.mixed_precision else jnp.float32
    return get_model(c.model, num_classes, dtype=dtype, **dict(c.model_kwargs))


def train_config(c) -> TrainConfig:
    return TrainConfig(**dict(c.training), optimizer=OptimizerRecipe(**dict(c.optimizer)))


def pruning_plan(c) -> PruningPlan:
    p = c.pruning
    return PruningPlan(rate=p.rate, levels=p.levels, target=p.target, scope=p.scope, exclude=tuple(p.exclude))


def preprocess_fn(c, data: ImageData):
    """Augmentation (in-memory data) and normalization inside the jitted step.
    Streaming data is cropped and flipped on the host; the device normalizes."""
    in_memory = not data.spec.streaming
    return image_preprocess(
        data.mean,
        data.std,
        crop_padding=c.crop_padding,
        flip=data.spec.flip,
        augment=bool(c.augment) and in_memory,
        dtype=jnp.bfloat16 if c.mixed_precision else jnp.float32,
    )


def ticket_info(c, data: ImageData) -> dict:
    """What ``ticket.json`` records about the source of a ticket (the engine adds the
    head, the class count and the prunable rule)."""
    return {
        "model": c.model,
        "model_kwargs": dict(c.model_kwargs),
        "dataset": c.dataset,
        "input_shape": list(data.image_shape),
        "optimizer": c.optimizer.name,
    }


LEVEL_SCALARS = ("weights_remaining", "fraction_remaining", "test_accuracy", "test_loss", "train_loss", "train_accuracy", "epoch")


def metrics_row(record: dict) -> dict:
    """A ``metrics.jsonl`` row from a level record."""
    keys = ("level", "weights_remaining", "fraction_remaining", "test_accuracy", "test_loss", "train_loss", "train_accuracy",
            "examples_per_second", "stopped_early", "diverged", "steps", "seconds")
    return {**{k: record.get(k) for k in keys}, "epoch": record["epochs"]}


def imp_arguments(c, data: ImageData) -> tuple[tuple, dict]:
    """The positional and keyword arguments of ``run_imp`` that config ``c`` describes."""
    model = build_model(c, data.num_classes)
    args = (model, objectives.softmax_classification(), data.train, data.test, train_config(c), pruning_plan(c))
    return args, dict(rewind=c.rewind, seed=c.seed, preprocess=preprocess_fn(c, data), ticket_info=ticket_info(c, data),
                      settings={"recipe": recipe_settings(c)})


def check_find_ticket(c, workdir: str | os.PathLike, *, data: ImageData) -> None:
    """Refuse (``UserError``) when ``workdir`` holds a find_ticket run with other
    settings; computes and writes nothing."""
    args, kwargs = imp_arguments(c, data)
    check_imp(*args, workdir=workdir, **kwargs)


def find_ticket(c, workdir: str | os.PathLike, *, data: ImageData | None = None, log_fn: Callable[[str], None] = print,
                progress: bool | None = None) -> dict:
    """IMP with late resetting on an image dataset; resumable. Returns the summary.
    ``data``: the config's dataset, already loaded (else it is loaded here);
    ``progress``: a progress bar (default: when stderr is a terminal and ``log_fn``
    is ``print``)."""
    workdir = epath.Path(workdir)
    check_sizes(c, workdir)
    data = load_data(c) if data is None else data
    auto = None
    if str(c.rewind).strip() == "auto":
        c, auto = auto_rewind(c, workdir / "auto_rewind", data=data, log_fn=log_fn)
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

    chance = float(np.log(data.num_classes))  # the loss of predicting every class alike
    diverged: list[tuple[int, str]] = []

    def on_level(result) -> bool:
        rows.append(metrics_row(result.record))
        reason = divergence(result.record, chance)
        rows[-1]["diverged"] = reason is not None
        layers.append(mask_lib.sparsity_report(result.mask, rule))
        write_jsonl(workdir / "metrics.jsonl", rows)
        events.level(result.level, scalars(rows[-1], LEVEL_SCALARS))
        bar.level(result.record)
        log_fn(format_level(result.record))
        if reason is not None:  # pruning diverged weights would rank NaNs: the run stops here
            diverged.append((result.level, reason))
        return reason is not None

    def on_epoch(record) -> None:
        events.epoch(record)
        bar.epoch(record)

    try:
        result = run_imp(*args, workdir=workdir, level_callback=on_level, on_epoch=on_epoch, log_fn=log_fn,
                         divergence_loss=DIVERGENCE_FACTOR * chance, **kwargs)
    finally:
        events.close()
        bar.close()
    summary = {
        "model": c.model,
        "dataset": c.dataset,
        "trajectory": result.trajectory,
        "levels_trained": len(result.records),
        "dense_test_accuracy": result.records[0]["test_accuracy"],
        "final": metrics_row(result.records[-1]),
        "tickets": [f"level_{r['level']:02d}/ticket" for r in result.records],
        **({"auto_rewind": auto} if auto is not None else {}),
    }
    write_json(workdir / "config.json", {"config": c.to_dict(), "environment": environment()})
    write_json(workdir / "summary.json", summary)
    title = f"{c.model} on {c.dataset} ({c.optimizer.name})"
    from lth_jax import plots  # matplotlib: imported when a figure is drawn

    plots.save(plots.plot_find_ticket(rows, layers, title), workdir / "figures" / "levels.png")
    if diverged:
        level, reason = diverged[0]
        raise UserError(f"seed {c.seed} diverged at level {level} ({reason}): lower --config.optimizer.learning_rate="
                        f"{c.optimizer.learning_rate:g} and use a new workdir; the levels before it are kept")
    return summary


def auto_rewind(c, workdir: str | os.PathLike, *, data: ImageData, log_fn: Callable[[str], None] = print):
    """``(config, report)``: config ``c`` with the rewind step that instability analysis recommends
    (the smallest of ``c.auto_rewind.rewind_steps`` at which the dense network's error barrier
    is below ``c.auto_rewind.threshold``), and that analysis' summary; resumable in ``workdir``."""
    from lth_jax import instability  # it builds on this module

    ic = instability.default_config(ml_collections.ConfigDict(c.to_dict()))
    ic.levels = (0,)
    ic.rewind_steps, ic.threshold, ic.alphas = c.auto_rewind.rewind_steps, c.auto_rewind.threshold, c.auto_rewind.alphas
    try:
        instability.check_config(ic)
    except UserError as e:  # named as the user typed it
        raise UserError(f"auto_rewind.{e}") from None
    log_fn(f"rewind auto: the dense network's instability at steps {ic.rewind_steps} (in {os.fspath(workdir)})")
    summary = instability.run(ic, workdir, data=data, log_fn=log_fn)
    step = summary["recommended_rewind_step"]
    barriers = {k: cell["mean_barrier"] for k, cell in summary["levels"]["0"]["by_step"].items()}
    if step is None:
        shown = ", ".join(f"k={k}: {100 * b:.2f}%" for k, b in barriers.items())
        raise UserError(f"auto_rewind.rewind_steps={ic.rewind_steps}: the dense network is stable (barrier below "
                        f"{100 * float(ic.threshold):g}%) at none of them ({shown}); add later steps")
    log_fn(f"rewind auto: step {step} (the smallest with a barrier below {100 * float(ic.threshold):g}%)")
    resolved = ml_collections.ConfigDict(c.to_dict())
    resolved.rewind = f"{int(step)}it"
    return resolved, {"rewind_step": int(step), "threshold": float(ic.threshold), "barriers": barriers}


def run(c, workdir: str | os.PathLike, *, log_fn: Callable[[str], None] = print) -> dict:
    """The find_ticket experiment of config ``c`` (``experiments/find_ticket.py``)."""
    return find_ticket(c, workdir, log_fn=log_fn)
