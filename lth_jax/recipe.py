"""An image experiment's recipe, from an ml_collections config: the composition that every image experiment shares.

A config names a dataset, a model, a training recipe, a pruning plan and a
rewind step; :func:`default_config` documents every field (Morcos et al.'s
VGG19/CIFAR-10 values) and ``experiments/configs/find_ticket_*.py`` are the
papers' presets. The functions here turn a config into the library's objects
(data, model, train config, pruning plan, preprocessing, the arguments of
:func:`lth_jax.imp.run_imp`) and check its sizes before anything is allocated.
:mod:`lth_jax.find_ticket`, :mod:`lth_jax.transfer` and :mod:`lth_jax.instability`
build on it.
"""

from __future__ import annotations

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict

from lth_jax import masks as mask_lib
from lth_jax import objectives
from lth_jax.data.augment import image_preprocess
from lth_jax.data.registry import ImageData, get_spec, load_dataset
from lth_jax.errors import UserError
from lth_jax.models import get_model
from lth_jax.optim import OptimizerRecipe
from lth_jax.sizes import activation_values, check_disk, check_memory
from lth_jax.train import TrainConfig, parse_steps
from lth_jax.trajectory import PruningPlan

__all__ = [
    "OPTIMIZER_PRESETS",
    "default_config",
    "with_optimizer",
    "abstract_params",
    "planned_trajectory",
    "check_sizes",
    "recipe_settings",
    "load_data",
    "build_model",
    "train_config",
    "pruning_plan",
    "preprocess_fn",
    "ticket_info",
    "imp_arguments",
    "REPLICA_MODES",
    "run_seeds",
    "replicas_together",
]

# The optimizers of Morcos et al.'s optimizer transfer (as the ReScience C 2020 replication sets them). Only the
# optimizer changes; epochs, schedule shape and milestones stay the config's.
OPTIMIZER_PRESETS = {
    "sgd": dict(name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4),
    "adam": dict(name="adam", learning_rate=3e-4, weight_decay=1e-4),  # the replication's Adam (L2 1e-4)
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
    c.seed = 0  # initialization seed (the run is the workdir)
    c.seeds = ()  # several seeds at once, e.g. (0, 1, 2): one run directory per seed, WORKDIR/seed_<s>
    c.replicas = "auto"  # how several seeds train: vmap (one program), sequential, or auto (see replicas_together)
    c.init_stream = "source"  # the seed's initialization: source (a run's own), target_own (a transfer target's, independent)
    c.rewind = "1ep"  # late resetting: int steps, "Nit" or "Nep"; 0 resets to the initialization; "auto": see auto_rewind
    # rewind="auto": the dense network's instability at these steps first (lth_jax.instability, into WORKDIR/auto_rewind);
    # the rewind step is the smallest from which every later one is stable (lth_jax.auto_rewind)
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


def _sizes(c) -> tuple[int, int]:
    """Parameters, and bytes of one batch's activations on one device, of config ``c``'s run."""
    parameters, values = _model_size(c.model, config_dict.ConfigDict(c.model_kwargs).to_json(), get_spec(c.dataset).num_classes,
                                     tuple(c.input_shape), bool(c.mixed_precision))
    per_device = -(-int(c.training.batch_size) // max(1, jax.local_device_count()))
    return parameters, values * per_device * (2 if c.mixed_precision else 4)


def check_sizes(c, workdir: str | os.PathLike, replicas: int = 1) -> None:
    """Refuse (``UserError``), before data or weights are allocated, a run of config ``c`` whose
    parameters, optimizer state and a batch's activations (of ``replicas`` seeds trained at
    once) do not fit in this machine's memory (the batch split over the local devices), or
    whose levels (of every seed) do not fit on ``workdir``'s disk."""
    parameters, activations = _sizes(c)
    given = f"batch_size={c.training.batch_size} with model={c.model}" + (f" and {replicas} seeds at once" if replicas > 1 else "")
    check_memory(parameters, replicas, given, activation_bytes=activations * replicas)
    check_disk(parameters, len(planned_trajectory(c)), len(run_seeds(c)[0]), int(c.training.epochs), workdir, f"model={c.model}")


REPLICA_MODES = ("auto", "vmap", "sequential")
# Beyond this many parameters one replica keeps a device busy by itself, and replicas train one at a time. On a CPU
# a replica costs its full arithmetic: measured (BUILD_NOTES, "Seeds together"), LeNet-300-100 on 8x8 inputs (50k
# parameters) gains from vmapping (4 seeds 1.6x faster), on 28x28 inputs (266k) it does not (equal for 4 seeds, a
# 44-ticket transfer group 1.3x slower). The accelerator limit is not measured yet.
VMAP_MAX_PARAMETERS = {"cpu": 150_000}
VMAP_MAX_PARAMETERS_ACCELERATOR = 2_000_000


def run_seeds(c) -> tuple[list[int], bool]:
    """The seeds of config ``c``, and whether each has a run directory of its own (``seeds``
    given: ``WORKDIR/seed_<s>``; else ``seed``, the run is the workdir)."""
    seeds = [int(s) for s in (c.get("seeds") or ())]
    if not seeds:
        return [int(c.seed)], False
    if int(c.seed) not in (0, *seeds):
        raise UserError(f"seed={c.seed} and seeds={','.join(map(str, seeds))}: give one of them (seed is seeds of one)")
    return seeds, True


def replicas_together(c, data: ImageData, replicas: int) -> bool:
    """Whether ``replicas`` trainings of config ``c`` (its seeds, or tickets) train as replicas of
    one compiled program (``vmap``).

    ``c.replicas``: ``"vmap"`` or ``"sequential"`` decide; ``"auto"`` trains several seeds
    together when the data are in memory, the rewind step is at an epoch boundary, the model
    has at most ``VMAP_MAX_PARAMETERS`` parameters (per backend) and every replica fits in memory
    (:func:`check_sizes`), and one training alone on the data-parallel path."""
    mode = str(c.get("replicas", "auto"))
    if mode not in REPLICA_MODES:
        raise UserError(f"replicas={mode!r} is not one of {', '.join(REPLICA_MODES)}")
    if mode != "auto":
        return mode == "vmap"
    if replicas < 2 or data.spec.streaming:
        return False
    spe = data.train.steps_per_epoch(int(c.training.batch_size), bool(c.training.drop_remainder))
    parameters, activations = _sizes(c)
    try:
        check_memory(parameters, replicas, "", activation_bytes=activations * replicas)
    except UserError:
        return False
    limit = VMAP_MAX_PARAMETERS.get(jax.default_backend(), VMAP_MAX_PARAMETERS_ACCELERATOR)
    return parse_steps(str(c.rewind), spe) % spe == 0 and parameters <= limit


# Config fields that do not change what a recipe computes.
VOLATILE_FIELDS = ("data_dir", "download", "workers")
VOLATILE_TRAINING = ("log_every_epochs", "checkpoint_every_epochs", "checkpoint_every_seconds", "checkpoint_async")


def recipe_settings(c) -> dict:
    """The fields of config ``c`` that change how a ticket trains (stage settings)."""
    d = c.to_dict()
    d["training"] = {k: v for k, v in d["training"].items() if k not in VOLATILE_TRAINING}
    return {k: v for k, v in d.items() if k not in VOLATILE_FIELDS + ("seed", "seeds", "replicas", "init_stream", "pruning", "rewind", "auto_rewind")}


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
        "init_stream": str(c.get("init_stream", "source")),
    }


def imp_arguments(c, data: ImageData) -> tuple[tuple, dict]:
    """The positional and keyword arguments of ``run_imp`` that config ``c`` describes."""
    model = build_model(c, data.num_classes)
    args = (model, objectives.softmax_classification(), data.train, data.test, train_config(c), pruning_plan(c))
    return args, dict(rewind=c.rewind, seed=c.seed, preprocess=preprocess_fn(c, data), ticket_info=ticket_info(c, data),
                      init_role=str(c.get("init_stream", "source")),
                      settings={"recipe": recipe_settings(c)})
