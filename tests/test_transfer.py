"""lth_jax.transfer and experiments/transfer.py: the chained study, resume, refused stale stages, the TFDS mock, errors."""

import dataclasses
import json
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import REPO, script_env
from helpers import assert_one_line_error

from experiments.configs import find_ticket_digits_conv2 as digits_conv2
from experiments.configs import find_ticket_digits_lenet as digits_lenet
from experiments.configs import find_ticket_morcos_vgg19_sgd as morcos_vgg19_sgd
from lth_jax import plots, report
from lth_jax.errors import UserError
from lth_jax.find_ticket import find_ticket
from lth_jax.results import read_jsonl
from lth_jax.rows import ROW_KEYS
from lth_jax.tickets import load_ticket
from lth_jax.transfer import TransferStudy, run_transfer_study

QUIET = dict(log_fn=lambda line: None)


def small_digits():
    c = digits_lenet.get_config()
    c.training.epochs = 3
    c.pruning.levels = 2
    return c


@pytest.fixture(scope="module")
def lenet_source(tmp_path_factory):
    """A finished find_ticket run on digits_a (levels 0-2), reused by several tests."""
    workdir = tmp_path_factory.mktemp("lenet_source")
    c = small_digits()
    c.dataset = "digits_a"
    find_ticket(c, workdir, **QUIET)
    return workdir


def record_times(workdir):
    return {p: p.stat().st_mtime_ns for p in workdir.rglob("record.json")}


def test_digits_study_with_both_baselines_two_seeds_and_resume(tmp_path, monkeypatch):
    study = TransferStudy(source="digits_a", targets=["digits_b"], baselines=("random", "target_own"), seeds=(0, 1))
    summary = run_transfer_study(small_digits(), study, tmp_path, **QUIET)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert all(set(row) == set(ROW_KEYS) for row in rows)
    kinds = sorted((r["ticket"], r["level"], r["seed"]) for r in rows)
    expected = [(k, level, s) for k in ("random", "target_own", "winning") for level in range(3) for s in (0, 1)] + [("dense", 0, 0), ("dense", 0, 1)]
    assert kinds == sorted(expected)
    winning = {(r["level"], r["seed"]): r for r in rows if r["ticket"] == "winning"}
    assert [winning[(level, 0)]["fraction_remaining"] for level in range(3)] == pytest.approx([1.0, 0.8, 0.64], abs=1e-5)
    assert all(r["source"] == "digits_a" and r["target"] == "digits_b" and r["source_optimizer"] == "sgd" for r in winning.values())
    # The trained start is the source ticket: its mask and θ_k ⊙ m (same 10 classes: the head is kept).
    source = load_ticket(tmp_path / winning[(2, 1)]["ticket_dir"])
    start = load_ticket(tmp_path / "transfer" / "digits_a_sgd__digits_b_sgd" / "seed_1" / "winning_level_02" / "ticket")
    for a, b in zip(*(map(np.asarray, jax.tree.leaves(t)) for t in (source.mask, start.mask))):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(start.params["fc_0"]["kernel"]), np.asarray(source.params["fc_0"]["kernel"]))
    assert start.info["head_state"] == "kept" and source.info["dataset"] == "digits_a"
    assert {g["ticket"] for g in summary["groups"]} == {"winning", "random", "target_own", "dense"}
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))

    # The same study again: every stage is skipped, nothing changes.
    times = record_times(tmp_path)
    again = run_transfer_study(small_digits(), study, tmp_path, **QUIET)
    assert record_times(tmp_path) == times and read_jsonl(tmp_path / "metrics.jsonl") == rows and again == summary

    # The report draws the winning, random and target-own curves of the target.
    labels = []
    real_save = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, path: labels.extend(t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()) or real_save(fig, path))
    path = report.write_report([tmp_path], tmp_path / "report")
    assert (tmp_path / "report" / "accuracy_digits_b_sgd.png").stat().st_size > 0 and path.exists()
    assert any("digits_a (sgd)" == label for label in labels)
    assert any("random" in label for label in labels) and any("own" in label for label in labels)


def test_optimizer_transfer_reuses_tickets_of_an_existing_run(tmp_path, lenet_source):
    study = TransferStudy(source=None, targets=["digits_a"], baselines=(), seeds=(0,), target_optimizer="adam", source_workdir=str(lenet_source), levels=[2])
    run_transfer_study(small_digits(), study, tmp_path, **QUIET)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert sorted((r["ticket"], r["level"]) for r in rows) == [("dense", 0), ("winning", 2)]
    row = next(r for r in rows if r["ticket"] == "winning")
    assert (row["source_optimizer"], row["target_optimizer"]) == ("sgd", "adam")
    assert not (tmp_path / "source").exists()  # the tickets were read, not found again
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["target_config"]["optimizer"]["name"] == "adam" and config["target_config"]["optimizer"]["learning_rate"] == 3e-4


def test_cifar100_to_svhn_under_the_tfds_mock_with_report(tmp_path):
    c = morcos_vgg19_sgd.get_config()
    c.model = "cifar_vgg_11"
    c.model_kwargs.width_multiplier = 1 / 16
    c.training.update(epochs=2, batch_size=8, log_every_epochs=0)
    c.optimizer.milestones = (1.0,)
    c.pruning.levels = 1
    study = TransferStudy(source="cifar100", targets=["svhn_cropped"], baselines=("random", "target_own"))
    with tfds.testing.mock_data(num_examples=24):
        run_transfer_study(c, study, tmp_path, **QUIET)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    for target in ("svhn_cropped",):
        got = sorted((r["ticket"], r["level"]) for r in rows if r["target"] == target)
        assert got == [("dense", 0), ("random", 0), ("random", 1), ("target_own", 0), ("target_own", 1), ("winning", 0), ("winning", 1)]
    start = load_ticket(tmp_path / "transfer" / "cifar100_sgd__svhn_cropped_sgd" / "seed_0" / "winning_level_01" / "ticket")
    assert start.info["head_state"] == "fresh" and start.mask["fc"]["kernel"].shape == (32, 10) and start.mask["fc"]["kernel"].all()
    for target in ("svhn_cropped",):  # one denominator: every kind counts the fresh dense head of the target model
        totals = {r["ticket"]: r["weights_remaining"] / r["fraction_remaining"] for r in rows if r["target"] == target and r["level"] == 1}
        assert len({round(t) for t in totals.values()}) == 1, totals
    markdown = report.write_report([tmp_path], tmp_path / "report").read_text()
    assert "accuracy_svhn_cropped_sgd.png" in markdown
    assert (tmp_path / "report" / "accuracy_svhn_cropped_sgd.png").stat().st_size > 0


def run_script(*args):
    return subprocess.run([sys.executable, "-m", "experiments.transfer", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=script_env())


def test_script_bad_input_is_one_line_and_loses_nothing(tmp_path, lenet_source):
    lenet = ["--config=experiments/configs/transfer_digits.py", "--config.recipe.training.epochs=3"]
    common = [f"--config.source_workdir={lenet_source}", "--config.targets=digits_b", "--config.baselines=", "--config.seeds=0",
              f"--workdir={tmp_path}"]
    ok = run_script(*lenet, *common, "--config.levels=1")
    assert ok.returncode == 0, ok.stderr
    assert "| digits_a (sgd) |" in ok.stdout and (tmp_path / "report" / "report.md").exists()
    metrics, times = (tmp_path / "metrics.jsonl").read_text(), record_times(tmp_path)
    cases = [
        ([*lenet, "--config.levels=7"], f"error: --config.levels=7: level 7 does not exist in {lenet_source}; levels that do: 0, 1, 2"),
        ([*lenet, "--config.target_optimizer=rmsprop"], "error: --config.target_optimizer='rmsprop' is not one of config, sgd, adam"),
        ([*lenet, "--target_config=experiments/configs/find_ticket_digits_conv2.py", "--config.levels=1"],
         "error: the ticket does not fit the target model: the target has conv_0/bias (64,), the ticket has no such parameter"),
        ([*lenet, "--config.levels=1", "--config.reinit_head=true"],
         "holds a run with head='kept'; this run asks head='fresh'"),
        ([*lenet, "--config.levels=1", "--config.recipe.training.epochs=4"],
         "holds a run with target.training.epochs=3; this run asks target.training.epochs=4"),
    ]
    for extra, message in cases:
        assert_one_line_error(run_script(*extra, *common), message)
    assert (tmp_path / "metrics.jsonl").read_text() == metrics and record_times(tmp_path) == times


def test_changed_baseline_settings_are_refused_before_anything_trains(tmp_path, lenet_source):
    study = TransferStudy(source=None, targets=["digits_b"], baselines=("random",), seeds=(0,), source_workdir=str(lenet_source), levels=[1])
    run_transfer_study(small_digits(), study, tmp_path, **QUIET)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.json*")}
    for change, message in ((dict(random_scope="global"), "random_scope='layer'; this run asks random_scope='global'"),
                            (dict(reinit_head=True), "head='kept'; this run asks head='fresh'")):
        with pytest.raises(UserError, match=message):
            run_transfer_study(small_digits(), dataclasses.replace(study, **change), tmp_path, **QUIET)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.json*")} == before
    again = run_transfer_study(small_digits(), dataclasses.replace(study, prune_head=True), tmp_path, **QUIET)  # kept head: no effect
    assert again["groups"] and {p: p.read_bytes() for p in tmp_path.rglob("record.json")} == {p: v for p, v in before.items() if p.name == "record.json"}


def test_a_target_that_does_not_fit_is_found_before_the_source_trains(tmp_path):
    study = TransferStudy(source="digits_a", targets=["digits_b"], baselines=())
    with pytest.raises(UserError, match="the ticket does not fit the target model"):
        run_transfer_study(small_digits(), study, tmp_path, target_config=digits_conv2.get_config(), **QUIET)
    assert not (tmp_path / "source").exists()


def test_all_rows_of_a_target_count_over_one_denominator(tmp_path):
    c = small_digits()
    c.pruning.exclude = ("^fc/",)  # the output layer dense, as OpenLTH's VGG presets
    study = TransferStudy(source="digits_a", targets=["digits_b"], baselines=("random", "target_own"))
    run_transfer_study(c, study, tmp_path, **QUIET)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    totals = {(r["ticket"], r["level"]): r["weights_remaining"] / r["fraction_remaining"] for r in rows}
    assert len({round(t) for t in totals.values()}) == 1, totals  # the prunable weights without the output layer
    by_kind = {(r["ticket"], r["level"]): r["fraction_remaining"] for r in rows}
    for level in (1, 2):
        assert by_kind[("winning", level)] == by_kind[("random", level)] == by_kind[("target_own", level)]


def test_a_changed_recipe_of_the_targets_own_tickets_is_refused(tmp_path, lenet_source):
    study = TransferStudy(source=None, targets=["digits_b"], baselines=("target_own",), seeds=(0,), source_workdir=str(lenet_source), levels=[1])
    run_transfer_study(small_digits(), study, tmp_path, **QUIET)
    changed = small_digits()
    changed.pruning.rate = 0.3  # only the target's own tickets see it
    with pytest.raises(UserError, match=r"target/digits_b_sgd/seed_0 holds a run with plan.rate=0.2; this run asks plan.rate=0.3"):
        run_transfer_study(small_digits(), study, tmp_path, target_config=changed, **QUIET)


def test_the_tickets_of_a_target_train_together_as_they_train_one_by_one(tmp_path, lenet_source):
    """Every transferred and random ticket of a target as replicas of one program: the records
    equal those of the tickets trained one after another (the masks are made before training)."""
    study = TransferStudy(source=None, targets=["digits_b"], baselines=("random",), seeds=(0,), source_workdir=str(lenet_source),
                          levels=[1, 2])
    together = run_transfer_study(small_digits(), study, tmp_path / "together", **QUIET)
    apart = small_digits()
    apart.replicas = "sequential"
    one_by_one = run_transfer_study(small_digits(), study, tmp_path / "apart", target_config=apart, **QUIET)
    rows = {name: {(r["ticket"], r["level"]): r for r in read_jsonl(tmp_path / name / "metrics.jsonl")} for name in ("together", "apart")}
    assert sorted(rows["together"]) == sorted(rows["apart"]) and len(rows["together"]) == 5  # 2 winning, 2 random, dense
    for key, row in rows["together"].items():
        assert row["weights_remaining"] == rows["apart"][key]["weights_remaining"]
        assert row["test_accuracy"] == pytest.approx(rows["apart"][key]["test_accuracy"], abs=1e-6), key
    assert together["groups"] and one_by_one["groups"]


def test_a_grouped_transfer_killed_at_every_write_resumes_to_the_same_results(tmp_path, monkeypatch):
    from test_crash import crash_everywhere, tiny_digits

    source = tmp_path / "source"
    c = tiny_digits()
    c.dataset = "digits_a"
    find_ticket(c, source, **QUIET)

    def grouped(workdir):  # a winning and a random ticket: replicas of one program
        study = TransferStudy(source=None, targets=["digits_b"], baselines=("random",), seeds=(0,), source_workdir=str(source), levels=[1])
        run_transfer_study(tiny_digits(), study, workdir, **QUIET)

    moments = crash_everywhere(grouped, tmp_path / "runs", monkeypatch)
    assert any("random_level_01" in m for m in moments) and any("winning_level_01" in m for m in moments)


def test_the_targets_own_tickets_draw_their_own_initialization_unless_shared(tmp_path):
    """Seed 0's source run and the target's own run start from other weights (independent streams),
    and from the same ones with shared_init; a random ticket never starts from the source's weights."""

    def weights(path):
        return [np.asarray(leaf) for leaf in jax.tree.leaves(load_ticket(path).params)]

    c = small_digits()
    c.rewind, c.training.epochs, c.pruning.levels = "0", 1, 1  # level 0's ticket holds the initialization itself
    source_c = small_digits()
    source_c.update(dict(rewind="0", dataset="digits_a"))
    source_c.training.epochs, source_c.pruning.levels = 1, 1
    find_ticket(source_c, tmp_path / "source", **QUIET)
    source = weights(tmp_path / "source" / "level_00" / "ticket")
    for shared in (False, True):
        study = TransferStudy(source=None, targets=["digits_b"], baselines=("random", "target_own"), seeds=(0,),
                              source_workdir=str(tmp_path / "source"), levels=[1], shared_init=shared)
        workdir = tmp_path / f"shared_{shared}"
        run_transfer_study(c, study, workdir, **QUIET)
        own_dir = workdir / "target" / "digits_b_sgd" / "seed_0" / "level_00" / "ticket"
        own = weights(own_dir)
        assert all(np.array_equal(a, b) for a, b in zip(source, own)) == shared
        assert json.loads((own_dir / "ticket.json").read_text())["init_stream"] == ("source" if shared else "target_own")
        random = weights(next((workdir / "transfer").rglob("random_level_01")) / "ticket")
        assert not any(np.array_equal(a, b) for a, b in zip(source, random) if a.ndim == 2)


def test_summary_groups_are_strict_json_for_one_seed():
    from lth_jax.rows import aggregate
    from lth_jax.transfer import _strict

    row = dict(source="a", source_optimizer="sgd", target="b", target_optimizer="sgd", ticket="winning", level=1,
               fraction_remaining=0.8, test_accuracy=0.9, test_loss=0.3, seed=0, model="m")
    group = _strict(aggregate([row])[0])
    assert group["test_accuracy_std"] is None and group["test_accuracy_low"] is None and group["test_accuracy_mean"] == 0.9
    json.dumps(group, allow_nan=False)  # raises on NaN or ±Infinity
