"""Optimizers from a recipe, wrapped so that pruned weights get zero updates.

Two small optax transformations carry the lottery-ticket needs:

- :func:`with_mask` zeroes, at pruned positions, the gradient going into the
  wrapped optimizer, the parameters it sees (so weight decay adds nothing there)
  and the update coming out. A pruned weight that starts at 0 stays exactly 0,
  and an optimizer state that starts at 0 there (a fresh one) stays 0: momentum
  traces and Adam moments only ever accumulate zeros at pruned positions.
  ``optax.masked`` is not this: it selects whole leaves with static booleans and
  passes unselected leaves through unchanged.
- :func:`scale_by_learning_rate_at_step` multiplies by ``-schedule(step)`` where
  ``step`` is the train state's global step, passed at update time. The schedule
  therefore does not live in the optimizer state: after late resetting, a fresh
  optimizer state continues the schedule at the rewind step instead of
  restarting it at 0 (late resetting, Frankle et al. 2019).

Both are ``GradientTransformationExtraArgs``: call
``tx.update(grads, opt_state, params, mask=mask, step=step)``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lth_jax.errors import UserError
from lth_jax.masks import apply_mask

__all__ = [
    "OptimizerRecipe",
    "with_mask",
    "scale_by_learning_rate_at_step",
    "learning_rate_schedule",
    "make_optimizer",
    "mask_optimizer_state",
    "param_like_subtrees",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "piecewise", "cosine")


@dataclasses.dataclass(frozen=True)
class OptimizerRecipe:
    """What the optimizer is; epochs-based schedule fields become steps in :func:`make_optimizer`.

    Attributes:
      name: ``"sgd"`` (heavy-ball momentum, PyTorch semantics), ``"adam"`` or ``"adamw"``.
      learning_rate: base learning rate.
      momentum: SGD momentum (0 for plain SGD); ``nesterov`` for Nesterov momentum.
      weight_decay: for SGD and Adam an L2 term ``wd · w`` added to the gradient
        (PyTorch's ``weight_decay``); for AdamW decoupled decay ``lr · wd · w``.
        Applies to all parameters, as in PyTorch and OpenLTH.
      b1, b2, eps: Adam moments and epsilon.
      schedule: ``"constant"``; ``"step"`` multiplies by ``gamma`` at each of
        ``milestones`` (epochs); ``"piecewise"`` switches to ``values[i]`` at
        ``milestones[i]``; ``"cosine"`` decays to 0 over the whole run.
      warmup_epochs: linear warmup ``lr · min(1, (step + 1) / warmup_steps)``.
    """

    name: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    schedule: str = "constant"
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    values: tuple[float, ...] = ()
    warmup_epochs: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))
        if self.name not in OPTIMIZERS:
            raise UserError(f"optimizer name={self.name!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if not self.learning_rate > 0:
            raise UserError(f"learning_rate={self.learning_rate!r} must be > 0")
        if not 0 <= self.momentum < 1:
            raise UserError(f"momentum={self.momentum!r} is outside [0, 1)")
        if self.weight_decay < 0:
            raise UserError(f"weight_decay={self.weight_decay!r} must be >= 0")
        if self.warmup_epochs < 0:
            raise UserError(f"warmup_epochs={self.warmup_epochs!r} must be >= 0")
        if list(self.milestones) != sorted(self.milestones) or any(m < 0 for m in self.milestones):
            raise UserError(f"milestones={self.milestones} must be non-negative and increasing")
        if self.schedule == "piecewise" and len(self.values) != len(self.milestones):
            raise UserError(
                f"piecewise schedule needs one value per milestone: milestones={self.milestones}, values={self.values}"
            )


def learning_rate_schedule(recipe: OptimizerRecipe, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """The learning rate as a function of the global step."""
    lr = recipe.learning_rate
    boundaries = jnp.asarray([round(m * steps_per_epoch) for m in recipe.milestones], jnp.int32)
    if recipe.schedule == "step":
        levels = jnp.asarray([lr * recipe.gamma**i for i in range(len(recipe.milestones) + 1)], jnp.float32)
    elif recipe.schedule == "piecewise":
        levels = jnp.asarray((lr,) + recipe.values, jnp.float32)
    if recipe.schedule in ("step", "piecewise"):

        def base(step):
            return levels[jnp.searchsorted(boundaries, step, side="right")]

    elif recipe.schedule == "cosine":
        base = optax.cosine_decay_schedule(lr, max(1, total_steps))
    else:

        def base(step):
            return jnp.asarray(lr, jnp.float32)

    warmup_steps = round(recipe.warmup_epochs * steps_per_epoch)
    if warmup_steps <= 0:
        return base

    def warmed(step):
        return base(step) * jnp.minimum(1.0, (step + 1) / warmup_steps)

    return warmed


def scale_by_learning_rate_at_step(schedule: optax.Schedule) -> optax.GradientTransformationExtraArgs:
    """``updates ← −schedule(step) · updates``, with ``step`` given at update time."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None, *, step, **extra_args):
        del params, extra_args
        lr = schedule(step)
        return jax.tree.map(lambda u: (-lr * u).astype(u.dtype), updates), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def with_mask(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """Wrap ``inner`` so that pruned positions (``mask`` False) get zero updates.

    ``update(updates, state, params, *, mask, **extra)``: zeroes gradients and
    params at pruned positions before ``inner``, and its updates after.
    """
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        return inner.init(params)

    def update_fn(updates, state, params=None, *, mask, **extra_args):
        updates = apply_mask(updates, mask)
        if params is not None:
            params = apply_mask(params, mask)
        updates, state = inner.update(updates, state, params, **extra_args)
        return apply_mask(updates, mask), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@functools.lru_cache(maxsize=128)
def make_optimizer(recipe: OptimizerRecipe, steps_per_epoch: int, total_steps: int) -> optax.GradientTransformationExtraArgs:
    """The mask-aware optimizer of ``recipe``; update with ``mask=`` and ``step=``.

    Equal recipes give the same (stateless) transformation, so the jitted steps
    built from it are compiled once per process."""
    parts: list[optax.GradientTransformation] = []
    if recipe.name == "sgd":
        if recipe.weight_decay:
            parts.append(optax.add_decayed_weights(recipe.weight_decay))
        if recipe.momentum:
            parts.append(optax.trace(decay=recipe.momentum, nesterov=recipe.nesterov))
    else:
        if recipe.name == "adam" and recipe.weight_decay:
            parts.append(optax.add_decayed_weights(recipe.weight_decay))
        parts.append(optax.scale_by_adam(b1=recipe.b1, b2=recipe.b2, eps=recipe.eps))
        if recipe.name == "adamw" and recipe.weight_decay:
            parts.append(optax.add_decayed_weights(recipe.weight_decay))
    parts.append(scale_by_learning_rate_at_step(learning_rate_schedule(recipe, steps_per_epoch, total_steps)))
    return with_mask(optax.chain(*parts))


def _mirrors(node: Any, mask: Any) -> bool:
    """Whether ``node`` has the params' tree structure and leaf shapes."""
    if jax.tree.structure(node) != jax.tree.structure(mask):
        return False
    return all(jnp.shape(a) == jnp.shape(b) for a, b in zip(jax.tree.leaves(node), jax.tree.leaves(mask)))


def param_like_subtrees(opt_state: Any, mask: Any) -> list[Any]:
    """The subtrees of ``opt_state`` that mirror the params (momentum traces, Adam moments)."""
    def is_mirror(node):
        return _mirrors(node, mask)

    return [node for node in jax.tree.leaves(opt_state, is_leaf=is_mirror) if is_mirror(node)]


def mask_optimizer_state(opt_state: Any, mask: Any) -> Any:
    """Zero the subtrees of ``opt_state`` that mirror the params at pruned positions.

    Not needed with a fresh state (IMP starts each level with one); use it to keep
    an optimizer state across a pruning step.
    """
    return jax.tree.map(
        lambda node: apply_mask(node, mask) if _mirrors(node, mask) else node,
        opt_state,
        is_leaf=lambda node: _mirrors(node, mask),
    )
