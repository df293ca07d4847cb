"""Linear mode connectivity and instability (Frankle, Dziugaite, Roy & Carbin, ICML 2020).

Take a network's weights at step ``k`` of training (dense, or a ticket: the
weights at ``k`` times a mask), train two copies of it to the end of the
schedule that differ only in their SGD noise (here: their data order), and
evaluate the test error along the straight line between the two results,
``θ(α) = (1 − α)·θ₁ + α·θ₂``. The *error barrier* is the highest error on the
path minus the mean of the two end points' errors. The paper calls a network
*stable* at ``k`` when the barrier is below 2%: from ``k`` on, SGD noise no
longer changes which linearly connected basin training ends in. It is how a
rewind step is chosen for late resetting: the smallest ``k`` from which every later one is stable.

The pure parts (:func:`interpolate`, :func:`error_barrier`,
:func:`recommended_step`, :func:`interpolation_curve`) work on any parameter
pytrees; :func:`trunk_states` and :func:`train_copies` train, resumably, with
the engine of :mod:`lth_jax.imp` (same initialization, streams and executor,
so the dense run's state at the IMP run's rewind step is the one its tickets
were rewound to). The experiment built on them is :mod:`lth_jax.instability`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from lth_jax.errors import UserError
from lth_jax.executors import build_executor
from lth_jax.loop import FitProgress, Replica, RewindState, fit_replicas, resume_stage
from lth_jax.masks import apply_mask, init_mask
from lth_jax.models.layers import BATCH_NORM_MOMENTUM
from lth_jax.rng import Streams
from lth_jax.sizes import activation_values
from lth_jax.stage import Stage
from lth_jax.train import TrainConfig, TrainState, create_train_state, eval_step, memoize

__all__ = [
    "ALPHAS", "STABLE_BARRIER", "NOISES", "alpha_grid", "interpolate", "error_barrier", "recommended_step",
    "interpolation_curve", "trunk_states", "CopyPair",
    "train_copies",
    "train_copy_pairs",
]

ALPHAS = 31  # points on the path, the ends included (every 1/30)
STABLE_BARRIER = 0.02  # the paper's threshold: a barrier below 2% error is stable
NOISES = ("data_order", "data_order_and_augmentation")  # what differs between the two copies


def alpha_grid(points: int = ALPHAS) -> np.ndarray:
    """``points`` evenly spaced values of α in [0, 1], both ends included."""
    if int(points) < 2:
        raise UserError(f"alphas={points}: the path needs at least its two ends")
    return np.linspace(0.0, 1.0, int(points), dtype=np.float32)


def interpolate(params1: Any, params2: Any, alpha) -> Any:
    """``(1 − α)·θ₁ + α·θ₂`` leaf by leaf (α a scalar; pruned weights, 0 in both, stay 0)."""
    return jax.tree.map(lambda a, b: (1 - alpha) * a + alpha * b, params1, params2)


def error_barrier(errors: Sequence[float]) -> float:
    """The highest error along the path minus the mean of its two ends' errors
    (``errors`` over α from 0 to 1). 0 for a path that never rises above its ends' mean."""
    errors = np.asarray(errors, np.float64)
    return float(errors.max() - (errors[0] + errors[-1]) / 2)


def recommended_step(barriers: Mapping[int, float], threshold: float = STABLE_BARRIER) -> int | None:
    """The smallest step ``k`` from which the network is stable: the barrier at ``k`` and at every
    later step given is below ``threshold`` (``None``: the last step is not). A stable step
    followed by an unstable one is not recommended."""
    recommended = None
    for k in sorted(barriers, reverse=True):
        if not barriers[k] < threshold:
            break
        recommended = k
    return recommended


# ---------------------------------------------------------------------------- the curve


@memoize
def _curve_programs(model, objective, preprocess, momentum: float):
    """Jitted: BatchNorm statistics recomputed at every α, and the metric sums of a batch at every α."""

    def statistics(params1, params2, mask, template, alphas, xs, alpha_batch):
        def at(alpha):
            params = apply_mask(interpolate(params1, params2, alpha), mask)
            zeros = jax.tree.map(jnp.zeros_like, template)

            def batch(total, x):
                x = x if preprocess is None else preprocess(x, jax.random.PRNGKey(0), False)
                _, new = model.apply({"params": params, "batch_stats": zeros}, x, train=True, mutable=["batch_stats"])
                # from zero statistics, one update leaves (1 − momentum) × the batch's own mean and variance
                return jax.tree.map(lambda t, n: t + n / (1 - momentum), total, new["batch_stats"]), None

            total, _ = jax.lax.scan(batch, zeros, xs)
            return jax.tree.map(lambda t: t / xs.shape[0], total)

        return jax.lax.map(at, alphas, batch_size=alpha_batch)

    def sums(params1, params2, mask, stats, alphas, batch, alpha_batch):
        def at(alpha_stats):
            alpha, batch_stats = alpha_stats
            state = TrainState(jnp.int32(0), interpolate(params1, params2, alpha), batch_stats, None, mask, jax.random.PRNGKey(0))
            return eval_step(state, batch, model=model, objective=objective, preprocess=preprocess)

        return jax.lax.map(at, (alphas, stats), batch_size=alpha_batch)

    return jax.jit(statistics, static_argnums=6), jax.jit(sums, static_argnums=6)


def interpolation_curve(model, objective, params1, params2, eval_data, *, mask=None, batch_stats=None, bn_data=None,
                        bn_batches: int = 10, alphas: int | Sequence[float] = ALPHAS, batch_size: int = 1000,
                        preprocess=None, alpha_batch: int | None = None) -> dict:
    """Loss, accuracy and error of the network ``θ(α)`` on ``eval_data`` for every α.

    ``mask``: the copies' shared mask (default: dense). ``batch_stats``: the
    model's BatchNorm statistics (any of the two ends': only their structure is
    used): at every α they are recomputed on ``bn_batches`` batches of
    ``bn_data`` (its first examples, without augmentation) as the mean of the
    batches' own statistics. All α run in one compiled program per batch shape
    (``alpha_batch`` at a time; default: as many as fit in about 1 GiB of
    activations). Returns ``{"alpha", "loss", "accuracy", "error"}`` (lists
    over α; accuracy averaged over tasks; error = 1 − accuracy) and, for
    several tasks, ``accuracy_per_task``.
    """
    grid = alpha_grid(alphas) if np.ndim(alphas) == 0 else np.asarray(alphas, np.float32)
    mask = init_mask(params1) if mask is None else mask
    x0 = next(iter(eval_data.batches(batch_size)))["x"]
    if alpha_batch is None:
        per_alpha = activation_values(model, jnp.asarray(x0[:1])) * len(x0) * 4
        alpha_batch = int(max(1, min(len(grid), (1 << 30) // max(per_alpha, 1))))
    statistics, sums = _curve_programs(model, objective, preprocess, BATCH_NORM_MOMENTUM)
    if batch_stats:
        if bn_data is None:
            raise UserError("a model with BatchNorm needs bn_data (training batches) to recompute its statistics along the path")
        xs = np.stack([b["x"] for _, b in zip(range(int(bn_batches)), bn_data.batches(batch_size, drop_remainder=True))])
        stats = statistics(params1, params2, mask, batch_stats, grid, xs, alpha_batch)
    else:
        stats = {}  # no BatchNorm: the same (empty) statistics at every α
    totals = None
    for batch in eval_data.batches(batch_size):
        out = jax.device_get(sums(params1, params2, mask, stats, grid, batch, alpha_batch))
        totals = out if totals is None else jax.tree.map(np.add, totals, out)
    count = np.maximum(totals["count"], 1.0)
    accuracy = totals["accuracy"] / count.reshape((-1,) + (1,) * (totals["accuracy"].ndim - 1))
    mean_accuracy = accuracy.reshape(len(grid), -1).mean(axis=1)
    curve = {"alpha": grid.tolist(), "loss": (totals["loss"] / count).tolist(), "accuracy": mean_accuracy.tolist(),
             "error": (1.0 - mean_accuracy).tolist()}
    if accuracy.ndim > 1:
        curve["accuracy_per_task"] = accuracy.tolist()
    return curve


# ---------------------------------------------------------------------------- training


def trunk_states(model, objective, train_data, eval_data, config: TrainConfig, tx, steps: Sequence[int], *, seed: int,
                 params0, batch_stats0, stage: Stage | None = None, preprocess=None, mesh=None, batch_order: str = "per_seed",
                 log_fn: Callable[[str], None] = print) -> dict[int, RewindState]:
    """The dense network's weights and batch statistics at each of ``steps``: the training of
    level 0 of an IMP run with ``seed`` (initialization ``params0``, the run's data order and
    per-step stream, data-parallel; ``batch_order``: the run's, :meth:`lth_jax.rng.Streams.data_seed`),
    run only as far as the last step. With a ``stage`` each
    state is kept (tree ``k_<step>``), and so is the full train state at the end of each
    stretch of training (``state_<step>``), from which a rerun goes on."""
    spe = train_data.steps_per_epoch(config.batch_size, config.drop_remainder)
    total = config.epochs * spe
    streams = Streams(seed)
    order = streams.data_seed(config.data_seed, batch_order)
    executor = build_executor(model, tx, objective, train_data, eval_data, config, vmap=False, mesh=mesh, preprocess=preprocess)
    initial = create_train_state(params0, tx, batch_stats=batch_stats0, rng=streams.steps(), step=0)
    full = {0: (initial, FitProgress())}  # full train states at epoch boundaries, by step
    saved = {}
    if stage is not None and stage.directory.exists():
        saved = {int(p.name[len("state_"):]): p.name for p in stage.directory.glob("state_*") if stage.has(p.name)}
    template = {"params": params0, "batch_stats": batch_stats0}
    out: dict[int, RewindState] = {}
    for k in sorted(set(int(s) for s in steps)):
        if not 0 <= k < total:
            raise UserError(f"rewind step {k} is outside the schedule's {total} steps")
        name = f"k_{k:08d}"
        if stage is not None and stage.has(name):
            arrays = stage.load(name, template)
            out[k] = RewindState(k, arrays["params"], arrays["batch_stats"])
            continue
        at = max(b for b in list(full) + list(saved) if b <= k)
        if at not in full:  # kept by an earlier invocation
            restored = flax.serialization.from_state_dict(initial, stage.load(saved[at]))
            full[at] = (restored, FitProgress.from_dict(stage.meta(saved[at])))
        state, progress = full[at]
        if at == k:
            captured = RewindState(k, *jax.device_get((state.params, state.batch_stats)))
        else:
            log_fn(f"dense training from step {at} to step {k}")
            boundary = min(-(-k // spe) * spe, total)
            progress = FitProgress.from_dict(progress.to_dict())  # the kept state's progress stays as it was
            result = fit_replicas([Replica(state, order, progress, log_prefix="dense")], executor, config,
                                  rewind_step=k, stop_step=boundary, log_fn=log_fn)[0]
            if result.rewind is None:
                raise UserError(f"the dense training stopped (early stopping or divergence) at step {int(result.state.step)}, "
                                f"before the rewind step {k}: choose earlier rewind steps")
            captured = result.rewind
            full[boundary] = (jax.device_get(result.state), result.progress)
            if stage is not None:
                stage.save(f"state_{boundary:08d}", flax.serialization.to_state_dict(full[boundary][0]), result.progress.to_dict())
        out[k] = captured
        if stage is not None:
            stage.save(name, {"params": captured.params, "batch_stats": captured.batch_stats}, {"step": k})
    return out


@dataclasses.dataclass
class CopyPair:
    """The two copies of one state of :func:`train_copies`: ``start`` pruned by ``mask``, the
    streams of ``seed``, each copy a stage (``stages[c]``, or ``None``)."""

    start: RewindState
    mask: Any
    seed: int
    stages: Sequence[Stage | None] = (None, None)


def train_copies(model, objective, train_data, eval_data, config: TrainConfig, tx, start: RewindState, mask, *, seed: int,
                 noise: str = "data_order", stages: Sequence[Stage | None] = (None, None), vmap: bool = False,
                 preprocess=None, mesh=None, log_fn: Callable[[str], None] = print) -> list[dict]:
    """Two copies of ``start`` (weights and batch statistics at step ``start.step``; pruned by
    ``mask``) trained from there to the end of the schedule with a fresh optimizer state,
    as a pruned level of IMP is. They differ only in their SGD noise: their data orders
    (:meth:`lth_jax.rng.Streams.copy_data_seed`), and with
    ``noise="data_order_and_augmentation"`` their per-step streams too. Each copy is a
    stage (``stages[c]``): done, it is read back; interrupted, it resumes. Returns per copy
    ``{"params", "batch_stats", "record"}`` (record: the final epoch's metrics and epochs)."""
    return train_copy_pairs(model, objective, train_data, eval_data, config, tx, [CopyPair(start, mask, seed, stages)], noise=noise,
                            vmap=vmap, preprocess=preprocess, mesh=mesh, log_fn=log_fn)[0]


def train_copy_pairs(model, objective, train_data, eval_data, config: TrainConfig, tx, pairs: Sequence[CopyPair], *,
                     noise: str = "data_order", vmap: bool = False, preprocess=None, mesh=None,
                     log_fn: Callable[[str], None] = print) -> list[list[dict]]:
    """:func:`train_copies` of every pair, all copies as the replicas of one
    :func:`lth_jax.loop.fit_replicas` call (one compiled program with ``vmap``). Returns per pair
    its two copies."""
    if noise not in NOISES:
        raise UserError(f"noise={noise!r} is not one of {', '.join(NOISES)}")
    out: list[list[dict | None]] = [[None, None] for _ in pairs]
    replicas, pending = [], []
    total = config.epochs * train_data.steps_per_epoch(config.batch_size, config.drop_remainder)
    for p, pair in enumerate(pairs):
        streams, template = Streams(pair.seed), {"params": pair.start.params, "batch_stats": pair.start.batch_stats}
        for c, stage in enumerate(pair.stages):
            rng = streams.copy_steps(c) if noise == "data_order_and_augmentation" else streams.steps()
            state = create_train_state(apply_mask(pair.start.params, pair.mask), tx, mask=pair.mask, batch_stats=pair.start.batch_stats,
                                       rng=rng, step=pair.start.step)
            if stage is not None:
                stage.open()
                if stage.done:
                    out[p][c] = {**stage.load("trained", template), "record": stage.record()}
                    if vmap:  # a finished row that does not train: the others run in the program shape they had with it
                        replicas.append(Replica(state.replace(step=total), None))
                    continue
            tag = f"copy {c}" if len(pairs) == 1 else f"seed {pair.seed} k={pair.start.step} copy {c}"
            state, progress, checkpoint = resume_stage(stage, state, tag=tag, log_fn=log_fn)
            replicas.append(Replica(state, streams.copy_data_seed(config.data_seed, c), progress, checkpoint=checkpoint, log_prefix=tag))
            pending.append((p, c))
    if pending:
        executor = build_executor(model, tx, objective, train_data, eval_data, config, vmap=vmap, mesh=mesh, preprocess=preprocess)
        results = [r for r, replica in zip(fit_replicas(replicas, executor, config, log_fn=log_fn), replicas) if replica.data_seed is not None]
        for (p, c), result in zip(pending, results):
            trained = jax.device_get({"params": result.state.params, "batch_stats": result.state.batch_stats})
            final = {k: v for k, v in result.final.items() if k.endswith(("_loss", "_accuracy"))}
            record = {"copy": c, **final, "epochs": result.history[-1]["epoch"] if result.history else 0,
                      "steps": int(result.state.step), "diverged": result.progress.diverged}
            stage = pairs[p].stages[c]
            if stage is not None:
                stage.save("trained", trained)
                stage.finish(record, result.history)
            out[p][c] = {**trained, "record": record}
    return out
