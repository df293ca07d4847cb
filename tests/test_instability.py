"""Linear mode connectivity and instability analysis: exact cases of the curve and the barrier,
the two copies' streams, the recommended rewind step, and the experiment's stages."""

import json
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, script_env

from lth_jax import connectivity, objectives
from lth_jax.data.arrays import ArrayDataset
from lth_jax.data.synthetic import moons_circles
from lth_jax.loop import RewindState
from lth_jax.models import MLP
from lth_jax.models.layers import BATCH_NORM_MOMENTUM, batch_norm
from lth_jax.objectives import Objective
from lth_jax.optim import OptimizerRecipe, make_optimizer
from lth_jax.rng import Streams
from lth_jax.train import TrainConfig, TrainState, evaluate, init_variables, make_eval_step


def _mlp_pair():
    data = moons_circles()
    model = MLP((4, 16, 2))
    x = data.train.x[:1]
    return data, model, init_variables(model, jax.random.PRNGKey(0), x)[0], init_variables(model, jax.random.PRNGKey(1), x)[0]


def test_the_barrier_of_a_network_with_itself_is_zero():
    data, model, params, _ = _mlp_pair()
    curve = connectivity.interpolation_curve(model, objectives.sigmoid_tasks(2), params, params, data.test)
    assert len(curve["alpha"]) == connectivity.ALPHAS and curve["alpha"][0] == 0.0 and curve["alpha"][-1] == 1.0
    assert connectivity.error_barrier(curve["error"]) == 0.0
    np.testing.assert_allclose(curve["loss"], curve["loss"][0], rtol=1e-6)


def test_the_ends_of_the_path_are_the_two_networks():
    data, model, params1, params2 = _mlp_pair()
    for alpha, params in ((0.0, params1), (1.0, params2)):  # bit for bit
        for a, b in zip(jax.tree.leaves(connectivity.interpolate(params1, params2, alpha)), jax.tree.leaves(params)):
            np.testing.assert_array_equal(a, b)
    objective = objectives.sigmoid_tasks(2)
    curve = connectivity.interpolation_curve(model, objective, params1, params2, data.test, alphas=5)
    step = make_eval_step(model, objective)
    for index, params in ((0, params1), (-1, params2)):
        state = TrainState(np.int32(0), params, {}, None, jax.tree.map(lambda a: np.ones(a.shape, bool), params), jax.random.PRNGKey(0))
        alone = evaluate(state, step, data.test, 1000)
        assert curve["accuracy_per_task"][index] == alone["test_accuracy"]  # the same examples right
        np.testing.assert_allclose(curve["loss"][index], alone["test_loss"], rtol=1e-6)


class _Linear(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(1, use_bias=False)(x)


def test_the_loss_along_the_path_of_a_quadratic_is_its_closed_form():
    rng = np.random.default_rng(0)
    x, w_true = rng.normal(size=(300, 5)).astype(np.float32), rng.normal(size=5)
    data = ArrayDataset(x, (x @ w_true + 0.1 * rng.normal(size=300)).astype(np.float32))
    squared = Objective("squared", lambda out, y: (out[:, 0] - y) ** 2, lambda out, y: {"accuracy": jnp.abs(out[:, 0] - y) < 0.5})
    model = _Linear()
    p1 = {"Dense_0": {"kernel": rng.normal(size=(5, 1)).astype(np.float32)}}
    p2 = {"Dense_0": {"kernel": rng.normal(size=(5, 1)).astype(np.float32)}}
    curve = connectivity.interpolation_curve(model, squared, p1, p2, data, batch_size=128)
    r1, r2 = x @ p1["Dense_0"]["kernel"][:, 0] - data.y, x @ p2["Dense_0"]["kernel"][:, 0] - data.y
    alpha = np.asarray(curve["alpha"], np.float64)
    closed = np.mean(r1**2) + 2 * alpha * np.mean(r1 * (r2 - r1)) + alpha**2 * np.mean((r2 - r1) ** 2)
    np.testing.assert_allclose(curve["loss"], closed, rtol=1e-5)
    # the loss is convex along the path: its barrier is never above 0 where the ends are the highest points
    assert connectivity.error_barrier(curve["loss"]) <= max(closed) - (closed[0] + closed[-1]) / 2 + 1e-4


class _BatchNormNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(6)(x)
        x = batch_norm(train, name="bn")(x)
        return nn.Dense(2)(nn.relu(x))


def test_batch_statistics_are_recomputed_on_training_batches_at_every_alpha():
    data = moons_circles()
    model = _BatchNormNet()
    variables = [model.init(jax.random.PRNGKey(s), data.train.x[:2]) for s in (0, 1)]
    params = [v["params"] for v in variables]
    statistics, _ = connectivity._curve_programs(model, None, None, BATCH_NORM_MOMENTUM)
    xs = np.stack([b["x"] for _, b in zip(range(4), data.train.batches(100, drop_remainder=True))])
    grid = np.asarray([0.0, 0.5, 1.0], np.float32)
    mask = jax.tree.map(lambda a: np.ones(a.shape, bool), params[0])
    stats = statistics(params[0], params[1], mask, variables[0]["batch_stats"], grid, xs, 3)
    for i, alpha in enumerate(grid):  # the BatchNorm's input is the first layer's output: its mean over the batches
        p = connectivity.interpolate(params[0], params[1], alpha)["Dense_0"]
        hidden = xs.reshape(-1, 4) @ np.asarray(p["kernel"]) + np.asarray(p["bias"])
        np.testing.assert_allclose(stats["bn"]["mean"][i], hidden.mean(axis=0), rtol=1e-4, atol=1e-5)
        batch_vars = (xs @ np.asarray(p["kernel"]) + np.asarray(p["bias"])).var(axis=1).mean(axis=0)
        np.testing.assert_allclose(stats["bn"]["var"][i], batch_vars, rtol=1e-4, atol=1e-5)


def _stable_from(barriers: dict, threshold: float):
    """The smallest k from which every later k is below the threshold (written out plainly)."""
    steps = sorted(barriers)
    return next((k for i, k in enumerate(steps) if all(barriers[j] < threshold for j in steps[i:])), None)


def test_the_recommended_step_is_the_smallest_step_from_which_every_later_step_is_stable():
    rng = np.random.default_rng(0)
    for _ in range(200):
        barriers = {int(k): float(b) for k, b in zip(rng.choice(1000, 6, replace=False), rng.uniform(0, 0.05, 6))}
        assert connectivity.recommended_step(barriers, 0.02) == _stable_from(barriers, 0.02)
    # the digits case: stable at k=0 on average, unstable at k=5, stable after: k=0 is not recommended
    assert connectivity.recommended_step({0: 0.0089, 5: 0.0241, 10: 0.005, 20: 0.004}, 0.02) == 10
    assert connectivity.recommended_step({0: 0.01, 5: 0.03}, 0.02) is None
    assert connectivity.error_barrier([0.1, 0.3, 0.2]) == pytest.approx(0.15)


def _copies(monkeypatch=None, same_order=False):
    data = moons_circles()
    model = MLP((4, 16, 2))
    config = TrainConfig(epochs=3, batch_size=100, optimizer=OptimizerRecipe(name="adam", learning_rate=1e-2), log_every_epochs=0)
    spe = data.train.steps_per_epoch(100)
    tx = make_optimizer(config.optimizer, spe, 3 * spe)
    params, _ = init_variables(model, Streams(3).init(), data.train.x[:1])
    mask = jax.tree.map(lambda a: np.ones(a.shape, bool), params)
    if same_order:
        monkeypatch.setattr(Streams, "copy_data_seed", lambda self, data_seed, copy: (data_seed, self.seed, 7))
    return connectivity.train_copies(model, objectives.sigmoid_tasks(2), data.train, data.test, config, tx,
                                     RewindState(spe, params, {}), mask, seed=3, vmap=True, log_fn=lambda line: None)


def test_the_two_copies_differ_only_in_their_data_order(monkeypatch):
    streams = Streams(3)
    orders = {streams.copy_data_seed(0, c) for c in (0, 1)} | {(0, 3)}
    assert len(orders) == 3  # two orders of their own, neither the run's
    apart = _copies()
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(apart[0]["params"]), jax.tree.leaves(apart[1]["params"])))
    together = _copies(monkeypatch, same_order=True)  # given one order, nothing else differs: the copies are one network
    for a, b in zip(jax.tree.leaves(together[0]["params"]), jax.tree.leaves(together[1]["params"])):
        np.testing.assert_array_equal(a, b)
    assert [c["record"]["steps"] for c in apart] == [3 * 10, 3 * 10]  # from step k = 1 epoch to the end


def _instability(workdir, *args):
    return subprocess.run([sys.executable, "-m", "experiments.instability", f"--workdir={workdir}", "--config.recipe.training.epochs=3",
                           "--config.seeds=0", "--config.random_tickets=false",
                           "--config.recipe.pruning.levels=1", "--config.levels=0,1", "--config.rewind_steps=0,1ep", "--config.alphas=5",
                           *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=script_env())


def test_the_experiment_writes_its_outputs_and_resumes_stage_by_stage(tmp_path):
    workdir = tmp_path / "run"
    first = _instability(workdir)
    assert first.returncode == 0, first.stderr
    assert "recommended rewind step (dense):" in first.stdout and "k=23" in first.stdout
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert sorted((r["level"], r["rewind_step"]) for r in rows) == [(0, 0), (0, 23), (1, 0), (1, 23)]
    summary = json.loads((workdir / "summary.json").read_text())
    for level in ("0", "1"):  # the rule, on this run's own barriers
        mine = [r for r in rows if str(r["level"]) == level]
        expected = _stable_from({r["rewind_step"]: r["barrier"] for r in mine}, summary["threshold"])
        assert summary["levels"][level]["recommended_rewind_step_by_seed"] == {"0": expected}
        assert summary["levels"][level]["recommended_rewind_step"] == expected
        assert summary["levels"][level]["every_seed_stable_step"] == expected  # one seed
        assert all(r["barrier"] == connectivity.error_barrier(r["curve"]["error"]) and len(r["curve"]["alpha"]) == 5 for r in mine)
    assert (workdir / "figures" / "error_along_path.png").exists() and (workdir / "figures" / "barrier_vs_k.png").exists()
    assert json.loads((workdir / "seed_0" / "trunk" / "settings.json").read_text())["kind"] == "trunk"
    # the dense training here is the source run's level 0: the same weights at its rewind step
    from lth_jax.checkpoint import load_tree

    saved, trunk = load_tree(workdir / "source" / "seed_0" / "level_00" / "rewind"), load_tree(workdir / "seed_0" / "trunk" / "k_00000023")
    for a, b in zip(jax.tree.leaves(saved["params"]), jax.tree.leaves(trunk["params"])):
        np.testing.assert_array_equal(a, b)
    # one copy lost: only it is trained again, to the same weights and the same row
    copy = workdir / "seed_0" / "level_01" / "k_00000023" / "copy_1"
    kept = (workdir / "seed_0" / "level_01" / "k_00000023" / "copy_0" / "record.json").stat().st_mtime_ns
    for name in ("record.json",):
        (copy / name).unlink()
    (workdir / "seed_0" / "level_01" / "k_00000023" / "record.json").unlink()
    from experiments.configs import instability_digits_lenet
    from lth_jax import instability
    from lth_jax.errors import UserError

    c = instability_digits_lenet.get_config()  # the command's config, through the library (no process start-up)
    c.recipe.training.epochs, c.recipe.pruning.levels = 3, 1
    c.seeds, c.random_tickets, c.levels, c.rewind_steps, c.alphas = (0,), False, (0, 1), "0,1ep", 5
    instability.run(c, workdir, log_fn=lambda line: None)
    assert (workdir / "seed_0" / "level_01" / "k_00000023" / "copy_0" / "record.json").stat().st_mtime_ns == kept
    assert [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()] == rows
    c.noise = "data_order_and_augmentation"  # another noise on the same workdir is refused
    with pytest.raises(UserError, match="noise"):
        instability.run(c, workdir, log_fn=lambda line: None)
    c.source_workdir, c.seeds = str(workdir / "source" / "seed_0"), (0, 1)  # one run, more seeds asked
    with pytest.raises(UserError, match="is one run, of seed 0: give --config.seeds=0"):
        instability.run(c, tmp_path / "other", log_fn=lambda line: None)


def test_find_ticket_rewind_auto_takes_the_smallest_stable_step(tmp_path):
    workdir = tmp_path / "auto"
    proc = subprocess.run([sys.executable, "-m", "experiments.find_ticket", "--config=find_ticket_digits_lenet", f"--workdir={workdir}",
                           "--config.rewind=auto", "--config.training.epochs=3", "--config.pruning.levels=1",
                           "--config.auto_rewind.rewind_steps=0,5it,1ep", "--config.auto_rewind.alphas=5"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=script_env())
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (workdir / "auto_rewind" / "metrics.jsonl").read_text().splitlines()]
    assert sorted(r["rewind_step"] for r in rows) == [0, 5, 23] and {r["level"] for r in rows} == {0}
    chosen = json.loads((workdir / "summary.json").read_text())["auto_rewind"]["rewind_step"]
    assert chosen == _stable_from({r["rewind_step"]: r["barrier"] for r in rows}, 0.02) is not None
    ticket = json.loads((workdir / "level_01" / "ticket" / "ticket.json").read_text())
    assert ticket["rewind_step"] == chosen and f"rewind auto: step {chosen}" in proc.stdout
    assert json.loads((workdir / "summary.json").read_text())["auto_rewind"]["noise"] == "data_order"  # digits: no augmentation


def test_a_batchnorm_network_under_the_mocked_cifar_preset(tmp_path):
    """The ResNet-20 preset, narrow and short, on mocked CIFAR-10: statistics recomputed along the path,
    augmentation noise, every output written."""
    import tensorflow_datasets as tfds

    from experiments.configs import instability_cifar_resnet20
    from lth_jax import instability

    c = instability_cifar_resnet20.get_config()
    c.recipe.model_kwargs.width_multiplier = 1 / 8
    c.recipe.training.update(epochs=2, batch_size=8, log_every_epochs=0)
    c.recipe.optimizer.milestones = (1.0,)
    c.recipe.pruning.levels = 1
    c.recipe.rewind = "1ep"
    c.levels, c.rewind_steps, c.alphas, c.bn_batches, c.eval_batch_size = (1,), "1ep", 3, 2, 8
    with tfds.testing.mock_data(num_examples=24):
        summary = instability.run(c, tmp_path, log_fn=lambda line: None)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["level"], r["rewind_step"]) for r in rows] == [(1, 3)]
    assert all(np.isfinite(r["curve"]["loss"]).all() and r["barrier"] >= -1e-6 for r in rows)
    assert set(summary["levels"]) == {"1"} and summary["noise"] == "data_order_and_augmentation"
    trained = [_load(tmp_path / "seed_0" / "level_01" / "k_00000003" / f"copy_{i}" / "trained") for i in (0, 1)]
    assert trained[0]["batch_stats"] and not all(
        np.array_equal(a, b) for a, b in zip(jax.tree.leaves(trained[0]["params"]), jax.tree.leaves(trained[1]["params"])))


def _load(path):
    from lth_jax.checkpoint import load_tree

    return load_tree(path)


def test_parallel_task_tickets_of_every_seed_beside_their_split(tmp_path):
    from experiments.configs import instability_moons_circles
    from lth_jax import instability

    c = instability_moons_circles.get_config()
    c.recipe.update(seeds=(0, 1), extension_level=1, epochs=6, patience=None, stop_on_degradation=False)
    c.levels, c.rewind_steps, c.alphas = (0, 1), "0,1ep", 5
    summary = instability.run(c, tmp_path, log_fn=lambda line: None)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sorted({(r["seed"], r["level"]) for r in rows}) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert sorted({(r["level"], r["ticket"]) for r in rows}) == [(0, "imp"), (1, "imp"), (1, "random")]
    source = json.loads((tmp_path / "source" / "summary.json").read_text())["seeds"]
    assert summary["split_levels"] == {s: source[s]["split_level"] for s in ("0", "1")}
    cell = summary["levels"]["1"]["by_step"]["16"]
    assert cell["seeds"] == 2 and cell["mean_barrier"] == pytest.approx(np.mean([r["barrier"] for r in rows if (r["level"], r["rewind_step"], r["ticket"]) == (1, 16, "imp")]))
    low, high = cell["stable_interval"]
    assert 0 <= low <= cell["stable_seeds"] / 2 <= high <= 1
    assert (tmp_path / "figures" / "barrier_vs_level.png").exists()
    assert "n/N: seeds stable" in instability.format_table(summary)


def test_find_ticket_tickets_of_several_seeds(tmp_path):
    from experiments.configs import instability_digits_lenet
    from lth_jax import instability

    c = instability_digits_lenet.get_config()
    c.recipe.training.epochs, c.recipe.pruning.levels = 2, 1
    c.seeds, c.levels, c.rewind_steps, c.alphas, c.random_tickets = (0, 1), (0, 1), "0", 3, True
    summary = instability.run(c, tmp_path, log_fn=lambda line: None)
    tickets = [json.loads((tmp_path / "source" / f"seed_{s}" / "level_01" / "ticket" / "ticket.json").read_text()) for s in (0, 1)]
    assert [t["seed"] for t in tickets] == [0, 1]
    assert summary["seeds"] == [0, 1] and summary["levels"]["1"]["by_step"]["0"]["seeds"] == 2
    assert set(summary["random_tickets"]) == {"1"} and "1r" in instability.format_table(summary)
    # a random ticket: every layer keeps the winning ticket's count, at other places
    imp, random = (_load(tmp_path / "seed_0" / "level_01" / sub / "k_00000000" / "copy_0" / "trained")["params"] for sub in ("", "random"))
    for a, b in zip(jax.tree.leaves(imp), jax.tree.leaves(random)):
        if a.ndim == 2:
            assert np.count_nonzero(a) == np.count_nonzero(b) and not np.array_equal(a != 0, b != 0)


def test_a_seed_that_stopped_before_the_levels_asked_for_is_skipped(tmp_path):
    """A parallel-task seed stops at its split or degradation: asked for a later level only
    (no level 0), the seeds that reached it are analysed and the others said."""
    from experiments.configs import instability_moons_circles
    from lth_jax import instability, parallel_tasks
    from lth_jax.errors import UserError

    c = instability_moons_circles.get_config()
    c.recipe.update(seeds=(0, 1), extension_level=1, epochs=4, patience=None, stop_on_degradation=False)
    parallel_tasks.run(c.recipe, tmp_path / "source", log_fn=lambda line: None)
    import shutil

    shutil.rmtree(tmp_path / "source" / "imp" / "seed_1" / "level_01")  # seed 1 stopped at level 0
    c.source_workdir, c.levels, c.rewind_steps, c.alphas, c.random_tickets = str(tmp_path / "source"), (1,), "0", 3, False
    lines = []
    summary = instability.run(c, tmp_path / "run", log_fn=lines.append)
    assert summary["levels"]["1"]["by_step"]["0"]["seeds"] == 1 and summary["recommended_for_level"] == 1
    assert any("seed 1: the run stopped before level 1; it has none of the levels asked for" in line for line in lines)
    shutil.rmtree(tmp_path / "source" / "imp" / "seed_0" / "level_01")  # no seed reached it
    with pytest.raises(UserError, match="levels=1: no seed of the source run reached"):
        instability.run(c, tmp_path / "none", log_fn=lambda line: None)


def test_levels_beyond_the_recipe_are_refused_before_anything_runs(tmp_path):
    from experiments.configs import instability_digits_lenet
    from lth_jax import instability
    from lth_jax.errors import UserError

    c = instability_digits_lenet.get_config()
    c.recipe.training.epochs, c.recipe.pruning.levels = 2, 1
    c.seeds, c.levels, c.rewind_steps = (0,), (0, 12), "0"
    with pytest.raises(UserError, match=r"^levels=0,12: the recipe prunes 1 levels"):
        instability.run(c, tmp_path / "run", log_fn=lambda line: None)
    assert not (tmp_path / "run").exists()


def _row(seed, k, barrier, diverged=False):
    return {"seed": seed, "level": 0, "rewind_step": k, "barrier": barrier, "diverged": diverged, "fraction_remaining": 1.0}


def test_diverged_copies_are_counted_apart_and_every_seed_stable_step_beside_the_mean():
    from lth_jax import instability

    rows = [_row(0, 0, 0.005), _row(1, 0, 0.03), _row(2, 0, 0.5, diverged=True),
            _row(0, 5, 0.004), _row(1, 5, 0.025), _row(2, 5, 0.001),
            _row(0, 9, 0.003), _row(1, 9, 0.001), _row(2, 9, 0.002)]
    level = instability.by_level(rows, [0, 5, 9], [0, 1, 2], 0.02)["0"]
    k0 = level["by_step"]["0"]
    assert k0["seeds"] == 2 and k0["diverged_seeds"] == 1 and k0["mean_barrier"] == pytest.approx(0.0175) and k0["stable_seeds"] == 1
    assert level["recommended_rewind_step"] == 0  # by the mean over seeds
    assert level["recommended_rewind_step_by_seed"] == {"0": 0, "1": 9, "2": None}  # seed 2's k=0 copy diverged
    assert level["every_seed_stable_step"] is None
    rows[2]["diverged"] = False
    assert instability.by_level(rows, [0, 5, 9], [0, 1, 2], 0.02)["0"]["every_seed_stable_step"] == 9
    summary = {"rewind_steps": [0, 5, 9], "levels": {"0": level}, "seeds": [0, 1, 2], "threshold": 0.02}
    assert "(1 diverged)" in instability.format_table(summary)


def test_copies_of_parallel_task_tickets_are_measured_on_the_test_set(tmp_path):
    from experiments.configs import instability_moons_circles
    from lth_jax import instability

    c = instability_moons_circles.get_config()
    c.recipe.update(seeds=(0,), extension_level=1, validation_split=0.2)
    c.levels = (0, 1)
    plan = instability._Plan(c, tmp_path)
    assert len(plan.source.eval_data) == 200 and len(plan.source.test_data) == 1000  # early stopping: validation; the path: test


def test_rewind_auto_takes_the_recipes_sgd_noise():
    from lth_jax import auto_rewind
    from lth_jax.data.registry import get_spec
    from lth_jax.recipe import default_config

    class Data:
        def __init__(self, name):
            self.spec = get_spec(name)

    c = default_config()  # CIFAR-10: crop and flip
    assert auto_rewind.noise_of(c, Data("cifar10")) == "data_order_and_augmentation"
    c.augment = False
    assert auto_rewind.noise_of(c, Data("cifar10")) == "data_order"


def test_the_copies_of_one_rewind_step_train_together_and_resume_copy_by_copy(tmp_path, monkeypatch):
    """vmap: every pair of copies of one rewind step (every seed, level and ticket kind) is one program;
    the barriers equal those of the pairs trained one at a time, and a lost copy retrains to the same row."""
    from experiments.configs import instability_moons_circles
    from lth_jax import instability

    c = instability_moons_circles.get_config()
    c.recipe.update(seeds=(0, 1), extension_level=1, epochs=6, patience=None, stop_on_degradation=False)
    c.levels, c.rewind_steps, c.alphas, c.random_tickets, c.pairs_per_program = (0, 1), "0,1ep", 5, True, 64
    calls = []
    grouped = connectivity.train_copy_pairs
    monkeypatch.setattr(connectivity, "train_copy_pairs", lambda *a, **k: calls.append(len(a[6])) or grouped(*a, **k))
    instability.run(c, tmp_path / "together", log_fn=lambda line: None)
    assert calls == [6, 6]  # per k: 2 seeds x (dense, level 1, its random ticket)
    together = [json.loads(line) for line in (tmp_path / "together" / "metrics.jsonl").read_text().splitlines()]
    c.vmap = False
    c.source_workdir = str(tmp_path / "together" / "source")
    instability.run(c, tmp_path / "apart", log_fn=lambda line: None)
    apart = [json.loads(line) for line in (tmp_path / "apart" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["seed"], r["level"], r["ticket"], r["rewind_step"]) for r in together] == \
        [(r["seed"], r["level"], r["ticket"], r["rewind_step"]) for r in apart]
    for a, b in zip(together, apart):
        assert a["barrier"] == pytest.approx(b["barrier"], abs=2e-3) and a["end_errors"] == pytest.approx(b["end_errors"], abs=2e-3)
    lost = tmp_path / "together" / "seed_1" / "level_01" / "random" / "k_00000016"
    (lost / "copy_0" / "record.json").unlink()
    (lost / "record.json").unlink()
    c.vmap, c.source_workdir = True, ""
    calls.clear()
    instability.run(c, tmp_path / "together", log_fn=lambda line: None)
    assert calls == [1]
    assert [json.loads(line) for line in (tmp_path / "together" / "metrics.jsonl").read_text().splitlines()] == together
