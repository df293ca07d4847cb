import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lth_jax import masks
from lth_jax.checkpoint import StateCheckpointer, Ticket, is_ticket, load_ticket, load_tree, save_ticket, save_tree
from lth_jax.models import MLP
from lth_jax.optim import OptimizerRecipe, make_optimizer
from lth_jax.results import read_jsonl, write_json, write_jsonl
from lth_jax.train import create_train_state, init_variables


def test_ticket_round_trip(tmp_path):
    params, _ = init_variables(MLP((4, 8, 2)), jax.random.PRNGKey(0), np.zeros((1, 4), np.float32))
    mask = masks.global_magnitude_prune(params, masks.init_mask(params), fraction=0.5)
    ticket = Ticket(mask, masks.apply_mask(params, mask), {}, {"model": "mlp", "level": 3, "weights_remaining": 24})
    save_ticket(tmp_path / "t", ticket)
    assert is_ticket(tmp_path / "t") and not is_ticket(tmp_path)
    loaded = load_ticket(tmp_path / "t")
    assert loaded.info == ticket.info and loaded.batch_stats == {}
    for a, b in zip(jax.tree.leaves((ticket.mask, ticket.params)), jax.tree.leaves((loaded.mask, loaded.params))):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(FileNotFoundError, match="is not a ticket directory"):
        load_ticket(tmp_path)


def test_state_checkpointer_keeps_optax_types_and_only_the_latest(tmp_path):
    params, _ = init_variables(MLP((4, 8, 2)), jax.random.PRNGKey(0), np.zeros((1, 4), np.float32))
    tx = make_optimizer(OptimizerRecipe(name="adam", learning_rate=1e-3), 1, 10)
    state = create_train_state(params, tx, step=3)
    ckpt = StateCheckpointer(tmp_path / "ckpt")
    assert ckpt.restore(state) is None
    ckpt.save(state, {"history": [1]})
    later = state.replace(step=jnp.asarray(4, jnp.int32), params=jax.tree.map(lambda p: p + 1, state.params))
    ckpt.save(later, {"history": [1, 2]})
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["latest.json", "step_4", "step_4.json"]
    restored, progress = ckpt.restore(state)
    assert progress == {"history": [1, 2]} and int(restored.step) == 4
    assert jax.tree.structure(restored) == jax.tree.structure(state)  # NamedTuple optimizer states survive
    for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(later.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ckpt.clear()
    assert not (tmp_path / "ckpt").exists()


def test_save_tree_replaces_and_load_tree_reports_missing(tmp_path):
    save_tree(tmp_path / "a", {"x": np.arange(3)})
    save_tree(tmp_path / "a", {"x": np.arange(4)})
    assert np.asarray(load_tree(tmp_path / "a")["x"]).tolist() == [0, 1, 2, 3]
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_tree(tmp_path / "missing")


def test_json_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    write_json(path, {"a": 1})
    real_replace = os.replace

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_json(path, {"a": 2, "big": list(range(1000))})
    monkeypatch.setattr(os, "replace", real_replace)
    assert json.loads(path.read_text()) == {"a": 1}  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind
    write_jsonl(tmp_path / "m.jsonl", [{"level": 0, "acc": np.float32(0.5)}, {"level": 1, "shape": (2, 3)}])
    assert read_jsonl(tmp_path / "m.jsonl") == [{"level": 0, "acc": 0.5}, {"level": 1, "shape": [2, 3]}]
