"""Training several replicas (seeds) of one model: one after the other, or all at once.

Both trainers take a list of per-replica train states and return a list of
:class:`~lth_jax.train.FitResult`, with the semantics of :func:`lth_jax.train.fit`:
the same epoch order (``ArrayDataset.epoch_indices`` with each replica's data
seed), the same per-step randomness, evaluation, early stopping, rewind capture
and checkpoints. The IMP engine uses either.

- :class:`SequentialTrainer` runs ``fit`` for each replica in turn, data-parallel
  over the devices of a mesh: for large models.
- :class:`VmapTrainer` trains all replicas in one compiled program: the train step
  is ``jax.vmap``-ed over the replica axis and ``lax.scan``-ed over the steps of
  an epoch, with the data on the device. Each replica keeps its own
  initialization, data order, masks and early stopping; a replica that stopped
  is frozen (its updates are discarded) while the others go on. For the small
  in-memory models of the thesis, where one replica leaves the device idle.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax.masks import apply_mask
from lth_jax.train import (
    CheckpointClock,
    FitProgress,
    FitResult,
    RewindState,
    TrainConfig,
    TrainState,
    averages,
    close_epoch,
    eval_step,
    fit,
    format_record,
    is_eval_epoch,
    make_eval_step,
    make_train_step,
    train_record,
    train_step,
    wants_log,
)

__all__ = ["ReplicaRun", "SequentialTrainer", "VmapTrainer"]

Hook = Callable[[TrainState, dict], None]


@dataclasses.dataclass
class ReplicaRun:
    """One replica's part of a level: its start state and what ``fit`` needs for it."""

    state: TrainState
    data_seed: Any = 0
    progress: FitProgress | None = None
    on_rewind: Callable[[RewindState], None] | None = None
    checkpoint_fn: Callable[[TrainState, FitProgress], None] | None = None
    hooks: Sequence[Hook] = ()
    log_prefix: str = ""


class SequentialTrainer:
    """Replicas one after the other, each with ``fit`` (data-parallel over ``mesh``)."""

    def __init__(self, model, tx, objective, train_data, eval_data, config: TrainConfig, *, mesh=None, preprocess=None, mask_forward=False):
        self.tx, self.train_data, self.eval_data, self.config, self.mesh = tx, train_data, eval_data, config, mesh
        self.train_step = make_train_step(model, tx, objective, mesh=mesh, preprocess=preprocess, donate=True, mask_forward=mask_forward)
        self.eval_step = make_eval_step(model, objective, mesh=mesh, preprocess=preprocess)

    def fit(self, runs: Sequence[ReplicaRun], *, rewind_step: int | None = None, eval_name: str = "test", log_fn=print) -> list[FitResult]:
        """Train every replica from its state to the end of the schedule (``rewind_step``: capture there)."""
        return [
            fit(
                run.state,
                train_step_fn=self.train_step,
                eval_step_fn=self.eval_step,
                train_data=self.train_data,
                eval_data=self.eval_data,
                config=self.config,
                mesh=self.mesh,
                data_seed=run.data_seed,
                rewind_step=rewind_step,
                on_rewind=run.on_rewind,
                hooks=run.hooks,
                checkpoint_fn=run.checkpoint_fn,
                progress=run.progress,
                eval_name=eval_name,
                log_prefix=run.log_prefix,
                log_fn=log_fn,
            )
            for run in runs
        ]


def _select(flags, new, old):
    """Per replica (leading axis): ``new`` where ``flags`` else ``old``."""
    return jax.tree.map(lambda a, b: jnp.where(flags.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def _unstack(tree, index: int):
    return jax.tree.map(lambda x: x[index], tree)


class VmapTrainer:
    """All replicas in one compiled program (``vmap`` over replicas, ``scan`` over steps).

    The datasets are placed on the device once. Rewind steps must fall on epoch
    boundaries (the thesis resets to the initialization, step 0).
    """

    def __init__(self, model, tx, objective, train_data, eval_data, config: TrainConfig, *, preprocess=None, mask_forward=False, eval_chunk: int = 10_000):
        self.train_data, self.eval_data, self.config = train_data, eval_data, config
        self.steps_per_epoch = train_data.steps_per_epoch(config.batch_size, config.drop_remainder)
        self.total_steps = config.epochs * self.steps_per_epoch
        self.train_x, self.train_y = jnp.asarray(train_data.x), jnp.asarray(train_data.y)
        # Eval data in padded chunks: [chunks, chunk, ...] and a weight per example.
        n = len(eval_data)
        chunk = min(n, eval_chunk)
        chunks = -(-n // chunk)
        pad = chunks * chunk - n
        self.eval_x = jnp.asarray(np.concatenate([eval_data.x, np.zeros((pad,) + eval_data.x.shape[1:], eval_data.x.dtype)]).reshape((chunks, chunk) + eval_data.x.shape[1:]))
        self.eval_y = jnp.asarray(np.concatenate([eval_data.y, np.zeros((pad,) + eval_data.y.shape[1:], eval_data.y.dtype)]).reshape((chunks, chunk) + eval_data.y.shape[1:]))
        self.eval_w = jnp.asarray((np.arange(chunks * chunk) < n).astype(np.float32).reshape(chunks, chunk))
        step = functools.partial(train_step, model=model, tx=tx, objective=objective, preprocess=preprocess, mask_forward=mask_forward)
        evaluate = functools.partial(eval_step, model=model, objective=objective, preprocess=preprocess)

        def epoch(states, indices, weights, active, train_x, train_y, eval_x, eval_y, eval_w):
            def body(states, t):
                idx = indices[:, t]
                batch = {"x": train_x[idx], "y": train_y[idx], "weight": weights[:, t]}
                new, sums = jax.vmap(step)(states, batch)
                on = active[:, t]
                sums = jax.tree.map(lambda s: s * on.reshape((-1,) + (1,) * (s.ndim - 1)), sums)
                return _select(on, new, states), sums

            states, sums = jax.lax.scan(body, states, jnp.arange(indices.shape[1]))
            sums = jax.tree.map(lambda s: s.sum(axis=0), sums)

            def eval_one(state):
                def chunk_sums(carry, xs):
                    x, y, w = xs
                    return carry, evaluate(state, {"x": x, "y": y, "weight": w})

                _, per_chunk = jax.lax.scan(chunk_sums, None, (eval_x, eval_y, eval_w))
                return jax.tree.map(lambda s: s.sum(axis=0), per_chunk)

            return states, sums, jax.vmap(eval_one)(states)

        self._epoch = jax.jit(epoch, donate_argnums=(0,))

    def fit(self, runs: Sequence[ReplicaRun], *, rewind_step: int | None = None, eval_name: str = "test", log_fn=print) -> list[FitResult]:
        """Train all replicas together to the end of the schedule (``rewind_step``: capture there)."""
        config, spe, total = self.config, self.steps_per_epoch, self.total_steps
        n = len(runs)
        states = [run.state for run in runs]
        progresses = [FitProgress() if run.progress is None else run.progress for run in runs]
        steps = [int(s.step) for s in states]
        for r, step in enumerate(steps):
            if step > total:
                raise ValueError(f"replica {r} is at step {step}, past the end of the schedule ({total} steps)")
        rewinds: list[RewindState | None] = [None] * n
        if rewind_step is not None:
            if rewind_step % spe:
                raise ValueError(
                    f"rewind step {rewind_step} is not at an epoch boundary ({spe} steps per epoch); "
                    "vmapped replicas rewind to the end of an epoch"
                )
            if not 0 <= rewind_step <= total:
                raise ValueError(f"rewind_step={rewind_step} is outside the schedule [0, {total}]")
        stacked = _stack([s.replace(params=apply_mask(s.params, s.mask)) for s in states])

        def capture(r: int, state_r) -> None:
            rewinds[r] = RewindState(int(state_r.step), *jax.device_get((state_r.params, state_r.batch_stats)))
            if runs[r].on_rewind is not None:
                runs[r].on_rewind(rewinds[r])

        for r in range(n):
            if rewind_step is not None and steps[r] == rewind_step:
                capture(r, states[r])
        clock = CheckpointClock(config)
        while True:
            running = [steps[r] < total and not progresses[r].stopped_early for r in range(n)]
            if not any(running):
                break
            epoch = min(steps[r] // spe for r in range(n) if running[r])
            indices = np.zeros((n, spe, config.batch_size), np.int32)
            weights = np.zeros((n, spe, config.batch_size), np.float32)
            active = np.zeros((n, spe), bool)
            for r in range(n):
                if running[r] and steps[r] // spe == epoch:
                    indices[r], weights[r] = self.train_data.epoch_indices(
                        config.batch_size, seed=runs[r].data_seed, epoch=epoch, drop_remainder=config.drop_remainder
                    )
                    active[r] = np.arange(epoch * spe, (epoch + 1) * spe) >= steps[r]
            started = time.perf_counter()
            stacked, sums, eval_sums = self._epoch(
                stacked, indices, weights, active, self.train_x, self.train_y, self.eval_x, self.eval_y, self.eval_w
            )
            sums, eval_sums = jax.device_get((sums, eval_sums))
            seconds = time.perf_counter() - started
            unstacked = None
            for r in range(n):
                if not active[r].any():
                    continue
                steps[r] = (epoch + 1) * spe
                record = train_record(epoch + 1, steps[r], _unstack(sums, r), seconds)
                evaluated = is_eval_epoch(config, epoch + 1, steps[r], total)
                eval_metrics = averages(_unstack(eval_sums, r), eval_name) if evaluated else None
                close_epoch(progresses[r], record, config, eval_metrics=eval_metrics, eval_name=eval_name, total_steps=total)
                if wants_log(config, epoch + 1, steps[r], total):
                    log_fn(format_record(record, runs[r].log_prefix))
            checkpoint_due = clock.due(epoch + 1)
            needs_states = (
                (rewind_step is not None and (epoch + 1) * spe == rewind_step)
                or any(run.hooks for run in runs)
                or (checkpoint_due and any(run.checkpoint_fn for run in runs))
            )
            if needs_states:
                unstacked = [_unstack(stacked, r) for r in range(n)]
            for r in range(n):
                if not active[r].any():
                    continue
                if rewind_step is not None and steps[r] == rewind_step:
                    capture(r, unstacked[r])
                if checkpoint_due and runs[r].checkpoint_fn is not None and steps[r] < total and not progresses[r].stopped_early:
                    runs[r].checkpoint_fn(unstacked[r], progresses[r])
                for hook in runs[r].hooks:
                    hook(unstacked[r], progresses[r].history[-1])
            if checkpoint_due:
                clock.mark()
        return [FitResult(_unstack(stacked, r), progresses[r], rewinds[r]) for r in range(n)]
