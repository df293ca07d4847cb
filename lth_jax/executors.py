"""How an epoch of the training loop is executed (:mod:`lth_jax.loop`).

- :class:`DataParallelEpochs`: each replica's epoch as jitted steps over a
  device mesh, batches from the host (large models, streaming data; any step
  can be a rewind step or a resume point);
- :class:`VmappedEpochs`: all replicas' epoch, and their evaluation, as one
  compiled program (``vmap`` over replicas, ``scan`` over steps, data on the
  device): small in-memory models, where one replica leaves the device idle.
  A replica that stopped is frozen while the others go on; rewind steps fall
  on epoch boundaries.

An executor has ``steps_per_epoch`` and four methods: ``check_rewind(step)``,
``start(states) -> carry``, ``state(carry, r) -> TrainState`` and
``epoch(carry, epoch, starts, data_seeds, *, evaluated, rewind_step, capture)
-> (carry, train_sums, eval_sums, seconds)``, one entry per replica (``None``
for a replica that does not run this epoch).
"""

from __future__ import annotations

import functools
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax import parallel
from lth_jax.errors import UserError
from lth_jax.masks import apply_mask
from lth_jax.train import TrainConfig, TrainState, eval_step, evaluate, make_eval_step, make_train_step, memoize, sum_trees, train_step

__all__ = ["DataParallelEpochs", "VmappedEpochs"]


class DataParallelEpochs:
    """Epochs of jitted steps over a device mesh, one replica after the other.

    The batch is sharded over the mesh's ``'data'`` axis and the state
    replicated (:mod:`lth_jax.parallel`); with several processes each feeds its
    rows of every batch. ``train_step_fn`` / ``eval_step_fn`` are the jitted
    steps (:func:`~lth_jax.train.make_train_step`, ``make_eval_step``), or
    built from ``model``, ``tx`` and ``objective`` by :meth:`build`.
    """

    def __init__(self, train_step_fn, eval_step_fn, train_data, eval_data, config: TrainConfig, *, mesh=None):
        self.mesh = parallel.data_mesh() if mesh is None else mesh
        parallel.check_batch_size(config.batch_size, self.mesh)
        self.train_step_fn, self.eval_step_fn = train_step_fn, eval_step_fn
        self.train_data, self.eval_data, self.config = train_data, eval_data, config
        self.steps_per_epoch = train_data.steps_per_epoch(config.batch_size, config.drop_remainder)

    @classmethod
    def build(cls, model, tx, objective, train_data, eval_data, config: TrainConfig, *, mesh=None, preprocess=None, mask_forward=False):
        """Steps compiled for ``mesh``; the train step donates its input state (the loop owns its copies)."""
        mesh = parallel.data_mesh() if mesh is None else mesh
        train = make_train_step(model, tx, objective, mesh=mesh, preprocess=preprocess, donate=True, mask_forward=mask_forward)
        return cls(train, make_eval_step(model, objective, mesh=mesh, preprocess=preprocess), train_data, eval_data, config, mesh=mesh)

    def check_rewind(self, rewind_step: int | None) -> None:
        """Any step can be a rewind step."""

    def start(self, states: Sequence[TrainState]) -> list[TrainState]:
        # Pruned weights are 0 from here on (steps with mask_forward=False rely on it), and the
        # states are copies: the steps donate them without deleting the caller's arrays.
        return [parallel.put_replicated(s.replace(params=apply_mask(s.params, s.mask)), self.mesh, copy=True) for s in states]

    def state(self, carry: list[TrainState], r: int) -> TrainState:
        return carry[r]

    def epoch(self, carry, epoch, starts, data_seeds, *, evaluated, rewind_step, capture):
        """Train each replica whose ``starts`` entry is a step over the rest of ``epoch``."""
        config, spe = self.config, self.steps_per_epoch
        carry = list(carry)
        train_sums, eval_sums, seconds = [None] * len(carry), [None] * len(carry), [0.0] * len(carry)
        for r, start in enumerate(starts):
            if start is None:
                continue
            began, state, step, sums = time.perf_counter(), carry[r], start, []
            for batch in self.train_data.batches(config.batch_size, seed=data_seeds[r], epoch=epoch, start=start - epoch * spe,
                                                 drop_remainder=config.drop_remainder, **parallel.shard_kwargs()):
                state, batch_sums = self.train_step_fn(state, parallel.put_batch(batch, self.mesh))
                sums.append(batch_sums)
                step += 1
                if step == rewind_step and step < (epoch + 1) * spe:  # mid-epoch; the loop captures at the end
                    capture(r, state)
            train_sums[r] = sum_trees(sums)
            seconds[r] = time.perf_counter() - began
            carry[r] = state
            if evaluated:
                eval_sums[r] = evaluate(state, self.eval_step_fn, self.eval_data, config.batch_size, self.mesh, sums_only=True)
        return carry, train_sums, eval_sums, seconds


def _select(flags, new, old):
    """Per replica (leading axis): ``new`` where ``flags`` else ``old``."""
    return jax.tree.map(lambda a, b: jnp.where(flags.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def _unstack(tree, index: int):
    return jax.tree.map(lambda x: x[index], tree)


def _padded_chunks(data, chunk_size: int):
    """The eval data as ``[chunks, chunk, ...]`` device arrays, and a weight per example."""
    n = len(data)
    chunk = min(n, chunk_size)
    chunks = -(-n // chunk)
    pad = chunks * chunk - n

    def padded(a):
        return jnp.asarray(np.concatenate([a, np.zeros((pad,) + a.shape[1:], a.dtype)]).reshape((chunks, chunk) + a.shape[1:]))

    weight = jnp.asarray((np.arange(chunks * chunk) < n).astype(np.float32).reshape(chunks, chunk))
    return padded(data.x), padded(data.y), weight


@memoize
def _vmapped_epoch(model, tx, objective, preprocess, mask_forward: bool):
    """The jitted program of one epoch of every replica, and their evaluation (one per
    model and recipe in a process)."""
    step = functools.partial(train_step, model=model, tx=tx, objective=objective, preprocess=preprocess, mask_forward=mask_forward)
    evaluate_one = functools.partial(eval_step, model=model, objective=objective, preprocess=preprocess)

    def epoch(states, indices, weights, active, arrays):
        train_x, train_y, eval_x, eval_y, eval_w = arrays

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
                return carry, evaluate_one(state, {"x": x, "y": y, "weight": w})

            _, per_chunk = jax.lax.scan(chunk_sums, None, (eval_x, eval_y, eval_w))
            return jax.tree.map(lambda s: s.sum(axis=0), per_chunk)

        return states, sums, jax.vmap(eval_one)(states)

    return jax.jit(epoch, donate_argnums=(0,))


class VmappedEpochs:
    """All replicas' epoch and evaluation in one compiled program.

    The train step is ``jax.vmap``-ed over the replica axis and ``lax.scan``-ed
    over the steps of the epoch; the datasets are placed on the device once.
    Steps before a replica's start (a resumed replica) and every step of a
    replica that does not run this epoch are frozen (their updates discarded).
    """

    def __init__(self, model, tx, objective, train_data, eval_data, config: TrainConfig, *, preprocess=None, mask_forward=False, eval_chunk: int = 10_000):
        self.train_data, self.config = train_data, config
        self.steps_per_epoch = train_data.steps_per_epoch(config.batch_size, config.drop_remainder)
        self.arrays = (jnp.asarray(train_data.x), jnp.asarray(train_data.y)) + _padded_chunks(eval_data, eval_chunk)
        self._epoch = _vmapped_epoch(model, tx, objective, preprocess, mask_forward)

    def check_rewind(self, rewind_step: int | None) -> None:
        if rewind_step is not None and rewind_step % self.steps_per_epoch:
            raise UserError(
                f"rewind step {rewind_step} is not at an epoch boundary ({self.steps_per_epoch} steps per epoch); "
                "vmapped replicas rewind to the end of an epoch"
            )

    def start(self, states: Sequence[TrainState]):
        return _stack([s.replace(params=apply_mask(s.params, s.mask)) for s in states])

    def state(self, carry, r: int) -> TrainState:
        return _unstack(carry, r)

    def epoch(self, carry, epoch, starts, data_seeds, *, evaluated, rewind_step, capture):
        """One program for every replica; replicas whose ``starts`` entry is None are frozen."""
        config, spe, n = self.config, self.steps_per_epoch, len(starts)
        indices = np.zeros((n, spe, config.batch_size), np.int32)
        weights = np.zeros((n, spe, config.batch_size), np.float32)
        active = np.zeros((n, spe), bool)
        for r, start in enumerate(starts):
            if start is not None:
                indices[r], weights[r] = self.train_data.epoch_indices(
                    config.batch_size, seed=data_seeds[r], epoch=epoch, drop_remainder=config.drop_remainder
                )
                active[r] = np.arange(epoch * spe, (epoch + 1) * spe) >= start
        began = time.perf_counter()
        carry, sums, eval_sums = self._epoch(carry, indices, weights, active, self.arrays)
        sums, eval_sums = jax.device_get((sums, eval_sums))
        seconds = time.perf_counter() - began
        return carry, [_unstack(sums, r) for r in range(n)], [_unstack(eval_sums, r) for r in range(n)], [seconds] * n
