"""The thesis experiments end to end (small settings): lth_jax.parallel_tasks, lth_jax.thesis_sweep and their scripts."""

import dataclasses
import functools
import json
import subprocess
import sys

import jax
import matplotlib.image
import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import REPO, script_env
from helpers import assert_one_line_error

from lth_jax import objectives
from lth_jax.data.synthetic import moons_circles
from lth_jax.errors import UserError
from lth_jax.loop import fit
from lth_jax.models import MLP
from lth_jax.optim import OptimizerRecipe, make_optimizer
from lth_jax.parallel_tasks import ThesisConfig, run_parallel_tasks
from lth_jax.train import TrainConfig, create_train_state, init_variables, make_eval_step, make_train_step

ROW_KEYS = {"seed", "level", "weights_remaining", "active_weights", "accuracy", "test_loss", "num_components", "status", "edges"}


def test_moons_circles_data_as_the_thesis_builds_it():
    data = moons_circles()
    assert len(data.train) == 1000 and len(data.test) == 1000
    np.testing.assert_allclose(data.train.x.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(data.train.x.std(axis=0), 1, atol=1e-5)
    assert data.input_tasks == (0, 0, 1, 1) and data.output_tasks == (0, 1) and data.task_names == ("circles", "moons")
    assert set(np.unique(data.train.y)) == {0.0, 1.0}
    # the thesis's own pipeline: numpy's global RNG, train_test_split, StandardScaler
    from sklearn.datasets import make_circles, make_moons
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    np.random.seed(0)
    xc, yc = make_circles(n_samples=2000, noise=0.1, factor=0.35)
    xm, ym = make_moons(n_samples=2000, noise=0.1)
    x_train, x_test, y_train, y_test = train_test_split(
        np.concatenate([xc, xm], 1), np.stack([yc, ym], 1), test_size=0.5, random_state=42
    )
    scaler = StandardScaler().fit(x_train)
    np.testing.assert_allclose(data.train.x, scaler.transform(x_train), atol=1e-5)
    np.testing.assert_allclose(data.test.x, scaler.transform(x_test), atol=1e-5)
    np.testing.assert_array_equal(data.train.y, y_train)
    np.testing.assert_array_equal(data.test.y, y_test)


@pytest.mark.parametrize("n", [2000, 7, 1])
def test_numpy_generators_draw_as_scikit_learn_does(n):
    from sklearn.datasets import make_circles, make_moons
    from sklearn.model_selection import train_test_split

    from lth_jax.data import synthetic

    ours, theirs = np.random.RandomState(5), np.random.RandomState(5)
    expected = make_circles(n_samples=n, noise=0.2, factor=0.5, random_state=theirs) + make_moons(n_samples=n, noise=0.2, random_state=theirs)
    got = synthetic.make_circles(n, 0.2, 0.5, ours) + synthetic.make_moons(n, 0.2, ours)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    if n > 1:
        x, y = expected[0], expected[1]
        for a, b in zip(synthetic.split_half(x, y), train_test_split(x, y, test_size=0.5, random_state=42)):
            np.testing.assert_array_equal(a, b)


def test_thesis_data_does_not_import_scikit_learn():
    code = "import sys; from lth_jax.data.synthetic import moons_circles; moons_circles(); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_dense_network_reaches_97_percent_on_each_task():
    data = moons_circles()
    model = MLP((4, 32, 32, 2))
    config = TrainConfig(epochs=120, batch_size=64, optimizer=OptimizerRecipe(name="adam", learning_rate=1e-3), early_stopping_patience=30, log_every_epochs=0)
    tx = make_optimizer(config.optimizer, 16, 120 * 16)
    params, _ = init_variables(model, jax.random.PRNGKey(0), data.train.x[:1])
    objective = objectives.sigmoid_tasks(2)
    result = fit(create_train_state(params, tx), train_step_fn=make_train_step(model, tx, objective), eval_step_fn=make_eval_step(model, objective), train_data=data.train, eval_data=data.test, config=config)
    assert min(result.final["test_accuracy"]) >= 0.97


def small_config(**overrides):
    base = dict(extension_level=2, seeds=(0, 1), epochs=6, patience=None, learning_rate=1e-2)
    return ThesisConfig(**{**base, **overrides})


def test_small_run_writes_every_output(tmp_path):
    lines = []
    summary = run_parallel_tasks(small_config(), tmp_path, log_fn=lines.append)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {(r["seed"], r["level"]) for r in rows} == {(s, level) for s in (0, 1) for level in range(3)}
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert len(row["accuracy"]) == 2
        assert sum(row["edges"].values()) == 4 * 13 + 13 * 13 + 13 * 2
        assert row["edges"]["active"] == row["active_weights"] <= row["weights_remaining"]
    assert [r["weights_remaining"] for r in rows if r["seed"] == 0] == [247, 160, 112]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for seed in ("0", "1"):
        assert {"split_level", "degradation_level", "category"} <= set(on_disk["seeds"][seed])
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["shape"] == [4, 13, 13, 2] and config["trajectory"] == [247, 160, 112]
    for name in ("levels.png", "networks.png"):
        image = matplotlib.image.imread(tmp_path / "figures" / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert image[..., :3].std() > 0.01  # not a blank canvas
    assert any(line.startswith("seed") and "level" in line for line in lines)
    from test_find_ticket import events

    levels = events(tmp_path / "tensorboard" / "seed_1" / "levels")
    assert {"active_weights", "num_components", "untapped_potential", "accuracy/0", "accuracy/1", "edges/zombie"} <= set(levels.Tags()["scalars"])
    assert [e.step for e in levels.Scalars("num_components")] == [0, 1, 2]
    assert [e.step for e in events(tmp_path / "tensorboard" / "seed_0" / "level_02").Scalars("test_loss")] == list(range(1, 7))


def test_a_changed_setting_on_an_existing_run_is_refused(tmp_path):
    config = small_config(seeds=(0,), epochs=2)
    run_parallel_tasks(config, tmp_path, log_fn=lambda line: None)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.json*")}
    for change, key in ((dict(stop_on_degradation=False), "experiment.stop_on_degradation"), (dict(coverage="output"), "experiment.coverage"),
                        (dict(learning_rate=1e-3), "experiment.learning_rate"), (dict(data_seed=1), "experiment.data_seed")):
        with pytest.raises(UserError, match=f"holds a run with {key}="):
            run_parallel_tasks(dataclasses.replace(config, **change), tmp_path, log_fn=lambda line: None)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.json*")} == before  # nothing written
    lines = []
    again = run_parallel_tasks(dataclasses.replace(config, log_every_epochs=1, vmap=False), tmp_path, log_fn=lines.append)  # how it runs: fine
    assert again["seeds"]["0"]["levels_trained"] == 3 and not any("epoch" in line and "step" in line for line in lines)


def test_stop_rules(tmp_path):
    # 4 weights cannot connect 4 inputs and 2 outputs through two hidden layers: the last level degrades
    tiny = dict(extension_level=None, shape=(4, 6, 6, 2), levels=3, target=4, rate=None, seeds=(0,), epochs=2)
    stopping = run_parallel_tasks(small_config(**tiny), tmp_path / "stop", log_fn=lambda line: None)["seeds"]["0"]
    assert stopping["degradation_level"] is not None
    assert stopping["levels_trained"] == stopping["degradation_level"] + 1
    going_on = run_parallel_tasks(small_config(**tiny, stop_on_degradation=False), tmp_path / "go", log_fn=lambda line: None)["seeds"]["0"]
    assert going_on["levels_trained"] == 4 and going_on["degradation_level"] == stopping["degradation_level"]
    splitting = run_parallel_tasks(small_config(**tiny, stop_on_split=True), tmp_path / "split", log_fn=lambda line: None)["seeds"]["0"]
    stops = [lvl for lvl in (splitting["split_level"], splitting["degradation_level"]) if lvl is not None]
    assert splitting["levels_trained"] == min(stops) + 1


def test_mnist_fashion_under_the_tfds_mock(tmp_path):
    with tfds.testing.mock_data(num_examples=64):
        config = ThesisConfig(dataset="mnist_fashion", extension_level=None, shape=(1568, 24, 12, 20), levels=2, target=300, rate=None,
                              seeds=(0, 1), epochs=2, patience=None, batch_size=32, data_dir=str(tmp_path / "tfds"))
        summary = run_parallel_tasks(config, tmp_path / "run", log_fn=lambda line: None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(len(r["accuracy"]) == 2 for r in rows)
    assert {r["weights_remaining"] for r in rows if r["level"] == 2} <= {300}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["coverage"] == "output"
    assert (tmp_path / "run" / "figures" / "input_degree_seed0.png").stat().st_size > 1000
    assert set(summary["seeds"]) == {"0", "1"}


def test_single_image_task_e9_trains_every_level_under_the_tfds_mock(tmp_path):
    with tfds.testing.mock_data(num_examples=64):
        config = ThesisConfig(dataset="mnist", extension_level=None, shape=(784, 24, 12, 10), levels=3, rate=0.5, seeds=(0,), epochs=2,
                              patience=None, batch_size=32, data_dir=str(tmp_path / "tfds"))
        summary = run_parallel_tasks(config, tmp_path / "run", log_fn=lambda line: None)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["coverage"] == "output"
    assert summary["seeds"]["0"]["levels_trained"] == 4  # pixels that lose their edges do not stop the run
    assert (tmp_path / "run" / "figures" / "input_degree_seed0.png").stat().st_size > 1000


def run_script(*args):
    return subprocess.run([sys.executable, "-m", "experiments.parallel_tasks", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=script_env())


def test_script_end_to_end(tmp_path):
    proc = run_script(f"--workdir={tmp_path}", "--config.extension_level=1", "--config.seeds=0,1", "--config.epochs=3", "--config.patience=0")
    assert proc.returncode == 0, proc.stderr
    assert "status" in proc.stdout and "seed 1:" in proc.stdout
    assert (tmp_path / "summary.json").exists() and (tmp_path / "figures" / "networks.png").exists()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {(r["seed"], r["level"]) for r in rows} == {(s, level) for s in (0, 1) for level in (0, 1)}
    assert json.loads((tmp_path / "config.json").read_text())["shape"] == [4, 10, 10, 2]  # extension level 1
    assert matplotlib.image.imread(tmp_path / "figures" / "levels.png").shape[0] > 100


@pytest.mark.parametrize(
    "args,message",
    [
        (["--config.dataset=cifar"], "error: unknown dataset 'cifar'; known datasets: moons_circles"),
        (["--config.shape=4,8,3", "--config.levels=2", "--config.target=10"], "error: --config.shape=(4, 8, 3) does not fit the data: it needs 4 inputs and 2 outputs"),
        (["--config.shape=5,8,2", "--config.levels=2", "--config.target=10"], "error: --config.shape=(5, 8, 2) does not fit the data: it needs 4 inputs and 2 outputs"),
        (["--config.rate=1.5"], "error: --config.rate=1.5 is outside the open interval (0, 1)"),
        (["--config.seeds=0,x"], "error: --config.seeds=0,x: 'x' is not an integer"),
        (["--config.levels=3"], "error: the network extension fixes the trajectory: levels and target need a shape"),
        (["--config.coverage=all"], "error: --config.coverage='all' is not one of 'total', 'output'"),
        (["--config.seed=3"], "error: a --config override names a field the config does not have: 'seed' (did you mean 'seeds'?)"),
        (["--config.dataset=mnist", "--config.shape=784,30,10", "--config.levels=1", "--config.target=100", "--data_dir=/nonexistent"],
         "error: TFDS dataset 'mnist' is not prepared"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, message):
    assert_one_line_error(run_script(f"--workdir={tmp_path}", "--config.epochs=1", *args), message)


def test_sweeps_and_their_report(tmp_path):
    for grid, args in (("e1", ["--config.extension_levels=0,1"]), ("e4", ["--config.widths=31", "--config.level_counts=1,2"])):
        proc = subprocess.run(
            [sys.executable, "-m", "experiments.thesis_sweep", f"--config=experiments/configs/thesis_sweep_{grid}.py", f"--workdir={tmp_path / grid}",
             "--config.experiment.seeds=0", "--config.experiment.epochs=2", *args],
            cwd=REPO, capture_output=True, text=True, timeout=300, env=script_env(),
        )
        assert proc.returncode == 0, proc.stderr
        rows = [json.loads(line) for line in (tmp_path / grid / "sweep.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and all(r["category"] in ("Separated", "Separated-Degraded", "Degraded", "Interconnected") for r in rows)
        figure = tmp_path / grid / "figures" / ("split_grid.png" if grid == "e4" else "categories.png")
        assert matplotlib.image.imread(figure).shape[0] > 100
        assert "| point | seed | category" in (tmp_path / grid / "report.md").read_text()
    e4 = [json.loads(line) for line in (tmp_path / "e4" / "sweep.jsonl").read_text().splitlines()]
    assert [(r["x"], r["y"]) for r in e4] == [(1, 31), (2, 31)]
    config = json.loads((tmp_path / "e4" / "w31_L02" / "config.json").read_text())
    assert config["trajectory"][-1] == 112 and len(config["trajectory"]) == 3


def test_a_validation_split_early_stops_on_held_out_data_and_reports_the_test_set(tmp_path):
    run_parallel_tasks(dataclasses.replace(small_config(), validation_split=0.2), tmp_path, log_fn=lambda line: None)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows and all({"val_loss", "val_accuracy", "test_loss", "accuracy"} <= set(row) for row in rows)
    assert all(row["val_loss"] != row["test_loss"] and len(row["accuracy"]) == 2 for row in rows)


def test_divergences_keep_each_seeds_first_diverged_level_and_end_the_run_in_one_line():
    """The divergence helper of find_ticket and the thesis experiment: every epoch of a thesis
    level is evaluated, so its record's losses and its flag agree; the helper reads either."""
    from lth_jax.sizes import DIVERGENCE_FACTOR, Divergences

    divergences = Divergences(0.5)
    assert divergences.limit == DIVERGENCE_FACTOR * 0.5
    assert not divergences.check(0, 0, {"test_loss": 0.4, "train_loss": 0.3, "diverged": False, "epochs": 30})
    divergences.raise_first("learning_rate=0.001", 3)  # nothing diverged: nothing raised
    assert divergences.check(2, 1, {"test_loss": float("inf"), "diverged": True, "epochs": 4})
    assert divergences.check(1, 3, {"test_loss": 0.4, "diverged": True, "epochs": 7})  # the flag alone
    assert divergences.check(2, 2, {"train_loss": 60.0, "epochs": 2})  # finite, above the limit: seed 2's later level
    assert divergences.first == {2: (1, "test loss inf"), 1: (3, "stopped at epoch 7 by the divergence rule (a loss NaN, "
                                                                  "infinite or above 100 × chance)")}
    with pytest.raises(UserError, match=r"^seed 1 diverged at level 3 \(stopped at epoch 7 .*; 2 of 3 seeds diverged\): "
                                        r"lower learning_rate=1e\+06 and use a new workdir; the levels before it are kept$"):
        divergences.raise_first("learning_rate=1e+06", 3)
    with pytest.raises(UserError, match=r"^seed 1 diverged at level 3 \(stopped at epoch 7 [^;]*\): lower --config"):
        divergences.raise_first("--config.optimizer.learning_rate=10000")  # one seed: no count


def test_a_packed_sweep_trains_the_points_of_a_shape_together_with_the_results_of_one_point_after_the_other(tmp_path, monkeypatch):
    from lth_jax import imp_pack, thesis_sweep

    fits = []
    fit_replicas = imp_pack.fit_replicas
    monkeypatch.setattr(imp_pack, "fit_replicas", lambda replicas, *args, **kwargs: fits.append(len(replicas)) or fit_replicas(replicas, *args, **kwargs))
    base = ThesisConfig(extension_level=1, seeds=(0, 1, 2), epochs=30, patience=3, learning_rate=1e-2)
    narrow = dict(widths=(8,), level_counts=(2, 4), target=30)
    packed = thesis_sweep.run_sweep("e4", base, tmp_path / "packed", pack=True, log_fn=lambda line: None, **narrow)
    calls, fits[:] = list(fits), []
    single = thesis_sweep.run_sweep("e4", base, tmp_path / "single", pack=False, log_fn=lambda line: None, **narrow)
    assert calls[0] == 3 and calls[1] == 6 and len(calls) == 5  # level 0 once per seed; levels 1-2 of both points together
    assert fits[:3] == [3, 3, 3] and len(fits) == 3 + 5
    assert packed == single
    for point in ("w8_L02", "w8_L04"):
        for seed in base.seeds:
            for level in sorted(p.name for p in (tmp_path / "single" / point / "imp" / f"seed_{seed}").glob("level_*")):
                a, b = (tmp_path / run / point / "imp" / f"seed_{seed}" / level for run in ("packed", "single"))
                for part in ("ticket", "trained"):
                    for x, y in zip(*(sorted(d.joinpath(part).glob("*.npz")) for d in (a, b))):
                        with np.load(x) as p, np.load(y) as q:  # more rows in a program round differently: trained weights ~1 ulp
                            close = np.array_equal if part == "ticket" else functools.partial(np.allclose, rtol=0, atol=1e-5)
                            assert p.files == q.files and all(close(p[k], q[k]) for k in p.files), (point, seed, level, part)


def test_a_sweep_without_workers_is_refused_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.thesis_sweep", "--config=experiments/configs/thesis_sweep_e1.py", f"--workdir={tmp_path}",
         "--config.workers=0"], cwd=REPO, capture_output=True, text=True, timeout=300, env=script_env(),
    )
    assert_one_line_error(proc, "--config.workers=0: 0 is below 1; workers is an integer >= 1")


def test_a_sweep_trains_the_costliest_pack_first_and_finishes_each_point_beside_training(tmp_path, monkeypatch):
    import threading

    from lth_jax import parallel_tasks, thesis_sweep

    started, waited, handed = [], [], []
    second_started = threading.Event()
    train, run_imp_pack, finish = thesis_sweep.train_parallel_tasks_pack, parallel_tasks.run_imp_pack, parallel_tasks._Experiment.finish

    def tracked(points, **kwargs):
        started.append([workdir.name for _, workdir in points])
        if len(started) > 1:
            second_started.set()
        return train(points, **kwargs)

    def tracked_pack(jobs, on_run_done):
        def done(i, results):  # which of the long point's levels were trained when a point was handed over
            handed.append((i, len(results[0].records), sorted(p.parent.name for p in (tmp_path / "w8_L03" / "imp" / "seed_0").glob("level_*/record.json"))))
            on_run_done(i, results)

        return run_imp_pack(jobs, on_run_done=done)

    def tracked_finish(self):
        if self.workdir.name == "w8_L03":  # the first pack's last point is finished only once the next pack trains (or never: a timeout)
            waited.append(second_started.wait(timeout=120))
        return finish(self)

    monkeypatch.setattr(thesis_sweep, "train_parallel_tasks_pack", tracked)
    monkeypatch.setattr(parallel_tasks, "run_imp_pack", tracked_pack)
    monkeypatch.setattr(parallel_tasks._Experiment, "finish", tracked_finish)
    base = ThesisConfig(extension_level=1, seeds=(0,), epochs=2, patience=None, learning_rate=1e-2)
    rows = thesis_sweep.run_sweep("e4", base, tmp_path, widths=(6, 8), level_counts=(1, 3), target=30, workers=1, log_fn=lambda line: None)
    assert started == [["w8_L01", "w8_L03"], ["w6_L01", "w6_L03"]] and waited == [True]  # the costlier pack first
    # each point handed over after its last level: w8_L01 after its 2 (level 0 and 1), before w8_L03's level 2
    assert handed[:2] == [(0, 2, ["level_00", "level_01"]), (1, 4, ["level_00", "level_01", "level_02", "level_03"])], handed
    assert [r["point"] for r in rows] == ["w6_L01", "w6_L03", "w8_L01", "w8_L03"]
    assert all((tmp_path / p / "figures" / "levels.png").exists() for p in ("w6_L01", "w8_L03"))
