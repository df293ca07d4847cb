"""experiments/find_ticket.py and lth_jax.find_ticket: presets, TFDS mock runs, offline digits, resume, errors."""

import json
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import REPO, script_env
from helpers import assert_one_line_error

from experiments.configs import find_ticket_digits_lenet as digits_lenet
from experiments.configs import find_ticket_morcos_resnet50_adam as morcos_resnet50_adam
from experiments.configs import find_ticket_morcos_vgg19_adam as morcos_vgg19_adam
from experiments.configs import find_ticket_morcos_vgg19_sgd as morcos_vgg19_sgd
from experiments.configs import find_ticket_openlth_cifar_resnet as openlth_cifar_resnet
from experiments.configs import find_ticket_openlth_cifar_vgg as openlth_cifar_vgg
from experiments.configs import find_ticket_openlth_mnist_lenet_300_100 as openlth_mnist_lenet_300_100
from lth_jax import report
from lth_jax.errors import UserError
from lth_jax.find_ticket import find_ticket, pruning_plan, train_config
from lth_jax.tickets import load_ticket


def narrow_vgg(dataset):
    c = morcos_vgg19_sgd.get_config()
    c.dataset = dataset
    c.model = "cifar_vgg_11"
    c.model_kwargs.width_multiplier = 1 / 16
    c.training.epochs = 2
    c.training.batch_size = 8
    c.training.log_every_epochs = 0
    c.optimizer.milestones = (1.0,)
    c.pruning.levels = 1
    return c


@pytest.mark.parametrize("dataset", ["cifar10", "fashion_mnist"])
def test_narrow_vgg_two_levels_under_the_mock_and_resume(tmp_path, dataset):
    c = narrow_vgg(dataset)
    with tfds.testing.mock_data(num_examples=24):
        summary = find_ticket(c, tmp_path, log_fn=lambda line: None)
        records = {p: p.stat().st_mtime_ns for p in tmp_path.glob("level_*/record.json")}
        lines = []
        again = find_ticket(c, tmp_path, log_fn=lines.append)
    assert summary["levels_trained"] == 2 and again == summary
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("level_*/record.json")} == records  # nothing retrained
    assert not any("epoch" in line and "step" in line for line in lines)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["level"] for r in rows] == [0, 1]
    for row in rows:
        assert {"level", "fraction_remaining", "test_accuracy", "test_loss", "train_loss", "epoch", "examples_per_second"} <= set(row)
    assert rows[1]["fraction_remaining"] == pytest.approx(0.8, abs=1e-4)
    ticket = load_ticket(tmp_path / "level_01" / "ticket")
    assert ticket.info["dataset"] == dataset and ticket.info["input_shape"] == [32, 32, 3] and ticket.info["rewind_step"] == 3
    assert ticket.batch_stats  # BatchNorm statistics at the rewind step travel with the ticket
    assert json.loads((tmp_path / "config.json").read_text())["config"]["model"] == "cifar_vgg_11"
    assert ticket.info["classes"] == 10 and ticket.info["head"] == {"path": "fc", "shape": [32, 10]}
    assert ticket.info["prunable"] == {"exclude": []}


def test_another_dataset_or_recipe_on_a_finished_run_is_refused(tmp_path):
    c = digits_lenet.get_config()
    c.training.epochs, c.pruning.levels, c.dataset = 2, 1, "digits_a"
    find_ticket(c, tmp_path, log_fn=lambda line: None)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.json*")}
    for field, value in (("dataset", "digits_b"), ("augment", True)):
        changed = digits_lenet.get_config()
        changed.training.epochs, changed.pruning.levels, changed.dataset = 2, 1, "digits_a"
        changed[field] = value
        with pytest.raises(UserError, match=f"holds a run with experiment.recipe.{field}="):
            find_ticket(changed, tmp_path, log_fn=lambda line: None)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.json*")} == before  # nothing written


def test_real_offline_digits_reach_90_percent_with_a_ticket_per_level(tmp_path):
    c = digits_lenet.get_config()
    c.training.epochs = 10
    c.pruning.levels = 2
    summary = find_ticket(c, tmp_path, log_fn=lambda line: None)
    assert summary["dense_test_accuracy"] >= 0.90
    for level in range(3):
        assert (tmp_path / f"level_{level:02d}" / "ticket" / "ticket.json").exists()
    figure = matplotlib.image.imread(tmp_path / "figures" / "levels.png")  # accuracy against pruning, per-layer sparsity
    assert figure.shape[1] > 800 and figure[..., :3].std() > 0.01
    environment = json.loads((tmp_path / "config.json").read_text())["environment"]
    assert environment["git"]["commit"] and isinstance(environment["git"]["dirty"], bool)  # the suite runs from the checkout
    assert environment["command"] and environment["device_kind"] == "cpu" and environment["packages"]["lth_jax"]
    assert environment["jax_environment"]["JAX_PLATFORMS"] == "cpu"
    levels = events(tmp_path / "tensorboard" / "levels")  # TensorBoard, without TensorFlow
    assert {"test_accuracy", "test_loss", "weights_remaining", "fraction_remaining"} <= set(levels.Tags()["scalars"])
    assert [e.step for e in levels.Scalars("weights_remaining")] == [0, 1, 2]
    curves = events(tmp_path / "tensorboard" / "level_01")
    assert [e.step for e in curves.Scalars("test_loss")] == list(range(2, 11))  # late resetting: from the end of epoch 1
    assert "train_loss" in curves.Tags()["scalars"]
    # the transfer report reads a find_ticket run too: its own tickets against the dense network
    path = report.write_report([tmp_path], tmp_path / "report")
    assert "**digits**, trained with sgd" in path.read_text() and (tmp_path / "report" / "accuracy_digits_sgd.png").exists()


def events(directory):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(directory))
    accumulator.Reload()
    return accumulator


def test_event_bytes_are_the_protos_and_a_level_flushes_what_it_wrote(tmp_path):
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary

    from lth_jax.tensorboard import EventLog, event_bytes

    def proto(wall_time, step=0, values=None, file_version=None):
        event = Event(wall_time=wall_time, step=step)
        if file_version is not None:
            event.file_version = file_version
        if values is not None:
            event.summary.CopyFrom(Summary(value=[Summary.Value(tag=t, simple_value=v) for t, v in values.items()]))
        return event.SerializeToString()

    odd = {"loss": 0.25, "zero": 0.0, "minus zero": -0.0, "é/0": float("nan"), "x" * 200: float("inf"), "tiny": 1e-45}
    for wall_time, step, values in [(1.7e9, 0, None), (0.0, 0, {"a": 0.0}), (-0.0, 1, None), (1.5, 300, odd), (2.0, 2**40, {"b": -3.5})]:
        assert event_bytes(wall_time, step, values) == proto(wall_time, step, values)
    assert event_bytes(1.7e9, file_version="brain.Event:2") == proto(1.7e9, file_version="brain.Event:2")
    from tensorboardX.record_writer import RecordWriter

    from lth_jax.tensorboard import record_bytes, scalars

    framed = [event_bytes(1.5, 300, odd), b"", bytes(range(256)) * 40]
    writer = RecordWriter(str(tmp_path / "records"))
    for data in framed:
        writer.write(data)
    writer.close()
    assert b"".join(map(record_bytes, framed)) == (tmp_path / "records").read_bytes()  # tensorboardX's framing, byte for byte
    assert scalars({"a": True, "b": None, "c": np.float64(2.5), "d": np.float32(1), "e": [1, True, 2.5], "f": (1, 2), "g": [], "h": ["x"],
                    "i": 3}) == {"c": 2.5, "e/0": 1.0, "e/1": 1.0, "e/2": 2.5, "f/0": 1.0, "f/1": 2.0, "i": 3.0}
    assert scalars({"loss": 0.5, "acc": [0.9, 0.8], "n": 3}, ("acc", "x", "loss")) == {"acc/0": 0.9, "acc/1": 0.8, "loss": 0.5}
    log = EventLog(tmp_path)
    log.epoch({"seed": 0, "level": 1, "epoch": 3, "train_loss": 0.5, "test_accuracy": [0.9, 0.8]}, by_seed=True)
    log.level(1, {"weights_remaining": 10.0}, seed=0)  # flushed: readable while the run goes on
    curves = events(tmp_path / "seed_0" / "level_01")
    assert [(e.step, e.value) for e in curves.Scalars("test_accuracy/1")] == [(3, pytest.approx(0.8))]
    assert [(e.step, e.value) for e in events(tmp_path / "seed_0" / "levels").Scalars("weights_remaining")] == [(1, 10.0)]
    log.close()


def test_presets_say_what_the_papers_say():
    sgd = morcos_vgg19_sgd.get_config()
    assert (sgd.model, sgd.dataset, sgd.rewind) == ("cifar_vgg_19", "cifar10", "1ep")
    recipe = train_config(sgd)
    assert (recipe.epochs, recipe.batch_size) == (160, 512)
    assert (recipe.optimizer.name, recipe.optimizer.learning_rate, recipe.optimizer.momentum, recipe.optimizer.weight_decay) == ("sgd", 0.1, 0.9, 1e-4)
    assert recipe.optimizer.milestones == (80.0, 120.0) and recipe.optimizer.gamma == 0.1
    plan = pruning_plan(sgd)
    assert plan.trajectory(10_000)[-1] == round(10_000 * 0.8**30) and plan.scope == "global"
    adam = train_config(morcos_vgg19_adam.get_config()).optimizer
    assert (adam.name, adam.learning_rate) == ("adam", 3e-4)
    r50 = morcos_resnet50_adam.get_config()
    assert r50.model == "resnet_50" and r50.model_kwargs.stem == "cifar" and r50.training.epochs == 90
    assert tuple(r50.optimizer.milestones) == (50.0, 65.0, 80.0) and r50.optimizer.name == "adam"
    assert openlth_cifar_vgg.get_config("19").model == "cifar_vgg_19" and openlth_cifar_vgg.get_config().training.batch_size == 128
    assert openlth_cifar_resnet.get_config().model == "cifar_resnet_20"
    lenet = openlth_mnist_lenet_300_100.get_config()
    assert (lenet.training.epochs, lenet.optimizer.momentum, tuple(lenet.pruning.exclude)) == (40, 0.0, ("^fc/",))


def run_script(*args):
    return subprocess.run([sys.executable, "-m", "experiments.find_ticket", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=script_env())


def test_script_with_overrides(tmp_path):
    proc = run_script("--config=experiments/configs/find_ticket_digits_conv2.py", f"--workdir={tmp_path}", "--config.training.epochs=2",
                      "--config.pruning.levels=1", "--config.model_kwargs.width_multiplier=0.25")
    assert proc.returncode == 0, proc.stderr
    assert "level  1  weights" in proc.stdout
    assert json.loads((tmp_path / "summary.json").read_text())["levels_trained"] == 2
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["test_accuracy"] is not None and r["epoch"] == 2 for r in rows)  # every level trained


@pytest.mark.parametrize(
    "args,message",
    [
        (["--config.dataset=cifar11"], "error: unknown dataset 'cifar11'; known datasets:"),
        (["--config.model=vgg_19"], "error: unknown model 'vgg_19'; known models:"),
        (["--config.dataset=cifar10", "--config.input_shape=(32,32,3)", "--config.data_dir=/nonexistent/tfds"],
         "error: TFDS dataset 'cifar10' is not prepared in /nonexistent/tfds/cifar10/3.0.2: prepare it with `tfds build cifar10 --file_format=array_record`"),
        (["--config.dataset=cifar10", "--data_dir=/elsewhere/tfds"], "error: TFDS dataset 'cifar10' is not prepared in /elsewhere/tfds/cifar10/3.0.2"),
        (["--config.optimizer.name=rmsprop"], "error: optimizer name='rmsprop' is not one of sgd, adam, adamw"),
        (["--config.model_kwargs.depth=3"], "error: a --config override names a field the config does not have: 'depth'"),
        (["--config=experiments/configs/nope.py"], "error: --config=experiments/configs/nope.py is neither a config file nor a preset"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, message):
    assert_one_line_error(run_script("--config=experiments/configs/find_ticket_digits_lenet.py", f"--workdir={tmp_path}", *args), message)


def test_a_level_diverging_at_an_unevaluated_epoch_stops_the_run_with_one_line(tmp_path):
    """eval_every_epochs=3 and a learning rate that blows up in epoch 1: the level stops there, with no
    eval loss to read; the run stops at that level (nothing is pruned from its weights) with the one line."""
    c = digits_lenet.get_config()
    c.training.epochs, c.training.eval_every_epochs, c.pruning.levels = 4, 3, 2
    c.optimizer.learning_rate = 1e4
    with pytest.raises(UserError, match=r"^seed 0 diverged at level 0 \(train loss .*\): lower --config\.optimizer\.learning_rate=10000 "
                                        r"and use a new workdir; the levels before it are kept$"):
        find_ticket(c, tmp_path, log_fn=lambda line: None)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["level"], r["diverged"], r["epoch"]) for r in rows] == [(0, True, 1)]
    assert (tmp_path / "level_00" / "record.json").exists() and not (tmp_path / "level_01" / "record.json").exists()


def small_digits(**training):
    c = digits_lenet.get_config()
    c.input_shape = (8, 8, 1)  # the digits' own pixels: a small LeNet-300-100
    c.training.update(epochs=3, **training)
    c.pruning.levels = 2
    return c


def test_seeds_trained_together_give_each_seed_its_own_run_and_the_tickets_it_gets_alone(tmp_path, monkeypatch):
    import regression

    from lth_jax import drawing, recipe
    from lth_jax import find_ticket as module

    c = small_digits()
    c.seeds = (0, 1, 2)
    data = recipe.load_data(c)
    assert recipe.replicas_together(c, data, 3) and not recipe.replicas_together(c, data, 1)
    drawn_here, attempt = [], drawing._attempt
    monkeypatch.setattr(module, "helpers_for", lambda figures: 1)  # seed 1's figure is the helper's (its arguments pickle)
    monkeypatch.setattr(drawing, "_attempt", lambda plot, args, path: drawn_here.append(path.parent.parent.name) or attempt(plot, args, path))
    summary = find_ticket(c, tmp_path / "together", log_fn=lambda line: None)
    assert drawn_here == ["seed_0", "seed_2"]
    monkeypatch.undo()
    assert summary["replicas"] == "vmap" and sorted(summary["seeds"]) == ["0", "1", "2"]
    for s in (1, 2):
        alone = digits_lenet.get_config()
        alone.update(dict(input_shape=(8, 8, 1), seed=s))
        alone.training.epochs, alone.pruning.levels = 3, 2
        find_ticket(alone, tmp_path / f"alone_{s}", log_fn=lambda line: None)
        seed_dir = tmp_path / "together" / f"seed_{s}"
        assert json.loads((seed_dir / "config.json").read_text())["config"]["seed"] == s
        assert (seed_dir / "figures" / "levels.png").exists() and len((seed_dir / "metrics.jsonl").read_text().splitlines()) == 3
        # counts exact, masks within what other arithmetic explains (bit-identical on the CPUs measured: BUILD_NOTES)
        assert regression.compare_outcomes(regression.outcomes(tmp_path / f"alone_{s}"), regression.outcomes(seed_dir)) == []
    c.replicas = "sequential"  # the same seeds one after another: the same run directories, resumed as they are
    assert find_ticket(c, tmp_path / "together", log_fn=lambda line: None)["replicas"] == "sequential"
    c.replicas = "sometimes"
    with pytest.raises(UserError, match="replicas='sometimes' is not one of auto, vmap, sequential"):
        find_ticket(c, tmp_path / "other", log_fn=lambda line: None)
    c.replicas, c.seed = "auto", 7
    with pytest.raises(UserError, match="seed=7 and seeds=0,1,2: give one of them"):
        find_ticket(c, tmp_path / "other", log_fn=lambda line: None)


def test_seeds_trained_together_killed_at_every_write_resume_to_the_same_results(tmp_path, monkeypatch):
    from test_crash import crash_everywhere, tiny_digits

    from lth_jax import plots

    monkeypatch.setattr(plots, "save", lambda *args: None)  # drawn anew at the end of every run: not part of what resumes

    def grouped(workdir):
        c = tiny_digits()
        c.seeds = (0, 1)
        c.rewind = "1ep"
        find_ticket(c, workdir, log_fn=lambda line: None)

    moments = crash_everywhere(grouped, tmp_path, monkeypatch)
    assert any("seed_1/level_01" in m for m in moments) and any(m.endswith("summary.json") for m in moments)
