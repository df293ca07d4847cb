"""Timing helpers shared by the benchmark scripts (JSON lines on stdout)."""

from __future__ import annotations

import json
import platform
import statistics
import time
from datetime import date
from typing import Callable

import jax
import jax.numpy as jnp
import optax


def machine() -> dict:
    return {
        "date": date.today().isoformat(),
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        "device_kind": jax.devices()[0].device_kind,
        "processor": platform.processor() or platform.machine(),
        "jax": jax.__version__,
    }


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def interleaved(functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, calls interleaved so that machine noise hits all alike.

    Each function must block until its result is ready.
    """
    for _ in range(warmup):
        for fn in functions.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def unmasked_step_fn(model, objective, recipe, steps: int, preprocess=None):
    """The reference for the mask's overhead: ``lth_jax.train.train_step`` with every
    mask operation taken out (same randomness, preprocessing, weighted loss, metric
    sums, batch statistics and optimizer chain). ``step(params, batch_stats,
    opt_state, step, batch) -> (params, batch_stats, opt_state, step, sums)``."""
    from lth_jax.optim import learning_rate_schedule, scale_by_learning_rate_at_step
    from lth_jax.train import model_apply

    parts = [optax.add_decayed_weights(recipe.weight_decay)] if recipe.weight_decay else []
    parts += [optax.trace(decay=recipe.momentum)] if recipe.name == "sgd" else [optax.scale_by_adam()]
    tx = optax.chain(*parts, scale_by_learning_rate_at_step(learning_rate_schedule(recipe, 1, steps)))

    @jax.jit
    def step(params, batch_stats, opt_state, step, batch):
        aug_key, dropout_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), step))
        x = batch["x"] if preprocess is None else preprocess(batch["x"], aug_key, True)
        weight = jnp.ones(batch["y"].shape[0], jnp.float32)

        def loss_fn(p):
            logits, new_stats = model_apply(model, p, batch_stats, x, train=True, rng=dropout_key)
            per_example = objective.loss(logits, batch["y"])
            return jnp.sum(per_example * weight) / jnp.sum(weight), (logits, per_example, new_stats)

        (_, (logits, per_example, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params, step=step)
        sums = {"loss": jnp.sum(per_example * weight), "count": jnp.sum(weight)}
        sums["accuracy"] = jnp.sum((jnp.argmax(logits, -1) == batch["y"]) * weight)
        return optax.apply_updates(params, updates), new_stats, opt_state, step + 1, sums

    return tx, step
