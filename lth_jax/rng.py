"""Named random streams: every random draw of a seed comes from one of them.

A seed's root key is ``PRNGKey(seed)``. Threefry is a keyed hash of a counter
block, so keys hashed from the root at distinct counter blocks are independent;
each stream owns its blocks and no two streams share one:

- ``init``: the initialization, the classic-threefry ``split(root)`` (counter
  blocks ``(0, 2)`` and ``(1, 3)``; ``fold_in(root, d)`` hashes block ``(0, d)``);
  ``init("target_own")``, a transfer target's own IMP run:
  ``fold_in(root, TARGET_OWN_BLOCK)``, independent of the source's;
- ``steps``: the base of the per-step keys, ``fold_in(root, STEPS_BLOCK)``; step
  ``s`` draws from ``fold_in(steps, s)`` (augmentation, dropout), a subtree of
  its own;
- ``random_ticket(level)``: the fresh initialization and the permutation of the
  random ticket of ``level``, ``fold_in(root, RANDOM_TICKET_BLOCK + level)``;
- ``copy_steps(c)``: the per-step stream of copy ``c`` of an instability analysis
  (``fold_in(steps, COPY_BLOCK + c)``), and ``copy_data_seed(data_seed, c)`` its
  epoch order (the numpy seed ``(data_seed, seed, COPY_BLOCK, c)``; the run's own
  order is ``(data_seed, seed)``): two copies differ in these streams only.
- ``data_seed(data_seed, batch_order)``: the epoch order of the seed's IMP run, its own
  ``(data_seed, seed)`` (``batch_order="per_seed"``), or with ``"shared"`` the
  run's one order ``(data_seed, SHARED_ORDER_BLOCK, 0, 0)``, the same for every
  seed (as the thesis's code draws its batches). numpy seeds an order with the
  32-bit words of ``[*seed, epoch]`` (it refuses negative ints; an int of several
  words ends in a nonzero one), so no ``(data_seed, seed)`` at an epoch below
  2**32, and no copy, gives the words ``..., SHARED_ORDER_BLOCK, 0, 0, epoch``:
  the shared order is no seed's own. ``"shared:K"`` (:func:`order_name`) is the
  run's shared order ``K`` (``(data_seed, SHARED_ORDER_BLOCK, K, 0)``; ``"shared"``
  is order 0): orders that differ in nothing else, the data included. ``K`` stays
  below ``SHARED_ORDERS``, far below ``COPY_BLOCK``, so the same argument holds.

Why not ``split(root, 3)``: it would change the initialization of every run
made so far. The streams are kept where they were (the initialization and the
random tickets); only the per-step stream moved out of the root's counter
range, where its keys used to coincide with the random tickets' (step
``1_000_003 + level``) and the key of step 2 shared its words with the
initialization keys.
"""

from __future__ import annotations

import dataclasses

import jax

__all__ = ["STEPS_BLOCK", "RANDOM_TICKET_BLOCK", "COPY_BLOCK", "TARGET_OWN_BLOCK", "SHARED_ORDER_BLOCK", "SHARED_ORDERS", "INIT_ROLES",
           "BATCH_ORDERS", "order_name", "Streams"]

STEPS_BLOCK = 0x7374_6570  # "step": far above every random-ticket block
RANDOM_TICKET_BLOCK = 1_000_003
COPY_BLOCK = 0x636F_7079  # "copy"
TARGET_OWN_BLOCK = 0x7461_7267  # "targ": above the steps block, so no random-ticket level reaches it
INIT_ROLES = ("source", "target_own")  # whose initialization a run draws
SHARED_ORDER_BLOCK = 0x7368_7264  # "shrd": the epoch order every seed of a run shares (batch_order="shared")
BATCH_ORDERS = ("per_seed", "shared")  # whose epoch order a seed of an IMP run trains on
SHARED_ORDERS = 1 << 16  # shared orders 0..SHARED_ORDERS-1 (batch_order="shared:K")


def order_name(batch_order: str, shared_order: int = 0) -> str:
    """The epoch order that :meth:`Streams.data_seed` takes (and an IMP run records): ``"per_seed"``,
    ``"shared"`` (shared order 0, as before orders had numbers) or ``"shared:K"`` (shared order ``K``)."""
    return f"shared:{int(shared_order)}" if batch_order == "shared" and int(shared_order) else batch_order


@dataclasses.dataclass(frozen=True)
class Streams:
    """The random streams of one seed."""

    seed: int

    @property
    def root(self) -> jax.Array:
        return jax.random.PRNGKey(int(self.seed))

    def init(self, role: str = "source") -> jax.Array:
        """The key of the initialization (``init_variables`` splits it): a run's own (``source``), or
        a transfer target's own IMP run (``target_own``), drawn independently of the source's."""
        if role not in INIT_ROLES:
            raise ValueError(f"init role {role!r} is not one of {', '.join(INIT_ROLES)}")
        return self.root if role == "source" else jax.random.fold_in(self.root, TARGET_OWN_BLOCK)

    def steps(self) -> jax.Array:
        """The base key of the per-step stream (``TrainState.rng``)."""
        return jax.random.fold_in(self.root, STEPS_BLOCK)

    def random_ticket(self, level: int) -> jax.Array:
        """The key of the random ticket of ``level`` (its initialization and permutation)."""
        if not 0 <= int(level) < STEPS_BLOCK - RANDOM_TICKET_BLOCK:
            raise ValueError(f"level={level} is outside the random-ticket blocks")
        return jax.random.fold_in(self.root, RANDOM_TICKET_BLOCK + int(level))

    def copy_steps(self, copy: int) -> jax.Array:
        """The per-step stream of copy ``copy`` of an instability analysis (a subtree of ``steps``)."""
        return jax.random.fold_in(self.steps(), COPY_BLOCK + int(copy))

    def copy_data_seed(self, data_seed: int, copy: int) -> tuple[int, int, int, int]:
        """The epoch-order seed of copy ``copy`` (the run's own order is ``(data_seed, seed)``)."""
        return (int(data_seed), self.seed, COPY_BLOCK, int(copy))

    def data_seed(self, data_seed: int, batch_order: str = "per_seed") -> tuple[int, ...]:
        """The epoch-order seed of this seed's IMP run: its own ``(data_seed, seed)``, or with
        ``batch_order="shared"`` (``"shared:K"``) the run's one order (order ``K``), the same for every seed (see the module)."""
        kind, colon, index = str(batch_order).partition(":")
        numbered = kind == "shared" and index.isdigit() and index == str(int(index)) and 0 < int(index) < SHARED_ORDERS
        if kind not in BATCH_ORDERS or (colon and not numbered):
            raise ValueError(f"batch_order={batch_order!r} is not one of {', '.join(map(repr, BATCH_ORDERS))} "
                             f"or 'shared:K' (K from 1 to {SHARED_ORDERS - 1})")
        return (int(data_seed), self.seed) if kind == "per_seed" else (int(data_seed), SHARED_ORDER_BLOCK, int(index or 0), 0)
