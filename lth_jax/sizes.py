"""What a run needs and how it can fail: memory for its parameters and seeds, checked before anything
is allocated; divergence of a level's training, checked when it ends."""

from __future__ import annotations

import math
import os

import jax

from lth_jax.errors import UserError

__all__ = ["BYTES_PER_PARAMETER", "memory_bytes", "check_memory", "DIVERGENCE_FACTOR", "divergence"]

# Per parameter and replica while a level trains: the parameters, gradients, the optimizer's two
# moments, the mask, the initialization kept for the reset and the trained copy kept for the prune
# (float32), with margin.
BYTES_PER_PARAMETER = 40


def memory_bytes() -> int:
    """The memory one run may use: the host's physical memory, and an accelerator's limit where JAX reports one."""
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    stats = jax.local_devices()[0].memory_stats() or {}
    return min(limit, stats.get("bytes_limit", limit))


def check_memory(parameters: int, replicas: int, given: str, available: int | None = None) -> None:
    """Refuse (``UserError`` naming ``given``, the setting as the user typed it) a model of
    ``parameters`` parameters trained as ``replicas`` seeds that cannot fit in memory."""
    need = parameters * BYTES_PER_PARAMETER * replicas
    available = memory_bytes() if available is None else available
    if need > available:
        raise UserError(f"{given} makes a model of {parameters:,} parameters: about {need / 2**30:,.1f} GiB for "
                        f"{replicas} seeds, more than the {available / 2**30:,.1f} GiB of memory here; "
                        "choose a smaller network or fewer seeds")


# A loss this many times the loss of chance-level predictions means that training blew up.
DIVERGENCE_FACTOR = 100.0


def divergence(record: dict, chance_loss: float) -> str | None:
    """Why a level's training diverged (its train or eval loss not finite, or above
    ``DIVERGENCE_FACTOR`` times ``chance_loss``), or ``None``."""
    for key, value in sorted(record.items()):
        if key.endswith("_loss") and isinstance(value, (int, float)):
            if not math.isfinite(value) or value > DIVERGENCE_FACTOR * chance_loss:
                return f"{key.replace('_', ' ')} {value:.4g}"
    return None
