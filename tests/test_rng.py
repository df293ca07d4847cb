"""lth_jax.rng: every random draw of a seed comes from its own stream, and no two streams share a key."""

import jax
import numpy as np

from lth_jax.rng import RANDOM_TICKET_BLOCK, Streams


def words(keys) -> set[int]:
    return set(np.asarray(keys).reshape(-1).tolist())


def test_step_keys_never_meet_the_random_tickets_or_the_initialization():
    """The per-step keys once folded steps into the seed's root key, where random
    tickets drew from ``fold_in(root, 1_000_003 + level)``: the key of step
    1_000_003 + level was the random ticket's key, and step 2 shared the words of
    the initialization's keys."""
    streams = Streams(7)
    near = np.concatenate([np.arange(0, 1000), np.arange(RANDOM_TICKET_BLOCK - 1000, RANDOM_TICKET_BLOCK + 1000)]).astype(np.uint32)
    steps = jax.vmap(lambda s: jax.random.fold_in(streams.steps(), s))(near)  # where the old stream collided
    step_words = words(steps)
    tickets = np.stack([streams.random_ticket(level) for level in range(40)])
    assert not words(tickets) & step_words  # the random tickets of levels 0-39
    with jax.threefry_partitionable(False):  # as the initialization draws them
        init = jax.random.split(streams.init())
    assert not words(init) & step_words
    assert not words(init) & words(tickets)
    assert len({tuple(np.asarray(k)) for k in steps}) == len(steps)  # and the steps among themselves


def test_streams_keep_the_initialization_and_the_random_tickets_of_earlier_runs():
    root = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(Streams(3).init(), root)
    np.testing.assert_array_equal(Streams(3).random_ticket(5), jax.random.fold_in(root, 1_000_003 + 5))
    assert not np.array_equal(Streams(3).steps(), root)
    assert not np.array_equal(Streams(3).random_ticket(5), Streams(4).random_ticket(5))
