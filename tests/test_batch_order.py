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
from lth_jax.rng import SHARED_ORDER_BLOCK, SHARED_ORDERS, Streams, order_name
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


def record_epoch_seeds(mp) -> list:
    """The ``seed`` of every epoch order the single-replica executor draws (``None``: unshuffled, the evaluation)."""
    seen = []
    indices = ArrayDataset.epoch_indices
    mp.setattr(ArrayDataset, "epoch_indices", lambda self, *a, seed=None, **k: seen.append(seed) or indices(self, *a, seed=seed, **k))
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


def harness_call(c, workdir, monkeypatch) -> dict:
    """The arguments :func:`lth_jax.fidelity.run` of config ``c`` gives ``run_lth_jax`` (stopped there: nothing trains)."""
    calls = []

    def stop(points, seeds, workdir, **kwargs):
        calls.append(dict(points=points, seeds=list(seeds), workdir=workdir, **kwargs))
        raise KeyboardInterrupt

    monkeypatch.setattr(fidelity, "run_lth_jax", stop)
    with pytest.raises(KeyboardInterrupt):
        fidelity.run(c, workdir)
    return calls[0]


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
    seen = record_epoch_seeds(monkeypatch)
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
    base = harness_call(c, tmp_path, monkeypatch)["base"]
    assert base.batch_order == "shared" and base.epochs == 3000
    c.experiment.batch_order = "random"
    with pytest.raises(UserError, match="batch_order='random'"):
        fidelity.run(c, tmp_path)



@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    """Shared orders 1 and 0 of :func:`tiny` in one pack, with the orders its replicas trained on."""
    workdir = tmp_path_factory.mktemp("numbered")
    with pytest.MonkeyPatch.context() as mp:
        orders = record_orders(mp)
        run_parallel_tasks_pack([(tiny(batch_order="shared", shared_order=1), workdir / "one"),
                                 (tiny(batch_order="shared", shared_order=0), workdir / "zero")], **QUIET)
    return workdir, orders


def test_shared_orders_are_numbered_and_differ_in_every_epoch_from_each_other_and_from_every_seeds():
    assert order_name("shared") == order_name("shared", 0) == "shared" and order_name("shared", 3) == "shared:3"
    assert order_name("per_seed") == "per_seed"
    assert Streams(4).data_seed(5, "shared") == (5, SHARED_ORDER_BLOCK, 0, 0)  # order 0: the order "shared" always gave
    assert {Streams(s).data_seed(5, "shared:1") for s in range(4)} == {(5, SHARED_ORDER_BLOCK, 1, 0)}
    for bad in ("shared:", "per_seed:", "shared:0", "shared:01", "shared:-1", "shared:x", "per_seed:1", f"shared:{SHARED_ORDERS}"):
        with pytest.raises(ValueError, match=f"batch_order={bad!r} is not one of 'per_seed', 'shared' or 'shared:K'"):
            Streams(0).data_seed(0, bad)
    data = ArrayDataset(np.zeros((64, 1), np.float32), np.zeros(64, np.float32))
    order = lambda seed, epoch: data.epoch_indices(64, seed=seed, epoch=epoch)[0].tobytes()  # noqa: E731
    orders = {k: {order(Streams(0).data_seed(0, order_name("shared", k)), e) for e in range(6)} for k in range(4)}
    seeds = [(0, s) for s in [*range(16), SHARED_ORDER_BLOCK + 2**32, SHARED_ORDER_BLOCK + 2 * 2**32]]  # the words ..., BLOCK, K as a seed
    others = {order(s, e) for s in seeds for e in range(6)} | {order(Streams(s).copy_data_seed(0, c), e)
                                                               for s in range(4) for c in range(4) for e in range(6)}
    assert all(len(orders[k]) == 6 and not orders[k] & others for k in orders)
    assert all(not orders[a] & orders[b] for a in orders for b in orders if a < b)


def test_order_0_is_bit_identical_to_the_shared_run_before_numbers_and_order_1_trains_and_records_its_own(solo, numbered):
    workdir, orders = numbered
    assert {o[0] for o in orders} == {SHARED, (0, SHARED_ORDER_BLOCK, 1, 0)} and len(orders) == 2 * 2 * 2 * EPOCHS  # level 0 per order
    zero, one, before = workdir / "zero", workdir / "one", solo["shared"][0]
    for name in ("metrics.jsonl", "summary.json", "settings.json", "imp/seed_1/settings.json"):
        assert (zero / name).read_text() == (before / name).read_text(), name
    shared, other = masks(zero), masks(one)
    assert not all(jax.tree.all(jax.tree.map(np.array_equal, shared[s, 1], other[s, 1])) for s in (0, 1))
    assert json.loads((one / "settings.json").read_text())["experiment"]["shared_order"] == 1
    assert json.loads((one / "imp" / "seed_0" / "settings.json").read_text())["batch_order"] == "shared:1"


def test_a_refused_resume_names_both_orders_never_none(solo, numbered):
    shared, default, one = solo["shared"][0], solo["default"][0], numbered[0] / "one"
    per_seed, order = "experiment.batch_order='per_seed'", "experiment.batch_order='shared', experiment.shared_order={}".format
    for workdir, asked, held, wanted in ((shared, {}, order(0), per_seed), (default, {"batch_order": "shared"}, per_seed, order(0)),
                                         (default, {"batch_order": "shared", "shared_order": 2}, per_seed, order(2)),
                                         (one, {"batch_order": "shared"}, order(1), order(0))):
        before = {p: p.read_bytes() for p in workdir.rglob("*.json*")}
        with pytest.raises(UserError) as refused:
            run_parallel_tasks(tiny(**asked), workdir, **QUIET)
        assert f"holds a run with {held}; this run asks {wanted}. Use another workdir" in str(refused.value)
        assert "None" not in str(refused.value) and "\n" not in str(refused.value)
        assert {p: p.read_bytes() for p in workdir.rglob("*.json*")} == before


def test_shared_order_is_checked_and_taken_by_the_configs(tmp_path, monkeypatch):
    for bad, message in ((-1, "shared_order=-1 is not an integer from 0 to 65535"), (SHARED_ORDERS, "shared_order=65536 is not an integer"),
                         ("1", "shared_order='1' is not an integer")):
        with pytest.raises(UserError, match=f"^{message}"):
            ThesisConfig(batch_order="shared", shared_order=bad)
    with pytest.raises(UserError, match=r"^shared_order=2 numbers the orders of batch_order='shared', not of 'per_seed'$"):
        ThesisConfig(shared_order=2)
    sweep = thesis_sweep.default_config("e4")
    sweep.experiment.batch_order, sweep.experiment.shared_order = "shared", 3
    assert ThesisConfig.from_config(sweep.experiment).shared_order == 3
    c = fidelity.default_config()
    c.points, c.seeds, c.experiment.batch_order, c.experiment.shared_order = ("ext3",), 2, "shared", 5
    base = harness_call(c, tmp_path, monkeypatch)["base"]
    assert (base.batch_order, base.shared_order) == ("shared", 5)
    c.experiment.shared_order = -2
    with pytest.raises(UserError, match="shared_order=-2 is not an integer from 0 to 65535"):
        fidelity.run(c, tmp_path)


def test_the_dense_replay_of_a_source_trains_on_the_runs_own_order(tmp_path, monkeypatch):
    from experiments.configs import instability_moons_circles
    from lth_jax import connectivity, instability, objectives
    from lth_jax.data.synthetic import moons_circles
    from lth_jax.models import MLP
    from lth_jax.optim import OptimizerRecipe, make_optimizer
    from lth_jax.train import TrainConfig, init_variables

    data, model = moons_circles(), MLP((4, 6, 2))
    config = TrainConfig(epochs=2, batch_size=250, optimizer=OptimizerRecipe(name="adam", learning_rate=1e-2), log_every_epochs=0)
    spe = data.train.steps_per_epoch(250)
    tx = make_optimizer(config.optimizer, spe, 2 * spe)
    params, _ = init_variables(model, Streams(3).init(), data.train.x[:1])
    seen = record_epoch_seeds(monkeypatch)
    for batch_order, expected in (("per_seed", (0, 3)), ("shared:1", (0, SHARED_ORDER_BLOCK, 1, 0))):
        seen.clear()
        connectivity.trunk_states(model, objectives.sigmoid_tasks(2), data.train, data.test, config, tx, [spe + 1], seed=3,
                                  params0=params, batch_stats0={}, batch_order=batch_order, log_fn=lambda line: None)
        assert {tuple(s) for s in seen if s is not None} == {expected}, batch_order
    asked = []  # the instability experiment replays a parallel-task source on its run's order

    def trunk(*args, batch_order, **kwargs):
        asked.append(batch_order)
        raise KeyboardInterrupt

    monkeypatch.setattr(connectivity, "trunk_states", trunk)
    c = instability_moons_circles.get_config()
    c.recipe.update(seeds=(0,), extension_level=1, epochs=2, batch_order="shared", shared_order=2)
    c.levels, c.rewind_steps = (0,), "0,1ep"
    with pytest.raises(KeyboardInterrupt):
        instability.run(c, tmp_path, log_fn=lambda line: None)
    assert asked == ["shared:2"]
