"""What makes runs fast, checked by what is executed (never by timing): few compiled
programs, no steps for replicas that stopped, replicas spread over the devices
with the numbers of one device, a fast start."""

import json

import jax
import numpy as np
import pytest
from conftest import run_python

from lth_jax import objectives
from lth_jax.data.arrays import EpochOrders
from lth_jax.data.synthetic import moons_circles
from lth_jax.executors import VmappedEpochs, _bucket, _groups
from lth_jax.loop import Replica, fit_replicas
from lth_jax.models import MLP
from lth_jax.models.mlp import WidthPadding
from lth_jax.optim import OptimizerRecipe, make_optimizer
from lth_jax.train import TrainConfig, create_train_state, init_variables

# Programs compiled by a 10-level thesis run (1 seed): initialization, the train
# state, the epochs program, the random keys, the schedule; not one per leaf shape.
COMPILATION_BOUND = 12


def test_a_ten_level_thesis_run_compiles_a_handful_of_programs():
    out = run_python(
        """
        import json, tempfile, jax
        programs = []
        def listen(name, duration, **kwargs):
            if name == "/jax/core/compile/jaxpr_to_mlir_module_duration":
                programs.append(name)
        jax.monitoring.register_event_duration_secs_listener(listen)
        from lth_jax.parallel_tasks import ThesisConfig, run_parallel_tasks
        config = ThesisConfig(epochs=3, patience=None, stop_on_degradation=False, seeds=(0,))
        run_parallel_tasks(config, tempfile.mkdtemp(), log_fn=lambda line: None)
        print(json.dumps({"programs": len(programs)}))
        """
    ).stdout
    counted = json.loads(out.strip().splitlines()[-1])
    assert 3 <= counted["programs"] <= COMPILATION_BOUND, counted


def test_a_thesis_level_is_one_visit_of_the_host(monkeypatch, tmp_path):
    """A level of up to 128 epochs without early stopping runs as one call of the
    epochs program: the host prunes, writes and analyses once per level."""
    from lth_jax.parallel_tasks import ThesisConfig, run_parallel_tasks

    calls = []
    real = VmappedEpochs.epochs

    def counted(self, carry, epoch, n_epochs, *args, **kwargs):
        calls.append(n_epochs)
        return real(self, carry, epoch, n_epochs, *args, **kwargs)

    monkeypatch.setattr(VmappedEpochs, "epochs", counted)
    config = ThesisConfig(extension_level=2, epochs=80, patience=None, stop_on_degradation=False, seeds=(0, 1))
    summary = run_parallel_tasks(config, tmp_path, log_fn=lambda line: None)
    levels = len(summary["trajectory"])
    assert calls == [80] * levels


def _replicas(seeds, patience, epochs=40, learning_rate=3e-2, optimizer="adam", shape=(4, 16, 16, 2)):
    data = moons_circles()
    model = MLP(shape)
    config = TrainConfig(epochs=epochs, batch_size=200, optimizer=OptimizerRecipe(name=optimizer, learning_rate=learning_rate),
                         early_stopping_patience=patience, log_every_epochs=0)
    spe = data.train.steps_per_epoch(config.batch_size)
    tx = make_optimizer(config.optimizer, spe, epochs * spe)
    objective = objectives.sigmoid_tasks(2)
    replicas = [Replica(create_train_state(init_variables(model, jax.random.PRNGKey(s), data.train.x[:1])[0], tx), (0, s)) for s in seeds]
    return model, tx, objective, data, config, replicas, spe


def test_replicas_that_stopped_are_not_trained_further():
    model, tx, objective, data, config, replicas, spe = _replicas(range(4), patience=3)
    executor = VmappedEpochs(model, tx, objective, data.train, data.test, config, chunk_epochs=8)
    results = fit_replicas(replicas, executor, config, log_fn=lambda line: None)
    steps = [int(r.state.step) for r in results]
    assert any(r.progress.stopped_early for r in results) and len(set(steps)) > 1, steps  # the seeds stop apart
    # every replica was trained for exactly its own steps: none after its stop
    np.testing.assert_array_equal(executor.executed_steps, steps)
    assert executor.padding_steps <= sum(max(steps) - s for s in steps)


def test_frozen_rows_are_not_evaluated_and_the_running_rows_are_unchanged(monkeypatch):
    model, tx, objective, data, config, replicas, spe = _replicas(range(4), patience=3, epochs=12)
    executor = VmappedEpochs(model, tx, objective, data.train, data.test, config, chunk_epochs=12)
    executor.devices = executor.devices[:1]
    raw, program = [], executor._program
    monkeypatch.setattr(executor, "_program", lambda *args: raw.append(program(*args)) or raw[-1])
    carry = executor.start([r.state for r in replicas])
    stopping = ([-np.inf, np.inf, np.inf, np.inf], [0] * 4, 3, None)  # row 0 never improves: it stops after epoch 3
    carry, chunk, _ = executor.epochs(carry, 0, 12, [0] * 4, [r.data_seed for r in replicas], evaluated=[True] * 12,
                                      stopping=stopping, rewind_step=None, capture=None)
    _, ran, (_, eval_out), halted_at = jax.device_get(raw[0])
    assert int(halted_at[0]) == 2 and int(ran) == 12 and [train[0] is None for train, _ in chunk] == [False] * 3 + [True] * 9
    assert np.all(eval_out["count"][3:, 0] == 0) and np.all(eval_out["count"][:, 1:] == len(data.test))  # frozen: not evaluated
    alone = fit_replicas(replicas[1:], VmappedEpochs(model, tx, objective, data.train, data.test, config, chunk_epochs=12), config,
                         log_fn=lambda line: None)
    for r, result in enumerate(alone, 1):  # the others' records are those of a run without the frozen row
        assert [e["test_loss"] for e in result.history] == [float(chunk[j][1][r]["loss"] / chunk[j][1][r]["count"]) for j in range(12)]


def test_chunked_epochs_give_the_records_of_one_epoch_per_call():
    model, tx, objective, data, config, replicas, _ = _replicas(range(2), patience=3)
    long = fit_replicas(replicas, VmappedEpochs(model, tx, objective, data.train, data.test, config, chunk_epochs=16), config, log_fn=lambda line: None)
    model, tx, objective, data, config, replicas, _ = _replicas(range(2), patience=3)
    short = fit_replicas(replicas, VmappedEpochs(model, tx, objective, data.train, data.test, config, chunk_epochs=1), config, log_fn=lambda line: None)
    for a, b in zip(long, short):
        assert [{k: v for k, v in r.items() if k != "examples_per_second"} for r in a.history] == \
               [{k: v for k, v in r.items() if k != "examples_per_second"} for r in b.history]
        for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params)):
            np.testing.assert_array_equal(x, y)


def test_epoch_orders_are_the_datasets_rule_kept_as_int32_with_one_weights_array():
    data = moons_circles().train
    steps = data.steps_per_epoch(64)
    orders = EpochOrders(data, 64, False, budget=10 * steps * 64 * 4)  # ten epochs of int32 indices; the weights are not counted
    for epoch in range(12):
        indices, weights = orders.order((0, 1), epoch)
        expected = data.epoch_indices(64, seed=(0, 1), epoch=epoch)
        assert indices.dtype == np.int32 and np.shares_memory(weights, orders._weights)
        np.testing.assert_array_equal(indices, expected[0])
        np.testing.assert_array_equal(weights, expected[1])
    assert len(orders._orders.items) == 10
    block = orders.block((0, 1), 2, 5)
    assert block[0].shape == (5, steps, 64)
    np.testing.assert_array_equal(block[0][1], data.epoch_indices(64, seed=(0, 1), epoch=3)[0])


def test_widths_that_cpu_dots_handle_slowly_are_padded_with_pruned_units():
    assert [getattr(WidthPadding.for_model(MLP(shape)), "padded", None) for shape in ((4, 31, 31, 2), (4, 38, 40, 2), (4, 48, 48, 2), (4, 57, 57, 2), (4, 437, 2), (4, 2046, 2))] \
        == [(4, 32, 32, 2), (4, 40, 40, 2), None, None, (4, 440, 2), None]  # 57 -> 64 adds more than 1/16; 2048 ran slower
    assert WidthPadding.for_model(object()) is None
    model, tx, *_, replicas, _ = _replicas(range(1), patience=None, shape=(4, 31, 38, 2))
    padding = WidthPadding.for_model(model)
    state = jax.device_get(replicas[0].state)
    wide = padding.pad(state)
    assert wide.params["hidden_1"]["kernel"].shape == (32, 40) and wide.opt_state[0].mu["output"]["kernel"].shape == (40, 2)
    assert not wide.mask["hidden_0"]["kernel"][:, 31:].any() and not wide.params["hidden_1"]["bias"][38:].any()
    for a, b in zip(jax.tree.leaves(padding.unpad(wide)), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)


def test_a_padded_executor_trains_the_same_network_and_its_extra_units_stay_pruned():
    results = {}
    for pad in (True, False):
        model, tx, objective, data, config, replicas, _ = _replicas(range(3), patience=None, epochs=6, shape=(4, 31, 31, 2))
        executor = VmappedEpochs(model, tx, objective, data.train, data.test, config, pad_widths=pad)
        results[pad] = fit_replicas(replicas, executor, config, log_fn=lambda line: None)
        trained = executor._host[1]  # the program's last carry (rows stacked), at its own widths
        assert trained.params["hidden_0"]["kernel"].shape == ((3, 4, 32) if pad else (3, 4, 31))
        if pad:  # the extra unit: no weights in or out, no bias, no optimizer moments
            for tree in (trained.params, trained.opt_state[0].mu, trained.opt_state[0].nu):
                assert not (tree["hidden_0"]["kernel"][..., 31].any() or tree["hidden_0"]["bias"][..., 31].any()
                            or tree["hidden_1"]["kernel"][:, 31].any() or tree["hidden_1"]["kernel"][..., 31].any())
            assert trained.params["hidden_0"]["kernel"][..., :31].any()
    for wide, plain in zip(results[True], results[False]):
        assert jax.tree.map(np.shape, wide.state) == jax.tree.map(np.shape, plain.state)  # the model's own widths
        for a, b in zip(jax.tree.leaves(wide.state.params), jax.tree.leaves(plain.state.params)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose([r["test_loss"] for r in wide.history], [r["test_loss"] for r in plain.history], rtol=1e-5)


@pytest.mark.parametrize("running,total,expected", [(4, 4, [[0, 1, 2, 3]]), (1, 1, [[0]]), (3, 8, [[0, 1, 2]])])
def test_groups_keep_two_rows_per_device(running, total, expected):
    assert _groups(list(range(running)), total, devices=1) == expected
    assert all(_bucket(len(g), total) >= min(2, total) for g in expected)


def test_groups_over_two_devices():
    assert _groups([0, 1, 2, 3], 4, devices=2) == [[0, 1], [2, 3]]
    assert _groups([0, 1, 2], 4, devices=2) == [[0, 1, 2]]  # a device of one row would round differently
    assert _bucket(3, 4) == 4 and _bucket(1, 4) == 2 and _bucket(5, 8) == 5 and _bucket(1, 1) == 1


def test_row_buckets_are_four_an_octave_with_under_a_fifth_padding():
    buckets = sorted({_bucket(rows, 1000) for rows in range(1, 513)})
    assert buckets[:12] == [2, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24]
    assert 80 in buckets and 64 in buckets and 128 in buckets  # E4's packs: 160 rows over two devices, then 32 a point
    assert all(rows <= _bucket(rows, 1000) and (rows <= 4 or _bucket(rows, 1000) - rows < _bucket(rows, 1000) / 5) for rows in range(1, 513))
    assert len([b for b in buckets if 64 < b <= 128]) == 4


def test_seeds_spread_over_two_cpu_devices_give_the_masks_of_one_device():
    code = """
        import json, hashlib, jax, numpy as np
        from lth_jax import objectives
        from lth_jax.data.synthetic import moons_circles
        from lth_jax.imp import PruningPlan, run_imp_seeds
        from lth_jax.models import MLP
        from lth_jax.optim import OptimizerRecipe
        from lth_jax.train import TrainConfig
        data = moons_circles()
        config = TrainConfig(epochs=5, batch_size=100, optimizer=OptimizerRecipe(name="adam", learning_rate=1e-2),
                             early_stopping_patience=2, log_every_epochs=0)
        results = run_imp_seeds(MLP((4, 24, 24, 2)), objectives.sigmoid_tasks(2), data.train, data.test, config,
                                PruningPlan(rate=0.5, levels=2), seeds=[0, 1, 2, 3], log_fn=lambda line: None)
        digest = hashlib.sha256()
        for result in results:
            for ticket in result.tickets:
                for leaf in jax.tree.leaves(ticket.mask):
                    digest.update(np.packbits(np.asarray(leaf)).tobytes())
            digest.update(json.dumps([r["test_loss"] for r in result.records]).encode())
        print(len(jax.devices()), digest.hexdigest())
    """
    one = run_python(code, devices=1).stdout.split()[-2:]
    two = run_python(code, devices=2).stdout.split()[-2:]
    assert one[0] == "1" and two[0] == "2"
    assert one[1] == two[1]


def test_cpu_devices_per_core_sets_the_count_before_jax_starts():
    out = run_python(
        """
        import os
        os.environ.pop("XLA_FLAGS", None)
        os.environ["LTH_JAX_CPU_DEVICES"] = "3"
        from lth_jax import parallel
        print(parallel.cpu_devices_per_core())
        import jax
        print(len(jax.devices()))
        print(parallel.cpu_devices_per_core(5))  # the backends run: nothing changes
        """
    ).stdout.split()
    assert out == ["3", "3", "None"]
    bad = run_python(
        """
        import os
        os.environ.pop("XLA_FLAGS", None)
        os.environ["LTH_JAX_CPU_DEVICES"] = "two"
        from lth_jax import parallel
        try:
            parallel.cpu_devices_per_core()
        except Exception as e:
            print(type(e).__name__, e)
        """
    ).stdout
    assert "UserError LTH_JAX_CPU_DEVICES='two' is not a positive integer" in bad


def test_the_thesis_run_imports_only_what_it_uses():
    """Scripts import no figure, dataset or checkpoint library before they need it; the
    thesis job (toy data, no train-state checkpoints) never imports scikit-learn,
    scipy, TFDS or orbax, and matplotlib only to draw its figures."""
    out = run_python(
        """
        import sys, tempfile
        HEAVY = ("sklearn", "scipy", "tensorflow_datasets", "tensorflow", "orbax.checkpoint", "matplotlib")
        import experiments.parallel_tasks, lth_jax.find_ticket, lth_jax.thesis_sweep, lth_jax.transfer
        print(sorted(m for m in HEAVY if m in sys.modules))
        from lth_jax.parallel_tasks import ThesisConfig, run_parallel_tasks
        run_parallel_tasks(ThesisConfig(epochs=2, patience=None, seeds=(0,), extension_level=2), tempfile.mkdtemp(), log_fn=lambda line: None)
        print(sorted(m for m in HEAVY if m in sys.modules))
        """
    ).stdout
    assert out.strip().splitlines()[-2:] == ["[]", "['matplotlib']"]


def test_scripts_keep_the_compilation_cache_by_default(tmp_path):
    import subprocess
    import sys

    from conftest import REPO, script_env

    env = {k: v for k, v in script_env(XDG_CACHE_HOME=str(tmp_path / "cache")).items() if k != "JAX_COMPILATION_CACHE_DIR"}
    command = [sys.executable, "-m", "experiments.parallel_tasks", f"--workdir={tmp_path / 'run'}", "--config.extension_level=1",
               "--config.seeds=0", "--config.epochs=2", "--config.patience=0"]
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    cached = list((tmp_path / "cache" / "lth_jax" / "xla").iterdir())
    assert len(cached) >= 2  # the epochs program and the train state at least
    show = "from experiments import cli; cli.compilation_cache(); import jax; print(repr(jax.config.jax_compilation_cache_dir))"
    off = subprocess.run([sys.executable, "-c", show], cwd=REPO, env={**env, "JAX_COMPILATION_CACHE_DIR": ""},
                         capture_output=True, text=True, timeout=120, check=True)
    assert off.stdout.strip() in ("''", "None")


@pytest.mark.parametrize("optimizer,learning_rate,limit", [("sgd", 1e20, None), ("adam", 1e5, 50.0)])
def test_a_diverging_replica_stops_inside_the_program_at_the_epoch_it_diverges(optimizer, learning_rate, limit):
    """NaN/inf losses (and, with a limit, losses above it) stop a replica after that epoch,
    in the compiled program as in the host's loop: the same epochs, no step after it."""
    from lth_jax.executors import DataParallelEpochs
    from lth_jax.train import diverged_loss

    model, tx, objective, data, config, replicas, spe = _replicas(range(2), patience=None, learning_rate=learning_rate, optimizer=optimizer)
    executor = VmappedEpochs(model, tx, objective, data.train, data.test, config, chunk_epochs=16)
    vmapped = fit_replicas(replicas, executor, config, divergence_loss=limit, log_fn=lambda line: None)
    one = DataParallelEpochs.build(model, tx, objective, data.train, data.test, config, mesh=jax.sharding.Mesh(jax.devices()[:1], ("data",)))
    host = fit_replicas(replicas[:1], one, config, divergence_loss=limit, log_fn=lambda line: None)
    for result in vmapped + host:
        assert result.progress.diverged and not result.progress.stopped_early
        last = result.history[-1]
        assert len(result.history) < config.epochs and diverged_loss([last["train_loss"], last["test_loss"]], limit)
        assert not any(diverged_loss([r["train_loss"], r["test_loss"]], limit) for r in result.history[:-1])
    np.testing.assert_array_equal(executor.executed_steps, [int(r.state.step) for r in vmapped])
    assert len(host[0].history) == len(vmapped[0].history)
