"""Mask-aware training: the train state, jitted data-parallel steps, the recipe.

The masking contract: the loss is computed on ``apply_mask(params,
mask)``, so gradients at pruned positions are exactly zero; the optimizer from
:mod:`lth_jax.optim` zeroes updates there too. The mask lives in the train state
and is an argument of the jitted step, never a constant of it: changing it
between pruning levels does not recompile.

Models follow the zoo's convention ``model.apply(variables, x, train=bool)``;
BatchNorm statistics live in the ``batch_stats`` collection. The training loop
that drives these steps is :mod:`lth_jax.loop`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lth_jax import parallel
from lth_jax.errors import UserError
from lth_jax.masks import apply_mask, check_mask
from lth_jax.objectives import Objective
from lth_jax.optim import OptimizerRecipe

__all__ = [
    "TrainState",
    "TrainConfig",
    "init_variables",
    "create_train_state",
    "model_apply",
    "train_step",
    "eval_step",
    "make_train_step",
    "make_eval_step",
    "evaluate",
    "parse_steps",
    "rewind_step",
    "sum_trees",
    "averages",
    "early_stopping_update",
    "diverged_loss",
]

Preprocess = Callable[[jax.Array, jax.Array, bool], jax.Array]


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training, as one pytree.

    ``step`` is the global step: after late resetting a level starts at the rewind
    step, so the learning-rate schedule continues there. ``rng`` is a base key;
    the key of step ``s`` is ``fold_in(rng, s)``, so a resumed run draws the same
    randomness as an uninterrupted one. ``batch_stats`` is ``{}`` for models
    without BatchNorm.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    mask: Any
    rng: jax.Array


@functools.partial(jax.jit, static_argnums=0)
def _init(model, key, x):
    params_key, dropout_key = jax.random.split(key)
    return model.init({"params": params_key, "dropout": dropout_key}, x, train=False)


def init_variables(model, key: jax.Array, example_x) -> tuple[Any, Any]:
    """``(params, batch_stats)`` of ``model`` initialised with ``key`` on an example batch.

    Initialization is one jitted program per model (compiled once per process),
    drawn with the classic (non-partitionable) threefry stream: on CPU, JAX's
    default partitionable threefry costs about a second of compilation per
    distinct parameter shape (10 s for a narrow VGG-11, 2 s this way). Scoped to
    this call; no global setting changes.
    """
    try:
        hash(model)
        init = _init
    except TypeError:  # a module with unhashable attributes (lists): compiled for this call
        init = jax.jit(_init.__wrapped__, static_argnums=0)
    with jax.threefry_partitionable(False):
        variables = init(model, key, jnp.asarray(example_x))
    return variables["params"], variables.get("batch_stats", {})


_MEMOS: list = []  # every cache of memoize, for clear_memos


def clear_memos() -> None:
    """Forget every program :func:`memoize` built (after patching what a program closes over)."""
    for cached in _MEMOS:
        cached.cache_clear()


def memoize(fn):
    """``fn`` with its results cached for hashable arguments (built programs: equal
    arguments give the same jitted function, compiled once per process)."""
    cached = functools.lru_cache(maxsize=64)(fn)
    _MEMOS.append(cached)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            hash((args, tuple(sorted(kwargs.items()))))
        except TypeError:  # e.g. a model with a list attribute
            return fn(*args, **kwargs)
        return cached(*args, **kwargs)

    return call


def create_train_state(
    params: Any,
    tx: optax.GradientTransformation,
    *,
    mask: Any = None,
    batch_stats: Any = None,
    rng: jax.Array | None = None,
    step: int = 0,
) -> TrainState:
    """A train state at ``step`` with ``params ⊙ mask`` and a fresh optimizer state.

    The state owns its arrays (inputs are copied), so a step that donates it
    never deletes the caller's mask, batch statistics or key.
    """
    mask = jax.tree.map(lambda p: np.ones(np.shape(p), bool), params) if mask is None else mask
    check_mask(params, mask)
    rng = np.asarray(jax.random.key_data(jax.random.PRNGKey(0)) if rng is None else rng)
    return _state_builder(tx)(params, mask, {} if batch_stats is None else batch_stats, rng, np.int32(step))


@memoize
def _state_builder(tx):
    """The train state built by one program per optimizer (compiled once per
    parameter structure, not once per leaf shape as eager operations are)."""

    def build(params, mask, batch_stats, rng, step):
        mask = jax.tree.map(lambda m: m.astype(bool), mask)
        params = apply_mask(params, mask)
        return TrainState(step=step, params=params, batch_stats=batch_stats, opt_state=tx.init(params), mask=mask, rng=rng)

    return jax.jit(build)


def model_apply(model, params, batch_stats, x, *, train: bool, rng: jax.Array):
    """Logits and the (possibly updated) batch statistics."""
    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    if train and batch_stats:
        logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": rng})
        return logits, updates["batch_stats"]
    return model.apply(variables, x, train=train, rngs={"dropout": rng}), batch_stats


def _weighted_sums(objective: Objective, logits, labels, weight, per_example_loss) -> dict:
    """Sums over the batch weighted by ``weight``, and the weight total ``count``."""
    sums = {"loss": jnp.sum(per_example_loss * weight), "count": jnp.sum(weight)}
    for name, values in objective.metrics(logits, labels).items():
        sums[name] = jnp.tensordot(weight, values.astype(jnp.float32), axes=(0, 0))
    return sums


def _weight(batch: dict) -> jax.Array:
    if "weight" in batch:
        return batch["weight"].astype(jnp.float32)
    return jnp.ones(batch["y"].shape[0], jnp.float32)


def train_step(
    state: TrainState,
    batch: dict,
    *,
    model,
    tx,
    objective: Objective,
    preprocess: Preprocess | None = None,
    mask_forward: bool = True,
):
    """One optimizer step on ``batch`` (``x``, ``y``, optional ``weight``); pure.

    The loss is computed on ``apply_mask(params, mask)``, and the new params are
    masked again (fused into the update, so pruned weights are exactly 0 after
    every step). ``mask_forward=False`` skips the masking before the forward
    pass: the loss and the kept weights' gradients are then identical provided
    the pruned params are already 0, which :func:`create_train_state` and every
    step guarantee; it saves a pass over the weights (about 10% of a small MLP
    step on CPU). Keep the default when a state may have been built by hand
    (e.g. ``state.replace(mask=new_mask)`` without zeroing the params).

    Returns the new state and the batch's weighted metric sums.
    """
    aug_key, dropout_key = jax.random.split(jax.random.fold_in(state.rng, state.step))
    x = batch["x"] if preprocess is None else preprocess(batch["x"], aug_key, True)
    weight = _weight(batch)

    def loss_fn(params):
        if mask_forward:
            params = apply_mask(params, state.mask)
        logits, new_batch_stats = model_apply(model, params, state.batch_stats, x, train=True, rng=dropout_key)
        per_example = objective.loss(logits, batch["y"])
        loss = jnp.sum(per_example * weight) / jnp.maximum(jnp.sum(weight), 1.0)
        return loss, (logits, per_example, new_batch_stats)

    (_, (logits, per_example, new_batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, mask=state.mask, step=state.step)
    new_state = state.replace(
        step=state.step + 1,
        params=apply_mask(optax.apply_updates(state.params, updates), state.mask),
        batch_stats=new_batch_stats,
        opt_state=opt_state,
    )
    return new_state, _weighted_sums(objective, logits, batch["y"], weight, per_example)


def eval_step(state: TrainState, batch: dict, *, model, objective: Objective, preprocess: Preprocess | None = None):
    """Weighted metric sums of the masked model on ``batch`` (inference mode); pure."""
    x = batch["x"] if preprocess is None else preprocess(batch["x"], state.rng, False)
    logits, _ = model_apply(model, apply_mask(state.params, state.mask), state.batch_stats, x, train=False, rng=state.rng)
    return _weighted_sums(objective, logits, batch["y"], _weight(batch), objective.loss(logits, batch["y"]))


def early_stopping_update(best, counter, loss, patience):
    """One evaluated epoch of the thesis's early-stopping rule: ``(best, counter, stop)``
    (stop once the loss has not improved on its best for ``patience`` evaluations);
    works on floats and arrays, on the host and in a compiled program."""
    improved = loss < best
    best = jnp.where(improved, loss, best)
    counter = jnp.where(improved, 0, counter + 1)
    return best, counter, counter >= patience


def diverged_loss(loss, divergence_loss=None):
    """Whether ``loss`` (a float, list or array) is NaN, infinite or above ``divergence_loss``:
    the divergence stop of the training loop, on the host (numpy) and in a compiled program."""
    limit = math.inf if divergence_loss is None else divergence_loss
    if isinstance(loss, float) and isinstance(limit, float):  # the loop's host check, every epoch of every replica
        return not (math.isfinite(loss) and loss <= limit)
    xp = jnp if isinstance(loss, jax.Array) or isinstance(divergence_loss, jax.Array) else np
    loss = xp.asarray(loss)
    return ~xp.all(xp.isfinite(loss) & (loss <= limit))


@memoize
def make_train_step(
    model,
    tx,
    objective: Objective,
    *,
    mesh=None,
    preprocess: Preprocess | None = None,
    donate: bool = False,
    mask_forward: bool = True,
):
    """``train_step`` jitted for ``mesh`` (default: all devices): batch sharded on
    ``'data'``, state replicated.

    ``donate=True`` lets XLA reuse the input state's buffers (less memory); the
    arrays of the state passed in are then deleted, so only use it where nothing
    else holds them (``fit`` copies its input state first). ``mask_forward``: see
    :func:`train_step`. Equal arguments give the same jitted function (compiled
    once per process): a run, its resume and every level share it.
    """
    mesh = parallel.data_mesh() if mesh is None else mesh
    rep, sharded = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    fn = functools.partial(
        train_step, model=model, tx=tx, objective=objective, preprocess=preprocess, mask_forward=mask_forward
    )
    return jax.jit(fn, in_shardings=(rep, sharded), out_shardings=(rep, rep), donate_argnums=(0,) if donate else ())


@memoize
def make_eval_step(model, objective: Objective, *, mesh=None, preprocess: Preprocess | None = None):
    """``eval_step`` jitted for ``mesh`` (default: all devices)."""
    mesh = parallel.data_mesh() if mesh is None else mesh
    rep, sharded = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    fn = functools.partial(eval_step, model=model, objective=objective, preprocess=preprocess)
    return jax.jit(fn, in_shardings=(rep, sharded), out_shardings=rep)


# --------------------------------------------------------------------------- the recipe


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training recipe.

    Attributes:
      epochs: length of the schedule; every IMP level trains to its end.
      batch_size: global batch size (split over the devices).
      optimizer: the optimizer and its learning-rate schedule.
      eval_every_epochs: evaluate on the eval set every this many epochs (and at the end).
      early_stopping_patience: the thesis's rule on the mean eval loss:
        a new minimum resets a counter, any other epoch increments it, training
        stops when it reaches the patience. No restore of the best weights.
        ``None`` trains all epochs. Needs ``eval_every_epochs == 1``.
      drop_remainder: drop the last partial batch instead of padding it with
        weight-0 examples (use it with BatchNorm: padding enters batch statistics).
      data_seed: seed of the epoch order.
      log_every_epochs: print a progress line every this many epochs (0: quiet).
      checkpoint_every_epochs / checkpoint_every_seconds: how often the training
        loop writes a checkpoint (0: never by that criterion).
      checkpoint_async: write checkpoints in the background.
    """

    epochs: int
    batch_size: int
    optimizer: OptimizerRecipe = dataclasses.field(default_factory=OptimizerRecipe)
    eval_every_epochs: int = 1
    early_stopping_patience: int | None = None
    drop_remainder: bool = False
    data_seed: int = 0
    log_every_epochs: int = 1
    checkpoint_every_epochs: int = 0
    checkpoint_every_seconds: float = 600.0
    checkpoint_async: bool = False

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_every_epochs"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"{name}={getattr(self, name)!r} must be >= 1")
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise UserError(f"early_stopping_patience={self.early_stopping_patience!r} must be >= 1 or None")
            if self.eval_every_epochs != 1:
                raise UserError("early stopping evaluates every epoch: set eval_every_epochs=1")
        if self.log_every_epochs < 0 or self.checkpoint_every_epochs < 0 or self.checkpoint_every_seconds < 0:
            raise UserError("log_every_epochs, checkpoint_every_epochs and checkpoint_every_seconds must be >= 0")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["optimizer"] = OptimizerRecipe(**d.get("optimizer", {}))
        return cls(**d)


def parse_steps(spec: int | str, steps_per_epoch: int) -> int:
    """A step count from an int, ``"500"``, ``"500it"`` or ``"1ep"`` (``"0.5ep"`` allowed)."""
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        steps = int(spec)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*(ep|it)?\s*", str(spec))
        if not match:
            raise UserError(f"step spec {spec!r} is not a step count, 'Nit' or 'Nep' (e.g. 0, 500it, 1ep)")
        value, unit = float(match.group(1)), match.group(2) or "it"
        if unit == "it" and not value.is_integer():
            raise UserError(f"step spec {spec!r}: iterations must be a whole number")
        steps = int(value) if unit == "it" else int(round(value * steps_per_epoch))
    if steps < 0:
        raise UserError(f"step spec {spec!r} is negative")
    return steps


def rewind_step(spec: int | str, steps_per_epoch: int, total_steps: int, *, pruned_levels: bool, whole_epochs: bool = False) -> int:
    """The rewind step of ``spec`` (:func:`parse_steps`), refused when it leaves the
    pruned levels nothing to train or (``whole_epochs``) falls inside an epoch."""
    step = parse_steps(spec, steps_per_epoch)
    if step > total_steps or (step == total_steps and pruned_levels):
        where = "past" if step > total_steps else "at"
        raise UserError(f"rewind step {spec!r} = {step} steps is {where} the end of training ({total_steps} steps): pruned levels would not train")
    if whole_epochs and step % steps_per_epoch:
        raise UserError(f"rewind step {spec!r} is not at an epoch boundary; vmapped seeds rewind to the end of an epoch")
    return step


def averages(sums: dict, prefix: str) -> dict:
    """``{prefix}_{name}``: each summed metric over ``count``, as Python floats (lists per task)."""
    count = max(float(sums["count"]), 1.0)
    return {f"{prefix}_{k}": (np.asarray(v) / count).tolist() for k, v in sums.items() if k != "count"}


def sum_trees(trees: Sequence[dict]) -> dict:
    """Elementwise sum of metric-sum trees (waits for the devices)."""
    return jax.tree.map(lambda *xs: np.sum(np.stack(xs), axis=0), *jax.device_get(list(trees)))


def evaluate(state: TrainState, eval_step_fn, data, batch_size: int, mesh=None, prefix: str = "test", *, sums_only: bool = False) -> dict:
    """Mean loss and metrics of ``state`` over all of ``data`` (``{prefix}_loss``, ...);
    ``sums_only``: the weighted sums and ``count`` instead."""
    mesh = parallel.data_mesh() if mesh is None else mesh
    parallel.check_batch_size(batch_size, mesh)
    sums = sum_trees([eval_step_fn(state, parallel.feed_batch(b, mesh)) for b in data.batches(batch_size, **parallel.shard_kwargs())])
    return sums if sums_only else averages(sums, prefix)
