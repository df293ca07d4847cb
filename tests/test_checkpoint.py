import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lth_jax import masks
from lth_jax.checkpoint import StateCheckpoints, is_complete, load_tree, save_tree, tree_meta
from lth_jax.errors import UserError
from lth_jax.models import MLP
from lth_jax.optim import OptimizerRecipe, make_optimizer
from lth_jax.results import read_jsonl, write_json, write_jsonl
from lth_jax.tickets import Ticket, is_ticket, load_ticket, save_ticket
from lth_jax.train import create_train_state, init_variables


def test_ticket_round_trip(tmp_path):
    params, _ = init_variables(MLP((4, 8, 2)), jax.random.PRNGKey(0), np.zeros((1, 4), np.float32))
    mask = masks.global_magnitude_prune(params, masks.init_mask(params), fraction=0.5)
    ticket = Ticket(mask, masks.apply_mask(params, mask), {}, {"model": "mlp", "level": 3, "weights_remaining": 24})
    save_ticket(tmp_path / "ticket", ticket)
    assert is_ticket(tmp_path / "ticket") and not is_ticket(tmp_path)
    assert json.loads((tmp_path / "ticket" / "ticket.json").read_text()) == ticket.info  # readable metadata
    loaded = load_ticket(tmp_path / "ticket")
    assert loaded.info == ticket.info and loaded.batch_stats == {}
    for a, b in zip(jax.tree.leaves((ticket.mask, ticket.params)), jax.tree.leaves((loaded.mask, loaded.params))):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(UserError, match="is not a ticket directory"):
        load_ticket(tmp_path)


def test_state_checkpoints_keep_optax_types_and_only_the_latest(tmp_path):
    params, _ = init_variables(MLP((4, 8, 2)), jax.random.PRNGKey(0), np.zeros((1, 4), np.float32))
    tx = make_optimizer(OptimizerRecipe(name="adam", learning_rate=1e-3), 1, 10)
    state = create_train_state(params, tx, step=3)
    ckpt = StateCheckpoints(tmp_path / "ckpt")
    assert ckpt.restore(state) is None
    ckpt.save(state, {"history": [1]})
    later = state.replace(step=jnp.asarray(4, jnp.int32), params=jax.tree.map(lambda p: p + 1, state.params))
    ckpt.save(later, {"history": [1, 2]})
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["4"]  # orbax's step directory of the latest
    restored, progress = ckpt.restore(state)
    assert progress == {"history": [1, 2]} and int(restored.step) == 4
    assert jax.tree.structure(restored) == jax.tree.structure(state)  # NamedTuple optimizer states survive
    for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(later.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ckpt.clear()
    assert not (tmp_path / "ckpt").exists()


def test_tree_artifacts_keep_dtypes_structure_and_empty_collections(tmp_path):
    tree = {
        "params": {"Dense_0": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "bias": np.zeros(3, np.float16)}},
        "mask": {"Dense_0": {"kernel": np.array([[True, False, True]] * 2)}},
        "batch_stats": {},
        "rows": [jnp.arange(3, dtype=jnp.bfloat16), np.int32(7), 2.5],
    }
    save_tree(tmp_path / "t", tree, {"level": 1})
    loaded = load_tree(tmp_path / "t")
    assert loaded["batch_stats"] == {} and isinstance(loaded["rows"], list)
    assert jax.tree.structure(loaded) == jax.tree.structure(jax.tree.map(np.asarray, tree))
    for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(loaded)):
        assert isinstance(b, np.ndarray) and np.asarray(a).dtype == b.dtype and np.shape(a) == b.shape
        np.testing.assert_array_equal(np.asarray(a), b)
    # A target gives the target's structure (optax's NamedTuples too) and checks shapes.
    state = make_optimizer(OptimizerRecipe(name="adam", learning_rate=1e-3), 1, 10).init({"w": np.ones(3, np.float32)})
    save_tree(tmp_path / "opt", jax.tree.map(np.asarray, {"s": list(jax.tree.leaves(state))}))
    restored = load_tree(tmp_path / "opt", {"s": state})["s"]
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    with pytest.raises(ValueError, match=r"shape \(3,\) where the target has \(4,\)"):
        load_tree(tmp_path / "t", {**tree, "params": {"Dense_0": {"kernel": np.zeros((2, 3)), "bias": np.zeros(4)}}})


def test_tree_artifacts_refuse_what_they_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match=r"tree\['x'\] is a NoneType"):
        save_tree(tmp_path / "a", {"x": None})
    with pytest.raises(ValueError, match="PRNG key array: save jax.random.key_data"):
        save_tree(tmp_path / "b", {"rng": jax.random.key(0)})
    with pytest.raises(ValueError, match="string dict keys; tree has the key 3"):
        save_tree(tmp_path / "c", {3: np.zeros(1)})


def test_artifacts_written_by_orbax_are_still_read(tmp_path):
    """Tree artifacts of earlier lth_jax versions: orbax arrays in ``arrays/``."""
    import orbax.checkpoint as ocp

    tree = {"mask": {"k": np.array([True, False])}, "params": {"k": np.array([1.5, 0.0], np.float32)}}
    ocp.Checkpointer(ocp.StandardCheckpointHandler()).save(tmp_path / "ticket" / "arrays", tree)
    write_json(tmp_path / "ticket" / "ticket.json", {"level": 2})
    loaded = load_tree(tmp_path / "ticket", name="ticket")
    np.testing.assert_array_equal(np.asarray(loaded["params"]["k"]), [1.5, 0.0])
    np.testing.assert_array_equal(np.asarray(load_tree(tmp_path / "ticket", tree, name="ticket")["mask"]["k"]), [True, False])


def test_save_tree_replaces_and_load_tree_reports_missing(tmp_path):
    save_tree(tmp_path / "a", {"x": np.arange(3)}, {"step": 3})
    save_tree(tmp_path / "a", {"x": np.arange(4)}, {"step": 4})
    assert np.asarray(load_tree(tmp_path / "a")["x"]).tolist() == [0, 1, 2, 3] and tree_meta(tmp_path / "a") == {"step": 4}
    with pytest.raises(FileNotFoundError, match="no complete checkpoint at"):
        load_tree(tmp_path / "missing")


def test_a_tree_is_complete_only_when_its_json_is_written(tmp_path, monkeypatch):
    """A crash between the arrays and the JSON leaves an incomplete artifact that is
    never read, and a replaced artifact is incomplete until it is written again."""
    from lth_jax import checkpoint, results

    save_tree(tmp_path / "a", {"x": np.arange(3)})

    def crash(*args):
        raise KeyboardInterrupt  # like a kill: no cleanup

    monkeypatch.setattr(results, "_replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_tree(tmp_path / "a", {"x": np.arange(5)})
    assert not is_complete(tmp_path / "a")  # new arrays, no JSON: not readable as complete
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        load_tree(tmp_path / "a")
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "a").iterdir() if p.name.endswith(".tmp")]  # the kill left a temporary
    results.remove_temporaries(tmp_path / "a")
    save_tree(tmp_path / "a", {"x": np.arange(5)})
    assert np.asarray(load_tree(tmp_path / "a")["x"]).tolist() == list(range(5))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["a.json", "arrays.npz"]
    assert checkpoint.is_complete(tmp_path / "a")


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
    rows = [{"level": 0, "acc": np.float32(0.5)}, {"level": 1, "shape": (2, 3), "é": float("nan"), "set": {4}, "a": np.arange(2)}]
    write_jsonl(tmp_path / "m.jsonl", rows)
    assert read_jsonl(tmp_path / "m.jsonl")[0] == {"level": 0, "acc": 0.5}
    from lth_jax.results import _json_default

    # the lines json.dumps writes (one encoder for every line, not one built per line)
    assert (tmp_path / "m.jsonl").read_text() == "".join(json.dumps(r, default=_json_default) + "\n" for r in rows)


def test_the_environment_asks_git_once_a_process_and_hands_out_copies(monkeypatch):
    import subprocess

    from lth_jax import results

    calls, run = [], subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: calls.append(args) or run(args, **kw))
    results.git_state.cache_clear()
    first = results.environment()
    first["git"]["commit"], first["packages"]["jax"] = "changed", "changed"
    second = results.environment()
    assert [args[3] for args in calls if args[0] == "git"] == ["ls-files", "rev-parse", "status"]  # once
    assert second["git"]["commit"] != "changed" and second["packages"]["jax"] != "changed"
