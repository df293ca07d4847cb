"""What a run needs and how it can fail: memory for its parameters and seeds, checked before anything
is allocated; divergence of a level's training (a loss NaN, infinite or far above chance stops the
training loop at that epoch; :class:`Divergences` then stops the run at that level, in one line)."""

from __future__ import annotations

import functools
import math
import os
import shutil

import jax

from lth_jax.errors import UserError

__all__ = ["BYTES_PER_PARAMETER", "memory_bytes", "check_memory", "disk_bytes", "free_disk_bytes", "check_disk",
           "activation_values", "DIVERGENCE_FACTOR", "divergence", "Divergences"]

# Per parameter and replica while a level trains: the parameters, gradients, the optimizer's two
# moments, the mask, the initialization kept for the reset and the trained copy kept for the prune
# (float32), with margin.
BYTES_PER_PARAMETER = 40


def _size(n: float) -> str:
    """``n`` bytes for a person: ``512 KiB``, ``3.2 GiB``."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit in ("bytes", "KiB") else f"{n:,.1f} {unit}"
        n /= 1024


def memory_bytes() -> int:
    """The memory one run may use: the host's physical memory, and an accelerator's limit where JAX reports one."""
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    stats = jax.local_devices()[0].memory_stats() or {}
    return min(limit, stats.get("bytes_limit", limit))


def check_memory(parameters: int, replicas: int, given: str, available: int | None = None, activation_bytes: int = 0) -> None:
    """Refuse (``UserError`` naming ``given``, the setting as the user typed it) a model of
    ``parameters`` parameters trained as ``replicas`` seeds (with ``activation_bytes`` for a
    batch's activations on one device) that cannot fit in memory."""
    need = parameters * BYTES_PER_PARAMETER * replicas + activation_bytes
    available = memory_bytes() if available is None else available
    if need > available:
        what = f"{replicas} seeds" + (f" and {_size(activation_bytes)} of a batch's activations" if activation_bytes else "")
        raise UserError(f"{given} makes a model of {parameters:,} parameters: about {_size(need)} for {what}, "
                        f"more than the {_size(available)} of memory here; choose a smaller "
                        f"{'network, batch' if activation_bytes else 'network'} or fewer seeds")


def activation_values(model, example_x) -> int:
    """Values one example's forward pass computes in ``model`` (every submodule's output, as
    ``capture_intermediates`` sees them): what training keeps for the backward pass, per example.
    Abstract: nothing is computed or allocated; cached per model and input shape."""
    x = jax.ShapeDtypeStruct((1,) + tuple(example_x.shape[1:]), example_x.dtype)
    try:
        return _activation_values(model, x)
    except TypeError:  # a module with unhashable attributes: not cached
        return _activation_values.__wrapped__(model, x)


@functools.lru_cache(maxsize=64)
def _activation_values(model, example_x) -> int:
    def forward(x):
        variables = model.init(jax.random.PRNGKey(0), x, train=False)
        out, state = model.apply(variables, x, train=True, capture_intermediates=True, mutable=["intermediates", "batch_stats"])
        return state["intermediates"]

    shapes = jax.eval_shape(forward, example_x)
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))


# What a level writes per seed: its ticket (weights and mask) and trained weights as .npz, with margin; one line
# of history.jsonl per epoch; the JSON records, settings and TensorBoard events. A run: its figures and summaries.
DISK_BYTES_PER_PARAMETER, DISK_BYTES_PER_EPOCH, DISK_BYTES_PER_LEVEL, DISK_BYTES_PER_RUN = 12, 400, 16 << 10, 2 << 20


def disk_bytes(parameters: int, levels: int, replicas: int, epochs: int) -> int:
    """Bytes a run of ``levels`` levels of ``replicas`` seeds writes, at most (every level trained
    for all ``epochs``), with one train-state checkpoint per seed (parameters, optimizer moments)."""
    per_level = parameters * DISK_BYTES_PER_PARAMETER + epochs * DISK_BYTES_PER_EPOCH + DISK_BYTES_PER_LEVEL
    return DISK_BYTES_PER_RUN + replicas * (levels * per_level + parameters * BYTES_PER_PARAMETER // 2)


def free_disk_bytes(workdir: str | os.PathLike) -> int:
    """Free bytes on the file system that holds (or will hold) ``workdir``."""
    path = os.path.abspath(os.fspath(workdir))
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def _written(workdir: str | os.PathLike) -> int:
    path = os.fspath(workdir)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files) if os.path.isdir(path) else 0


def check_disk(parameters: int, levels: int, replicas: int, epochs: int, workdir: str | os.PathLike, given: str,
               free: int | None = None) -> None:
    """Refuse (``UserError`` naming ``given``) a run whose levels would not fit on the disk of
    ``workdir`` (what the workdir already holds counts as written)."""
    need = disk_bytes(parameters, levels, replicas, epochs) - _written(workdir)
    free = free_disk_bytes(workdir) if free is None else free
    if need > free:
        raise UserError(f"{given} writes up to {_size(need)} to {workdir} ({levels} levels × {replicas} seeds of "
                        f"{parameters:,} parameters), more than the {_size(free)} free there; "
                        "choose a smaller network, fewer levels or seeds, or another --workdir")


# A loss this many times the loss of chance-level predictions means that training blew up.
DIVERGENCE_FACTOR = 100.0


def divergence(record: dict, chance_loss: float) -> str | None:
    """Why a level's training diverged, or ``None``: a train or eval loss of its record not
    finite or above ``DIVERGENCE_FACTOR`` times ``chance_loss``, or its ``diverged`` flag (the
    training loop stopped it at that epoch, evaluated or not: see :class:`lth_jax.loop.FitProgress`)."""
    for key, value in sorted(record.items()):
        if key.endswith("_loss") and isinstance(value, (int, float)):
            if not math.isfinite(value) or value > DIVERGENCE_FACTOR * chance_loss:
                return f"{key.replace('_', ' ')} {value:.4g}"
    if record.get("diverged"):
        return (f"stopped at epoch {record.get('epochs')} by the divergence rule "
                f"(a loss NaN, infinite or above {DIVERGENCE_FACTOR:g} × chance)")
    return None


class Divergences:
    """The levels of a run whose training diverged (:func:`divergence`), the first of each seed,
    and the one line that ends such a run. ``limit``: the loss at which the training loop stops
    a level (``divergence_loss``), ``DIVERGENCE_FACTOR`` times ``chance_loss``."""

    def __init__(self, chance_loss: float):
        self.chance_loss = chance_loss
        self.limit = DIVERGENCE_FACTOR * chance_loss
        self.first: dict[int, tuple[int, str]] = {}

    def check(self, seed: int, level: int, record: dict) -> bool:
        """Whether ``level`` of ``seed`` (its ``record``) diverged: then the run stops that seed,
        as pruning its weights would rank NaNs or noise."""
        reason = divergence(record, self.chance_loss)
        if reason is not None:
            self.first.setdefault(seed, (level, reason))
        return reason is not None

    def raise_first(self, learning_rate: str, seeds: int = 1) -> None:
        """Raise the ``UserError`` of the first seed that diverged, if any, naming ``learning_rate``
        (the setting as the user gives it) and, of several ``seeds``, how many diverged."""
        if self.first:
            seed, (level, reason) = min(self.first.items())
            several = f"; {len(self.first)} of {seeds} seeds diverged" if seeds > 1 else ""
            raise UserError(f"seed {seed} diverged at level {level} ({reason}{several}): lower {learning_rate} "
                            "and use a new workdir; the levels before it are kept")
