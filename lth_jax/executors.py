"""How the epochs of the training loop are executed (:mod:`lth_jax.loop`).

- :class:`DataParallelEpochs`: each replica's epoch as jitted steps over a
  device mesh, batches from the host (large models, streaming data; any step
  can be a rewind step or a resume point);
- :class:`VmappedEpochs`: all replicas' epochs, their evaluation and early
  stopping as one compiled program (``vmap`` over replicas, ``scan`` over
  steps, a ``while_loop`` over epochs, data on the device): small in-memory
  models, where one replica leaves the device idle. Replicas that stopped are
  left out; rewind steps fall on epoch boundaries.

An executor has ``steps_per_epoch``, ``max_epochs`` (how many epochs one call
may run) and four methods: ``check_rewind(step)``, ``start(states) -> carry``,
``state(carry, r) -> TrainState`` and ``epochs(carry, epoch, n_epochs, starts,
data_seeds, *, evaluated, stopping, rewind_step, capture) -> (carry, chunk,
seconds)``: ``chunk`` holds, per epoch run (at most ``n_epochs``; fewer when
replicas stopped early), the train and eval sums of every replica (``None`` for
a replica that does not run, or no longer: it stopped in an earlier epoch).
"""

from __future__ import annotations

import functools
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lth_jax import parallel
from lth_jax.data.arrays import EpochOrders, padded_chunks
from lth_jax.errors import UserError
from lth_jax.masks import apply_mask
from lth_jax.models.mlp import WidthPadding
from lth_jax.train import (
    TrainConfig,
    TrainState,
    diverged_loss,
    early_stopping_update,
    eval_step,
    evaluate,
    make_eval_step,
    make_train_step,
    memoize,
    sum_trees,
    train_step,
)

__all__ = ["DataParallelEpochs", "VmappedEpochs", "build_executor"]

END_SHARE = 0.5  # a vmapped chunk goes back to the host once this share of its rows stopped


@jax.jit
def _masked(state: TrainState) -> TrainState:
    """``state`` with ``params ⊙ mask`` (one program per state structure)."""
    return state.replace(params=apply_mask(state.params, state.mask))


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
        return [parallel.put_replicated(_masked(s), self.mesh, copy=True) for s in states]

    def state(self, carry: list[TrainState], r: int) -> TrainState:
        return carry[r]

    max_epochs = 1  # the host feeds every batch

    def epochs(self, carry, epoch, n_epochs, starts, data_seeds, *, evaluated, stopping, rewind_step, capture):
        """Train each replica whose ``starts`` entry is a step over the rest of ``epoch`` (``n_epochs`` is 1)."""
        if n_epochs != 1:
            raise ValueError(f"n_epochs={n_epochs}: the data-parallel executor runs one epoch at a time")
        config, spe, evaluated = self.config, self.steps_per_epoch, evaluated[0]
        carry = list(carry)
        train_sums, eval_sums, seconds = [None] * len(carry), [None] * len(carry), [0.0] * len(carry)
        for r, start in enumerate(starts):
            if start is None:
                continue
            began, state, step, sums = time.perf_counter(), carry[r], start, []
            for batch in self.train_data.batches(config.batch_size, seed=data_seeds[r], epoch=epoch, start=start - epoch * spe,
                                                 drop_remainder=config.drop_remainder, **parallel.shard_kwargs()):
                state, batch_sums = self.train_step_fn(state, parallel.feed_batch(batch, self.mesh))
                sums.append(batch_sums)
                step += 1
                if step == rewind_step and step < (epoch + 1) * spe:  # mid-epoch; the loop captures at the end
                    capture(r, state)
            train_sums[r] = sum_trees(sums)
            seconds[r] = time.perf_counter() - began
            carry[r] = state
            if evaluated:
                eval_sums[r] = evaluate(state, self.eval_step_fn, self.eval_data, config.batch_size, self.mesh, sums_only=True)
        return carry, [(train_sums, eval_sums)], seconds


def _select(flags, new, old):
    """Per replica (leading axis): ``new`` where ``flags`` else ``old``."""
    return jax.tree.map(lambda a, b: jnp.where(flags.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


def _stack(trees):
    """Stacked on the host (no program per leaf shape to compile)."""
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *jax.device_get(list(trees)))


def _unstack(tree, index: int):
    return jax.tree.map(lambda x: x[index], tree)


@memoize
def _vmapped_epochs(model, tx, objective, preprocess, mask_forward: bool):
    """The jitted program of up to ``E`` epochs of every replica, their evaluation and
    early stopping (one per model and recipe in a process; compiled per replica count)."""
    step = functools.partial(train_step, model=model, tx=tx, objective=objective, preprocess=preprocess, mask_forward=mask_forward)
    evaluate_one = functools.partial(eval_step, model=model, objective=objective, preprocess=preprocess)

    def eval_one(state, eval_x, eval_y, eval_w):
        def chunk_sums(carry, xs):
            x, y, w = xs
            return carry, evaluate_one(state, {"x": x, "y": y, "weight": w})

        _, per_chunk = jax.lax.scan(chunk_sums, None, (eval_x, eval_y, eval_w))
        return jax.tree.map(lambda s: s.sum(axis=0), per_chunk)

    def one_epoch(states, indices, weights, active, arrays):
        train_x, train_y, eval_x, eval_y, eval_w = arrays

        def body(states, t):
            idx = indices[:, t]
            batch = {"x": train_x[idx], "y": train_y[idx], "weight": weights[:, t]}
            new, sums = jax.vmap(step)(states, batch)
            on = active[:, t]
            sums = jax.tree.map(lambda s: s * on.reshape((-1,) + (1,) * (s.ndim - 1)), sums)
            return _select(on, new, states), sums

        states, sums = jax.lax.scan(body, states, jnp.arange(indices.shape[1]))
        return states, jax.tree.map(lambda s: s.sum(axis=0), sums)

    def epochs(states, indices, weights, active, arrays, plan):
        """``plan``: ``n`` epochs to run (<= E), ``evaluated[E]``, early stopping's
        ``best[R]``, ``counter[R]``, ``patience`` (< 0: none) and ``left`` (epochs to
        the end of the schedule), ``real[R]`` (rows that are not padding). A replica that
        stops (early stopping, divergence) is frozen from the next epoch on; the chunk ends
        once END_SHARE of the rows (or all) stopped. Returns the states, the epochs run, the
        per-epoch sums and each row's last epoch (``halted_at``: E when it did not stop)."""
        # Train and eval sums are both metric sums of a batch (train_step's and eval_step's): their
        # shapes come from one replica's eval step, traced alone (tracing an epoch costs far more).
        rows = indices.shape[0]
        sums = jax.eval_shape(lambda state, x, y, w: evaluate_one(jax.tree.map(lambda a: a[0], state), {"x": x, "y": y, "weight": w}),
                              states, *(a[0] for a in arrays[2:]))
        if jax.default_backend() == "cpu":  # one replica after the other (its loss does not depend on the others'), skipping frozen rows
            def evaluate_all(states, live, *data):
                skip = jax.tree.map(jnp.zeros_like, sums)
                return jax.lax.map(lambda x: jax.lax.cond(x[1], lambda s: eval_one(s, *data), lambda s: skip, x[0]), (states, live))
        else:
            def evaluate_all(states, live, *data):
                return jax.vmap(eval_one, in_axes=(0, None, None, None))(states, *data)
        eval_shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct((rows,) + a.shape, a.dtype), sums)
        outputs = jax.tree.map(lambda a: jnp.zeros((indices.shape[1],) + a.shape, a.dtype), (eval_shapes, eval_shapes))

        def cond(carry):
            j, _, _, _, _, _, stop = carry
            return (j < plan["n"]) & ~stop

        def body(carry):
            j, states, outputs, best, counter, halted_at, _ = carry
            on = active[:, j] & (halted_at >= j)[:, None]  # a row that stopped is frozen from the next epoch on
            states, train_sums = one_epoch(states, indices[:, j], weights[:, j], on, arrays)
            if jax.tree.map(lambda a: (a.shape, a.dtype), train_sums) != jax.tree.map(lambda a: (a.shape, a.dtype), eval_shapes):
                raise AssertionError("the train step's metric sums are not shaped like the eval step's")
            evaluated, ran = plan["evaluated"][j], on.any(axis=1)
            eval_sums = jax.lax.cond(
                evaluated, lambda s: evaluate_all(s, ran, *arrays[2:]), lambda s: jax.tree.map(jnp.zeros_like, eval_shapes), states
            )
            # the loop's rule on the loss that the host computes (float32 mean of the sums)
            loss = eval_sums["loss"] / jnp.maximum(eval_sums["count"], 1.0)
            new_best, new_counter, stops = early_stopping_update(best, counter, loss, plan["patience"])
            update = ran & evaluated & (plan["patience"] >= 0)
            best, counter = jnp.where(update, new_best, best), jnp.where(update, new_counter, counter)
            # a diverged loss stops that replica too (the loop's rule, per replica)
            def diverged(train, eval_loss):
                return diverged_loss(train["loss"] / jnp.maximum(train["count"], 1.0), plan["diverge"]) | diverged_loss(eval_loss, plan["diverge"])

            diverging = ran & jax.vmap(diverged)(train_sums, loss)
            halted_at = jnp.where((update & stops & (j + 1 < plan["left"])) | diverging, j, halted_at)
            # back to the host once END_SHARE of the rows stopped (it leaves them out), or every row
            running = jnp.sum(plan["real"] & (halted_at > j))
            stop = (running == 0) | ((rows > 2) & (running <= rows * (1 - END_SHARE)))
            outputs = jax.tree.map(lambda o, v: o.at[j].set(v), outputs, (train_sums, eval_sums))
            return j + 1, states, outputs, best, counter, halted_at, stop

        never = jnp.full((rows,), indices.shape[1], jnp.int32)
        start = (jnp.int32(0), states, outputs, plan["best"], plan["counter"], never, jnp.bool_(False))
        j, states, outputs, _, _, halted_at, _ = jax.lax.while_loop(cond, body, start)
        return states, j, outputs, halted_at

    return epochs


@memoize
def _epochs_program(model, tx, objective, preprocess, mask_forward: bool):
    """:func:`_vmapped_epochs` jitted (traced once per row count, compiled per device).
    Replicas are split over the devices by running this program on each device
    with its rows (a partitioned program would round differently from one
    device; this gives the same numbers on every device count)."""
    return jax.jit(_vmapped_epochs(model, tx, objective, preprocess, mask_forward), donate_argnums=(0,))


def _groups(running: list[int], total: int, devices: int) -> list[list[int]]:
    """The running replicas split over at most ``devices`` groups of two or more rows
    each (one group when there is one replica: a vmap of one row rounds differently)."""
    count = max(1, min(devices, len(running) // 2))
    size = -(-len(running) // count)
    return [running[i : i + size] for i in range(0, len(running), size)]


def _bucket(rows: int, total: int) -> int:
    """Program rows for ``rows`` running replicas: 2, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, ... (1 alone)."""
    if total == 1 or rows <= 4:
        return 1 if total == 1 else max(2, 1 << max(rows - 1, 0).bit_length())
    step = 1 << max((rows - 1).bit_length() - 3, 0)
    return -(-rows // step) * step


class VmappedEpochs:
    """All replicas' epochs, evaluation and early stopping in one compiled program.

    The train step is ``jax.vmap``-ed over the replicas and ``lax.scan``-ed over
    the steps of an epoch; a chunk's epochs (by default the whole schedule up to
    128 epochs, fewer for large datasets) run in a ``lax.while_loop``, with the
    datasets placed on the devices once. The epoch orders are drawn on the host
    by the dataset's seeded rule (the data-parallel executor's batches). A
    replica that stops is frozen in its row; the chunk ends once ``END_SHARE`` of
    its rows stopped, and later chunks leave it out (row counts of :func:`_bucket`,
    padded with frozen copies). With several local devices the running replicas
    are split over them, two rows or more each, every device running the same
    program (on a CPU one device per core: :func:`lth_jax.parallel.cpu_devices_per_core`).
    Steps before a replica's start (a resumed replica) are frozen. On a CPU an MLP
    runs at the hidden widths of :class:`lth_jax.models.mlp.WidthPadding` (``pad_widths``).
    ``executed_steps[r]`` counts the steps replica ``r`` was trained for by this
    executor, ``padding_steps`` the steps of padding rows.
    """

    MAX_CHUNK_EPOCHS, CHUNK_BYTES = 128, 32 << 20  # the default chunk: epochs, and bytes of epoch orders per replica
    ORDER_CACHE_BYTES = 256 << 20  # epoch orders kept for the next levels (and as much again stacked)

    def __init__(self, model, tx, objective, train_data, eval_data, config: TrainConfig, *, preprocess=None, mask_forward=False,
                 eval_chunk: int = 10_000, chunk_epochs: int | None = None, pad_widths: bool | None = None):
        self.train_data, self.config = train_data, config
        if pad_widths is None:  # an MLP runs at hidden widths that XLA's CPU dots handle faster, its extra units pruned
            pad_widths = jax.default_backend() == "cpu"
        self._padding = WidthPadding.for_model(model) if pad_widths else None
        model = model if self._padding is None else self._padding.model
        self.steps_per_epoch = train_data.steps_per_epoch(config.batch_size, config.drop_remainder)
        if chunk_epochs is None:  # a level in one call when it fits, the epoch orders of a chunk under ~32 MB per replica
            per_epoch = self.steps_per_epoch * config.batch_size * 8
            chunk_epochs = max(1, min(config.epochs, self.MAX_CHUNK_EPOCHS, self.CHUNK_BYTES // per_epoch))
        self.max_epochs = int(chunk_epochs)
        self.arrays = (np.asarray(train_data.x), np.asarray(train_data.y)) + padded_chunks(eval_data, eval_chunk)
        self._program = _epochs_program(model, tx, objective, preprocess, mask_forward)
        self.devices = jax.local_devices() if jax.process_count() == 1 else jax.local_devices()[:1]
        self._placed: dict = {}
        self._orders = EpochOrders(train_data, config.batch_size, config.drop_remainder, self.ORDER_CACHE_BYTES)
        self._host = None
        self.executed_steps: np.ndarray | None = None
        self.padding_steps = 0

    def check_rewind(self, rewind_step: int | None) -> None:
        if rewind_step is not None and rewind_step % self.steps_per_epoch:
            raise UserError(
                f"rewind step {rewind_step} is not at an epoch boundary ({self.steps_per_epoch} steps per epoch); "
                "vmapped replicas rewind to the end of an epoch"
            )

    def start(self, states: Sequence[TrainState]):
        self.executed_steps = np.zeros(len(states), np.int64)
        states = [s.replace(params=apply_mask(s.params, s.mask)) for s in jax.device_get(list(states))]
        return _stack(states if self._padding is None else map(self._padding.pad, states))

    def _to_host(self, carry):
        if self._host is None or self._host[0] is not carry:
            self._host = (carry, jax.device_get(carry))
        return self._host[1]

    def state(self, carry, r: int) -> TrainState:
        """Replica ``r``'s state, as host arrays (the carry is copied to the host once)."""
        state = _unstack(self._to_host(carry), r)
        return state if self._padding is None else self._padding.unpad(state)

    def _arrays(self, device):
        if device not in self._placed:
            self._placed[device] = jax.device_put(self.arrays, device)
        return self._placed[device]

    def _inputs(self, rows, real: int, epoch, n_epochs, starts, data_seeds):
        config, spe, chunk = self.config, self.steps_per_epoch, self.max_epochs
        indices = np.zeros((len(rows), chunk, spe, config.batch_size), np.int32)
        weights = np.zeros((len(rows), chunk, spe, config.batch_size), np.float32)
        active = np.zeros((len(rows), chunk, spe), bool)
        for i, r in enumerate(rows[:real]):
            indices[i, :n_epochs], weights[i, :n_epochs] = self._orders.block(data_seeds[r], epoch, n_epochs)
            active[i, :n_epochs] = True
            active[i, 0] = np.arange(epoch * spe, (epoch + 1) * spe) >= starts[r]
        return indices, weights, active

    def epochs(self, carry, epoch, n_epochs, starts, data_seeds, *, evaluated, stopping, rewind_step, capture):
        """Up to ``n_epochs`` epochs from ``epoch`` of the replicas whose ``starts`` is a step.

        ``stopping``: ``(best_losses, counters, patience, divergence_loss)`` of every replica. Returns
        ``(carry, [(train_sums, eval_sums) per epoch], seconds per epoch)``, each sums
        list with one entry per replica (None where a replica did not run that epoch:
        a replica that does not run, or one of a device whose chunk ended earlier).
        """
        total, chunk = len(starts), self.max_epochs
        if not 1 <= n_epochs <= chunk:
            raise ValueError(f"n_epochs={n_epochs} is outside [1, {chunk}]")
        running = [r for r, s in enumerate(starts) if s is not None]
        best, counters, patience, divergence_loss = stopping
        flags = np.array(list(evaluated) + [False] * (chunk - len(evaluated)), bool)
        began, launched = time.perf_counter(), []
        groups = _groups(running, total, len(self.devices))
        whole = len(groups) == 1 and _bucket(len(running), total) == total and running == list(range(total))
        host = None if whole else self._to_host(carry)
        for device, group in zip(self.devices, groups):
            rows = group + [group[0]] * (_bucket(len(group), total) - len(group))  # padding: frozen copies
            part = carry if whole else jax.tree.map(lambda a: a[np.asarray(rows)], host)
            indices, weights, active = self._inputs(rows, len(group), epoch, n_epochs, starts, data_seeds)
            plan = {
                "n": np.int32(n_epochs), "evaluated": flags, "patience": np.int32(-1 if patience is None else patience),
                "best": np.array([best[r] for r in rows], np.float32), "counter": np.array([counters[r] for r in rows], np.int32),
                "left": np.int32(self.config.epochs - epoch),
                "diverge": np.float32(np.inf if divergence_loss is None else divergence_loss),
                "real": np.arange(len(rows)) < len(group),
            }
            inputs = jax.device_put((part, indices, weights, active, plan), device)
            launched.append((group, rows, active, self._program(*inputs[:4], self._arrays(device), inputs[4])))
        results = jax.device_get([out for *_, out in launched])
        if not whole:
            full = jax.tree.map(np.array, host)
        out = [([None] * total, [None] * total) for _ in range(max(int(result[1]) for result in results))]
        for (group, rows, active, result), (states, ran, (train_out, eval_out), halted_at) in zip(launched, results):
            ran = int(ran)
            last = np.minimum(np.asarray(halted_at), ran - 1)  # each row's last epoch run
            if whole:
                carry = result[0]
            else:
                for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(states)):
                    a[np.asarray(group)] = b[: len(group)]
            executed = np.array([active[i, : last[i] + 1].sum() for i in range(len(rows))])
            self.executed_steps[group] += executed[: len(group)]
            self.padding_steps += (len(rows) - len(group)) * int(active[:, :ran].sum(axis=(1, 2)).max(initial=0))
            train_leaves, train_def = jax.tree.flatten(train_out)
            eval_leaves, eval_def = jax.tree.flatten(eval_out)
            for j in range(ran):
                for i, r in ((i, r) for i, r in enumerate(group) if j <= last[i]):
                    out[j][0][r] = train_def.unflatten([leaf[j, i] for leaf in train_leaves])
                    out[j][1][r] = eval_def.unflatten([leaf[j, i] for leaf in eval_leaves]) if evaluated[j] else None
        seconds = (time.perf_counter() - began) / max(len(out), 1)
        return (carry if whole else full), out, [seconds] * total


def build_executor(model, tx, objective, train_data, eval_data, config: TrainConfig, *, vmap: bool, mesh=None, preprocess=None):
    """The executor of a run: every replica in one program (``vmap``: in-memory datasets only),
    or each replica's steps data-parallel over ``mesh``."""
    args = (model, tx, objective, train_data, eval_data, config)
    if not vmap:
        return DataParallelEpochs.build(*args, mesh=mesh, preprocess=preprocess)
    if not all(hasattr(d, "x") for d in (train_data, eval_data)):
        raise UserError("vmapped seeds need in-memory datasets (with x and y arrays); train streaming data with vmap=False")
    return VmappedEpochs(*args, preprocess=preprocess)
