"""Data parallelism with ``jax.jit``, a 1-D ``Mesh`` and ``NamedSharding``.

The batch is sharded along the mesh axis ``'data'``; the train state is
replicated. Under ``jit`` the program is written for the global batch, so means
(the loss, BatchNorm statistics) are over the global batch and gradients are
all-reduced by the compiler. This is what ``pmap`` gives, in the form current JAX
recommends. Multi-host: each process passes its local slice of the batch and
:func:`put_batch` assembles the global array.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lth_jax.errors import UserError

DATA_AXIS = "data"

__all__ = ["DATA_AXIS", "data_mesh", "replicated", "batch_sharding", "put_replicated", "put_batch", "shard_kwargs", "check_batch_size"]


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all devices, of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
    )


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raise ``ValueError`` unless the global batch splits evenly over the mesh."""
    n = mesh.devices.size
    if batch_size % n:
        raise UserError(f"batch_size={batch_size} is not divisible by the {n} devices of the mesh")


def put_replicated(tree: Any, mesh: Mesh, *, copy: bool = False) -> Any:
    """Place every leaf of ``tree`` on every device of ``mesh``.

    ``copy=True`` never aliases the input buffers (use it before donating the
    result to a jitted step, so that the caller's arrays survive).
    """
    return jax.device_put(tree, replicated(mesh), may_alias=False if copy else None)


def shard_kwargs() -> dict:
    """``{"shard": (process_index, process_count)}`` for a dataset's ``batches`` when
    several processes feed one global batch; ``{}`` with one process."""
    if jax.process_count() == 1:
        return {}
    return {"shard": (jax.process_index(), jax.process_count())}


def put_batch(batch: dict, mesh: Mesh) -> dict:
    """Shard a batch (numpy arrays, leading axis = examples) over ``mesh``.

    With one process the arrays are the global batch; with several, each process
    passes its own slice and the global batch is their concatenation.
    """
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)
