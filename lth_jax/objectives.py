"""Losses and metrics on logits.

An :class:`Objective` gives, per example, the loss and the metrics; the train and
eval steps weight and sum them (padding examples have weight 0), so epoch
averages are exact. Metrics of multi-task objectives are per task (shape
``[batch, tasks]``) and are reported as one value per task.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from lth_jax.errors import UserError

__all__ = ["Objective", "softmax_classification", "sigmoid_tasks", "softmax_tasks"]


@dataclasses.dataclass(frozen=True)
class Objective:
    """``loss(logits, labels) -> [batch]``; ``metrics(logits, labels) -> {name: [batch] or [batch, tasks]}``."""

    name: str
    loss: Callable[[jax.Array, jax.Array], jax.Array]
    metrics: Callable[[jax.Array, jax.Array], dict]
    num_outputs: int | None = None  # logits per example, when fixed by the objective


# The factories are cached: equal objectives are the same object, so the jitted
# steps that close over them are compiled once per process.


@functools.lru_cache(maxsize=None)
def softmax_classification() -> Objective:
    """Softmax cross-entropy with integer labels; accuracy."""

    def loss(logits, labels):
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)

    def metrics(logits, labels):
        return {"accuracy": (jnp.argmax(logits, -1) == labels).astype(jnp.float32)}

    return Objective("softmax_classification", loss, metrics)


@functools.lru_cache(maxsize=None)
def sigmoid_tasks(num_tasks: int) -> Objective:
    """One logit per binary task; sigmoid cross-entropy averaged over tasks
    (the thesis's Moons+Circles loss). Prediction: logit > 0; accuracy per task."""
    if num_tasks < 1:
        raise UserError(f"num_tasks={num_tasks} must be >= 1")

    def loss(logits, labels):
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype)), axis=-1)

    def metrics(logits, labels):
        return {"accuracy": ((logits > 0) == (labels > 0.5)).astype(jnp.float32)}

    return Objective(f"sigmoid_tasks({num_tasks})", loss, metrics, num_outputs=num_tasks)


def softmax_tasks(classes_per_task: Sequence[int]) -> Objective:
    """Logits split into consecutive groups, one softmax per task; cross-entropy
    averaged over tasks (the thesis's MNIST+Fashion loss); accuracy per task."""
    return _softmax_tasks(tuple(int(c) for c in classes_per_task))


@functools.lru_cache(maxsize=None)
def _softmax_tasks(classes: tuple[int, ...]) -> Objective:
    classes_per_task = classes
    if not classes or min(classes) < 2:
        raise UserError(f"classes_per_task={classes_per_task!r} needs at least one task of >= 2 classes")
    splits = [sum(classes[: i + 1]) for i in range(len(classes) - 1)]

    def loss(logits, labels):
        parts = jnp.split(logits, splits, axis=-1)
        per_task = [optax.softmax_cross_entropy_with_integer_labels(p, labels[..., t]) for t, p in enumerate(parts)]
        return jnp.mean(jnp.stack(per_task, axis=-1), axis=-1)

    def metrics(logits, labels):
        parts = jnp.split(logits, splits, axis=-1)
        hits = [jnp.argmax(p, -1) == labels[..., t] for t, p in enumerate(parts)]
        return {"accuracy": jnp.stack(hits, axis=-1).astype(jnp.float32)}

    return Objective(f"softmax_tasks({','.join(map(str, classes))})", loss, metrics, num_outputs=sum(classes))
