"""Mask-aware training: the train state, jitted data-parallel steps, and ``fit``.

The masking contract (DESIGN.md): the loss is computed on ``apply_mask(params,
mask)``, so gradients at pruned positions are exactly zero; the optimizer from
:mod:`lth_jax.optim` zeroes updates there too. The mask lives in the train state
and is an argument of the jitted step, never a constant of it: changing it
between pruning levels does not recompile.

Models follow the zoo's convention ``model.apply(variables, x, train=bool)``;
BatchNorm statistics live in the ``batch_stats`` collection.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import time
from typing import Any, Callable, Iterable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lth_jax import parallel
from lth_jax.masks import apply_mask, check_mask, init_mask
from lth_jax.objectives import Objective
from lth_jax.optim import OptimizerRecipe

__all__ = [
    "TrainState",
    "TrainConfig",
    "RewindState",
    "FitProgress",
    "FitResult",
    "init_variables",
    "create_train_state",
    "model_apply",
    "train_step",
    "eval_step",
    "make_train_step",
    "make_eval_step",
    "evaluate",
    "early_stopping_update",
    "parse_steps",
    "fit",
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


def init_variables(model, key: jax.Array, example_x) -> tuple[Any, Any]:
    """``(params, batch_stats)`` of ``model`` initialised with ``key`` on an example batch.

    Initialization is one jitted program, drawn with the classic (non-partitionable)
    threefry stream: on CPU, JAX's default partitionable threefry costs about a
    second of compilation per distinct parameter shape (10 s for a narrow VGG-11,
    2 s this way). Scoped to this call; no global setting changes.
    """

    def init(key, x):
        params_key, dropout_key = jax.random.split(key)
        return model.init({"params": params_key, "dropout": dropout_key}, x, train=False)

    with jax.threefry_partitionable(False):
        variables = jax.jit(init)(key, jnp.asarray(example_x))
    return variables["params"], variables.get("batch_stats", {})


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
    mask = init_mask(params) if mask is None else mask
    check_mask(params, mask)
    params = apply_mask(params, mask)
    return TrainState(
        step=jnp.asarray(step, jnp.int32),
        params=params,
        batch_stats=jax.tree.map(jnp.array, {} if batch_stats is None else batch_stats),
        opt_state=tx.init(params),
        mask=jax.tree.map(lambda m: jnp.array(m, dtype=bool), mask),
        rng=jnp.array(jax.random.PRNGKey(0) if rng is None else rng),
    )


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
    :func:`train_step`.
    """
    mesh = parallel.data_mesh() if mesh is None else mesh
    rep, sharded = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    fn = functools.partial(
        train_step, model=model, tx=tx, objective=objective, preprocess=preprocess, mask_forward=mask_forward
    )
    return jax.jit(fn, in_shardings=(rep, sharded), out_shardings=(rep, rep), donate_argnums=(0,) if donate else ())


def make_eval_step(model, objective: Objective, *, mesh=None, preprocess: Preprocess | None = None):
    """``eval_step`` jitted for ``mesh`` (default: all devices)."""
    mesh = parallel.data_mesh() if mesh is None else mesh
    rep, sharded = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    fn = functools.partial(eval_step, model=model, objective=objective, preprocess=preprocess)
    return jax.jit(fn, in_shardings=(rep, sharded), out_shardings=rep)


# --------------------------------------------------------------------------- fit


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training recipe.

    Attributes:
      epochs: length of the schedule; every IMP level trains to its end.
      batch_size: global batch size (split over the devices).
      optimizer: the optimizer and its learning-rate schedule.
      eval_every_epochs: evaluate on the eval set every this many epochs (and at the end).
      early_stopping_patience: the thesis rule (SPEC §2.2) on the mean eval loss:
        a new minimum resets a counter, any other epoch increments it, training
        stops when it reaches the patience. No restore of the best weights.
        ``None`` trains all epochs. Needs ``eval_every_epochs == 1``.
      drop_remainder: drop the last partial batch instead of padding it with
        weight-0 examples (use it with BatchNorm: padding enters batch statistics).
      data_seed: seed of the epoch order.
      log_every_epochs: print a progress line every this many epochs (0: quiet).
      checkpoint_every_epochs / checkpoint_every_seconds: how often ``fit`` calls
        its checkpoint function (0: never by that criterion).
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

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_every_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 1")
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise ValueError(f"early_stopping_patience={self.early_stopping_patience!r} must be >= 1 or None")
            if self.eval_every_epochs != 1:
                raise ValueError("early stopping evaluates every epoch: set eval_every_epochs=1")
        if self.log_every_epochs < 0 or self.checkpoint_every_epochs < 0 or self.checkpoint_every_seconds < 0:
            raise ValueError("log_every_epochs, checkpoint_every_epochs and checkpoint_every_seconds must be >= 0")

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
            raise ValueError(f"step spec {spec!r} is not a step count, 'Nit' or 'Nep' (e.g. 0, 500it, 1ep)")
        value, unit = float(match.group(1)), match.group(2) or "it"
        if unit == "it" and not value.is_integer():
            raise ValueError(f"step spec {spec!r}: iterations must be a whole number")
        steps = int(value) if unit == "it" else int(round(value * steps_per_epoch))
    if steps < 0:
        raise ValueError(f"step spec {spec!r} is negative")
    return steps


def early_stopping_update(best, counter, loss, patience):
    """One epoch of the thesis rule: ``(best, counter, stop)``; works on floats and arrays."""
    improved = loss < best
    best = jnp.where(improved, loss, best)
    counter = jnp.where(improved, 0, counter + 1)
    return best, counter, counter >= patience


@dataclasses.dataclass
class RewindState:
    """Host copy of the weights and batch statistics at the rewind step."""

    step: int
    params: Any
    batch_stats: Any


@dataclasses.dataclass
class FitProgress:
    """Bookkeeping of ``fit`` that a checkpoint must carry to resume exactly."""

    history: list = dataclasses.field(default_factory=list)
    best_loss: float = math.inf
    patience_counter: int = 0
    stopped_early: bool = False

    def to_dict(self) -> dict:
        return {
            "history": self.history,
            "best_loss": None if math.isinf(self.best_loss) else self.best_loss,
            "patience_counter": self.patience_counter,
            "stopped_early": self.stopped_early,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "FitProgress":
        best = d.get("best_loss")
        return cls(list(d.get("history", [])), math.inf if best is None else float(best), int(d.get("patience_counter", 0)), bool(d.get("stopped_early", False)))


@dataclasses.dataclass
class FitResult:
    state: TrainState
    progress: FitProgress
    rewind: RewindState | None

    @property
    def history(self) -> list:
        return self.progress.history

    @property
    def final(self) -> dict:
        """The last evaluated epoch's record."""
        evaluated = [r for r in self.progress.history if r.get("evaluated")]
        return evaluated[-1] if evaluated else {}


def _to_python(value):
    value = np.asarray(value)
    return float(value) if value.ndim == 0 else [float(v) for v in value]


def averages(sums: dict, prefix: str) -> dict:
    count = float(sums["count"])
    return {f"{prefix}_{k}": _to_python(np.asarray(v) / max(count, 1.0)) for k, v in sums.items() if k != "count"}


def _sum_trees(trees: Sequence[dict]) -> dict:
    """Elementwise sum of metric-sum trees (waits for the devices)."""
    return jax.tree.map(lambda *xs: np.sum(np.stack(xs), axis=0), *jax.device_get(list(trees)))


def evaluate(state: TrainState, eval_step_fn, data, batch_size: int, mesh=None, prefix: str = "test") -> dict:
    """Mean loss and metrics of ``state`` over all of ``data`` (``{prefix}_loss``, ...)."""
    mesh = parallel.data_mesh() if mesh is None else mesh
    parallel.check_batch_size(batch_size, mesh)
    sums = [eval_step_fn(state, parallel.put_batch(b, mesh)) for b in data.batches(batch_size, **parallel.shard_kwargs())]
    return averages(_sum_trees(sums), prefix)


def _format_value(value) -> str:
    if isinstance(value, list):
        return "/".join(f"{v:.4f}" for v in value)
    return f"{value:.4f}"


def format_record(record: dict, prefix: str = "") -> str:
    """One progress line of an epoch record."""
    parts = [prefix] if prefix else []
    parts.append(f"epoch {record['epoch']:>4d}")
    parts.append(f"step {record['step']:>7d}")
    for key, value in record.items():
        if key.endswith(("_loss", "_accuracy")):
            parts.append(f"{key} {_format_value(value)}")
    parts.append(f"{record['examples_per_second']:,.0f} ex/s")
    return "  ".join(parts)


def is_eval_epoch(config: TrainConfig, epoch: int, step: int, total_steps: int) -> bool:
    """Whether the epoch ending at ``step`` (``epoch`` counted from 1) is evaluated."""
    return epoch % config.eval_every_epochs == 0 or step == total_steps


def close_epoch(
    progress: FitProgress,
    record: dict,
    config: TrainConfig,
    *,
    eval_metrics: dict | None,
    eval_name: str,
    total_steps: int,
) -> None:
    """Add the eval metrics to ``record``, apply early stopping, append it to the history."""
    if eval_metrics is not None:
        record.update(eval_metrics)
        record["evaluated"] = True
        if config.early_stopping_patience is not None:
            best, counter, stop = early_stopping_update(
                progress.best_loss, progress.patience_counter, record[f"{eval_name}_loss"], config.early_stopping_patience
            )
            progress.best_loss, progress.patience_counter = float(best), int(counter)
            progress.stopped_early = bool(stop) and record["step"] < total_steps
    progress.history.append(record)


def train_record(epoch: int, step: int, train_totals: dict, seconds: float) -> dict:
    """An epoch record from the summed training metrics and the epoch's wall time."""
    record = {"epoch": epoch, "step": step, **averages(train_totals, "train")}
    record["examples_per_second"] = float(train_totals["count"]) / max(seconds, 1e-9)
    return record


class CheckpointClock:
    """When ``fit`` writes a checkpoint: every N epochs and/or every S seconds."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.last = time.monotonic()

    def due(self, epoch: int) -> bool:
        by_epochs = self.config.checkpoint_every_epochs and epoch % self.config.checkpoint_every_epochs == 0
        by_time = self.config.checkpoint_every_seconds and time.monotonic() - self.last >= self.config.checkpoint_every_seconds
        return bool(by_epochs or by_time)

    def mark(self) -> None:
        self.last = time.monotonic()


def wants_log(config: TrainConfig, epoch: int, step: int, total_steps: int) -> bool:
    return bool(config.log_every_epochs) and (epoch % config.log_every_epochs == 0 or step == total_steps)


def fit(
    state: TrainState,
    *,
    train_step_fn,
    eval_step_fn,
    train_data,
    eval_data,
    config: TrainConfig,
    mesh=None,
    data_seed=None,
    rewind_step: int | None = None,
    on_rewind: Callable[[RewindState], None] | None = None,
    hooks: Iterable[Callable[[TrainState, dict], None]] = (),
    checkpoint_fn: Callable[[TrainState, FitProgress], None] | None = None,
    progress: FitProgress | None = None,
    eval_name: str = "test",
    log_prefix: str = "",
    log_fn: Callable[[str], None] = print,
) -> FitResult:
    """Train ``state`` from its step to the end of the schedule (``config.epochs``).

    Evaluates every ``config.eval_every_epochs`` epochs, applies early stopping if
    configured, captures the weights and batch statistics at ``rewind_step``
    (passed to ``on_rewind`` and returned), calls ``checkpoint_fn(state,
    progress)`` when a checkpoint is due and ``hooks(state, record)`` after every
    epoch. The epoch order comes from ``data_seed`` (default
    ``config.data_seed``; an int or a tuple of ints). Resumes mid-epoch from any
    step: pass the restored state and ``progress``.
    """
    mesh = parallel.data_mesh() if mesh is None else mesh
    parallel.check_batch_size(config.batch_size, mesh)
    data_seed = config.data_seed if data_seed is None else data_seed
    steps_per_epoch = train_data.steps_per_epoch(config.batch_size, config.drop_remainder)
    total_steps = config.epochs * steps_per_epoch
    progress = FitProgress() if progress is None else progress
    step = int(state.step)
    if step > total_steps:
        raise ValueError(f"the state is at step {step}, past the end of the schedule ({total_steps} steps)")
    if rewind_step is not None and not 0 <= rewind_step <= total_steps:
        raise ValueError(f"rewind_step={rewind_step} is outside the schedule [0, {total_steps}]")
    hooks = list(hooks)
    # Pruned weights are 0 from here on (steps with mask_forward=False rely on it),
    # and the state is a copy: steps may donate it without deleting the caller's arrays.
    state = parallel.put_replicated(state.replace(params=apply_mask(state.params, state.mask)), mesh, copy=True)
    rewind = None

    def capture(s: TrainState) -> RewindState:
        captured = RewindState(int(s.step), *jax.device_get((s.params, s.batch_stats)))
        if on_rewind is not None:
            on_rewind(captured)
        return captured

    if rewind_step is not None and step == rewind_step:
        rewind = capture(state)
    clock = CheckpointClock(config)
    while step < total_steps and not progress.stopped_early:
        epoch, start = divmod(step, steps_per_epoch)
        started = time.perf_counter()
        sums = []
        for batch in train_data.batches(
            config.batch_size, seed=data_seed, epoch=epoch, start=start, drop_remainder=config.drop_remainder, **parallel.shard_kwargs()
        ):
            state, batch_sums = train_step_fn(state, parallel.put_batch(batch, mesh))
            sums.append(batch_sums)
            step += 1
            if step == rewind_step:
                rewind = capture(state)
        record = train_record(epoch + 1, step, _sum_trees(sums), time.perf_counter() - started)
        evaluated = is_eval_epoch(config, epoch + 1, step, total_steps)
        eval_metrics = evaluate(state, eval_step_fn, eval_data, config.batch_size, mesh, prefix=eval_name) if evaluated else None
        close_epoch(progress, record, config, eval_metrics=eval_metrics, eval_name=eval_name, total_steps=total_steps)
        if wants_log(config, epoch + 1, step, total_steps):
            log_fn(format_record(record, log_prefix))
        if checkpoint_fn is not None and step < total_steps and not progress.stopped_early and clock.due(epoch + 1):
            checkpoint_fn(state, progress)  # before the hooks: a failing hook loses no work
            clock.mark()
        for hook in hooks:
            hook(state, record)
    return FitResult(state, progress, rewind)
