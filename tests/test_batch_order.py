"""batch_order: each seed of a parallel-task run on its own epoch order (the default, independent
runs) or every seed on one shared order (the thesis's code), through the engine, the packed sweeps
and resume."""

import json

import jax
import numpy as np
import pytest

from lth_jax import fidelity, thesis_sweep
from lth_jax.data.arrays import ArrayDataset
from lth_jax.errors import UserError
from lth_jax.executors import VmappedEpochs
from lth_jax.parallel_tasks import ThesisConfig, run_parallel_tasks, run_parallel_tasks_pack
from lth_jax.rng import SHARED_ORDER_BLOCK, Streams
from lth_jax.tickets import load_ticket

QUIET = dict(log_fn=lambda line: None)
SHARED = (0, SHARED_ORDER_BLOCK, 0, 0)  # the shared order's seed at data seed 0
EPOCHS = 3


def tiny(**overrides) -> ThesisConfig:
    """Two seeds × two levels (72 → 40 weights) of a narrow Moons+Circles MLP, every epoch trained."""
    base = dict(extension_level=None, shape=(4, 6, 6, 2), levels=1, target=40, rate=None, seeds=(0, 1), epochs=EPOCHS,
                patience=None, learning_rate=1e-2, stop_on_degradation=False)
    return ThesisConfig(**{**base, **overrides})


def record_orders(mp) -> list:
    """``(data seed, epoch, indices)`` of every replica-epoch the vmapped executor feeds."""
    seen = []
    inputs = VmappedEpochs._inputs

    def recording(self, rows, real, epoch, n_epochs, starts, data_seeds):
        indices, weights, active = inputs(self, rows, real, epoch, n_epochs, starts, data_seeds)
        seen.extend((tuple(data_seeds[r]), epoch + j, indices[i, j].copy()) for i, r in enumerate(rows[:real]) for j in range(n_epochs))
        return indices, weights, active

    mp.setattr(VmappedEpochs, "_inputs", recording)
    return seen


@pytest.fixture(scope="module")
def solo(tmp_path_factory):
    """A shared-order run and a default run of :func:`tiny`, each with the orders its replicas trained on."""
    runs = {}
    for name, config in (("shared", tiny(batch_order="shared")), ("default", tiny())):
        with pytest.MonkeyPatch.context() as mp:
            orders = record_orders(mp)
            workdir = tmp_path_factory.mktemp(name)
            run_parallel_tasks(config, workdir, **QUIET)
        runs[name] = (workdir, orders)
    return runs


def masks(workdir) -> dict:
    return {(s, lv): load_ticket(workdir / "imp" / f"seed_{s}" / f"level_{lv:02d}" / "ticket").mask for s in (0, 1) for lv in (0, 1)}


def test_the_replica_order_seeds_and_the_shared_order_is_no_seeds_or_copys():
    assert Streams(3).data_seed(5) == Streams(3).data_seed(5, "per_seed") == (5, 3)  # today's (data_seed, seed)
    assert {Streams(s).data_seed(5, "shared") for s in range(10)} == {(5, SHARED_ORDER_BLOCK, 0, 0)}
    with pytest.raises(ValueError, match="batch_order='random' is not one of 'per_seed', 'shared'"):
        Streams(0).data_seed(0, "random")
    data = ArrayDataset(np.zeros((64, 1), np.float32), np.zeros(64, np.float32))
    order = lambda seed, epoch: data.epoch_indices(64, seed=seed, epoch=epoch)[0].tobytes()  # noqa: E731
    shared = {order(SHARED, e) for e in range(6)}
    seeds = list(range(16)) + [SHARED_ORDER_BLOCK, SHARED_ORDER_BLOCK + 2**32, 2**64]  # the block's words as a seed too
    others = {order((0, s), e) for s in seeds for e in range(6)} | {order(Streams(s).copy_data_seed(0, c), e)
                                                                    for s in range(4) for c in range(4) for e in range(6)}
    assert len(shared) == 6 and not shared & others


def test_shared_seeds_train_on_the_same_batches_at_every_epoch_and_per_seed_ones_do_not(solo):
    for name, seeds in (("shared", {SHARED}), ("default", {(0, 0), (0, 1)})):  # the default: (data_seed, seed) as before
        _, orders = solo[name]
        assert len(orders) == 2 * 2 * EPOCHS and {o[0] for o in orders} == seeds  # 2 seeds × 2 levels × every epoch
        for epoch in range(EPOCHS):
            drawn = [indices.tobytes() for _, e, indices in orders if e == epoch]  # both seeds, both levels
            assert len(drawn) == 4 and len(set(drawn)) == (1 if name == "shared" else 2), (name, epoch)
    shared, default = (masks(solo[name][0]) for name in ("shared", "default"))
    assert not all(jax.tree.all(jax.tree.map(np.array_equal, shared[s, 1], default[s, 1])) for s in (0, 1))  # other batches, other tickets


def test_the_default_is_per_seed_and_gives_the_same_results(solo, tmp_path):
    run_parallel_tasks(tiny(batch_order="per_seed"), tmp_path, **QUIET)
    for name in ("metrics.jsonl", "summary.json"):
        assert (tmp_path / name).read_text() == (solo["default"][0] / name).read_text()
    assert json.loads((tmp_path / "config.json").read_text())["experiment"]["batch_order"] == "per_seed"


def test_the_run_records_the_order_and_a_workdir_refuses_to_resume_with_the_other(solo):
    shared, default = solo["shared"][0], solo["default"][0]
    assert json.loads((shared / "config.json").read_text())["experiment"]["batch_order"] == "shared"
    assert json.loads((shared / "imp" / "seed_1" / "settings.json").read_text())["batch_order"] == "shared"
    # per_seed is left out of the recorded settings: workdirs made before the option resume
    assert "batch_order" not in json.loads((default / "settings.json").read_text())["experiment"]
    assert "batch_order" not in json.loads((default / "imp" / "seed_1" / "settings.json").read_text())
    for workdir, asked in ((shared, "per_seed"), (default, "shared")):
        before = {p: p.read_bytes() for p in workdir.rglob("*.json*")}
        with pytest.raises(UserError, match=r"holds a run with experiment\.batch_order=") as refused:
            run_parallel_tasks(tiny(batch_order=asked), workdir, **QUIET)
        assert "\n" not in str(refused.value) and "'shared'" in str(refused.value)
        assert {p: p.read_bytes() for p in workdir.rglob("*.json*")} == before  # nothing written


def test_a_pack_of_both_orders_trains_each_seeds_level_0_per_order(solo, tmp_path, monkeypatch):
    orders = record_orders(monkeypatch)
    run_parallel_tasks_pack([(tiny(batch_order="shared"), tmp_path / "shared"), (tiny(), tmp_path / "default")], **QUIET)
    assert {o[0] for o in orders if o[1] == 0} == {SHARED, (0, 0), (0, 1)}
    assert len(orders) == 2 * 2 * 2 * EPOCHS  # level 0 of a seed is not shared between the orders
    for name in ("shared", "default"):
        mine, alone = masks(tmp_path / name), masks(solo[name][0])
        assert all(jax.tree.all(jax.tree.map(np.array_equal, mine[k], alone[k])) for k in mine), name


def test_shared_without_vmap_feeds_every_seed_the_shared_order(tmp_path, monkeypatch):
    seen = []
    indices = ArrayDataset.epoch_indices
    recording = lambda self, *a, seed=None, **k: seen.append(seed) or indices(self, *a, seed=seed, **k)  # noqa: E731
    monkeypatch.setattr(ArrayDataset, "epoch_indices", recording)
    run_parallel_tasks(tiny(batch_order="shared", vmap=False, epochs=2), tmp_path, **QUIET)
    assert {tuple(s) for s in seen if s is not None} == {SHARED} and len([s for s in seen if s is not None]) == 2 * 2 * 2


def test_the_configs_of_the_experiment_the_sweeps_and_the_fidelity_harness_take_it(tmp_path, monkeypatch):
    with pytest.raises(UserError, match=r"^batch_order='random' is not one of 'per_seed', 'shared'$"):
        ThesisConfig(batch_order="random")
    sweep = thesis_sweep.default_config("e4")
    assert sweep.experiment.batch_order == "per_seed"
    sweep.experiment.batch_order = "shared"
    assert ThesisConfig.from_config(sweep.experiment).batch_order == "shared"
    c = fidelity.default_config()
    assert c.experiment.batch_order == "per_seed"
    c.points, c.seeds, c.experiment.batch_order = ("ext3",), 2, "shared"
    bases = []

    class Stop(Exception):
        pass

    def stop(points, seeds, workdir, *, base, log_fn):
        bases.append(base)
        raise Stop

    monkeypatch.setattr(fidelity, "run_lth_jax", stop)
    with pytest.raises(Stop):
        fidelity.run(c, tmp_path)
    assert bases[0].batch_order == "shared" and bases[0].epochs == 3000
    c.experiment.batch_order = "random"
    with pytest.raises(UserError, match="batch_order='random'"):
        fidelity.run(c, tmp_path)
