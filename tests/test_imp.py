import json

import jax
import numpy as np
import pytest
from conftest import run_python
from helpers import ConvBN, image_data, vector_data

from lth_jax import masks, objectives
from lth_jax.imp import PruningPlan, run_imp
from lth_jax.models import MLP
from lth_jax.optim import OptimizerRecipe, make_optimizer, param_like_subtrees
from lth_jax.tickets import load_ticket
from lth_jax.train import TrainConfig, create_train_state, init_variables, make_train_step
from lth_jax.trajectory import trajectory

SGD = OptimizerRecipe(name="sgd", learning_rate=0.05, momentum=0.9, weight_decay=1e-4, schedule="step", milestones=(2,))


def leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_late_resetting_with_batchnorm():
    model = ConvBN()
    train, test = image_data(n=48), image_data(n=24, seed=1)
    config = TrainConfig(epochs=3, batch_size=16, optimizer=SGD, log_every_epochs=0, drop_remainder=True)
    plan = PruningPlan(rate=0.5, levels=3)
    starts, levels = {}, {}
    result = run_imp(
        model,
        objectives.softmax_classification(),
        train,
        test,
        config,
        plan,
        rewind="1ep",
        seed=3,
        on_level_start=lambda level, state, seed: starts.__setitem__(level, jax.device_get(state)),
        level_callback=lambda r: levels.__setitem__(r.level, r),
        log_fn=lambda line: None,
    )
    k = 3  # 48 examples / 16 = 3 steps per epoch
    # θ_k independently: k steps from the initialization, with the same batches
    params0, stats0 = init_variables(model, jax.random.PRNGKey(3), train.x[:1])
    tx = make_optimizer(SGD, 3, 9)
    state = create_train_state(params0, tx, batch_stats=stats0, rng=jax.random.PRNGKey(3))
    step = make_train_step(model, tx, objectives.softmax_classification())
    for batch in train.batches(16, seed=(0, 3), epoch=0, drop_remainder=True):  # (config.data_seed, seed)
        state, _ = step(state, batch)
    theta_k = jax.device_get(state)
    assert result.rewind.step == k
    for a, b in zip(jax.tree.leaves(result.rewind.params), jax.tree.leaves(theta_k.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not leaves_equal(result.rewind.batch_stats, stats0)  # BatchNorm statistics moved in k steps

    total = masks.count_prunable(params0)
    assert result.trajectory == trajectory(total, rate=0.5, levels=3)
    assert [r["weights_remaining"] for r in result.records] == result.trajectory
    assert int(starts[0].step) == 0 and leaves_equal(starts[0].params, params0)
    for level in (1, 2, 3):
        start, mask = starts[level], levels[level].mask
        assert int(start.step) == k
        assert leaves_equal(start.params, masks.apply_mask(result.rewind.params, mask))  # exactly θ_k ⊙ m
        assert leaves_equal(start.batch_stats, result.rewind.batch_stats)
        assert leaves_equal(start.mask, mask)
        for tree in param_like_subtrees(start.opt_state, mask):  # a fresh optimizer state
            assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(tree))
        # the mask prunes the previous level's trained weights, nested in its mask
        previous = levels[level - 1]
        expected = masks.global_magnitude_prune(
            previous.trained_params, previous.mask, count=result.trajectory[level - 1] - result.trajectory[level]
        )
        assert leaves_equal(mask, expected)
        ticket = result.tickets[level]
        assert leaves_equal(ticket.params, start.params) and leaves_equal(ticket.mask, mask)
        assert ticket.info["level"] == level and ticket.info["rewind_step"] == k and ticket.info["model"] == "ConvBN"
        assert ticket.info["weights_remaining"] == result.trajectory[level]
    assert result.records[-1]["steps"] == 9


def mlp_run(workdir=None, **kwargs):
    model = MLP((4, 16, 16, 2))
    config = kwargs.pop("config", TrainConfig(epochs=4, batch_size=16, optimizer=OptimizerRecipe(name="adam", learning_rate=1e-2), log_every_epochs=0, checkpoint_every_epochs=1))
    plan = kwargs.pop("plan", PruningPlan(rate=0.4, levels=3))
    return run_imp(model, objectives.sigmoid_tasks(2), vector_data(n=80), vector_data(n=40, seed=1), config, plan, workdir=workdir, log_fn=kwargs.pop("log_fn", lambda line: None), **kwargs)


class Interrupt(Exception):
    pass


def final_masks(result):
    return [result.tickets[i].mask for i in range(len(result.tickets))]


def test_resume_after_a_failing_level_callback_and_mid_level(tmp_path):
    reference = mlp_run()

    def fail_after_level_1(r):
        if r.level == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        mlp_run(tmp_path, level_callback=fail_after_level_1)
    assert (tmp_path / "level_01" / "record.json").exists() and not (tmp_path / "level_02").exists()

    def fail_mid_level_2(state, record):
        if record["level"] == 2 and record["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        mlp_run(tmp_path, hooks=[fail_mid_level_2])
    assert [p.name for p in (tmp_path / "level_02" / "checkpoints").iterdir()] == ["10"]  # epoch 1 of 4, 5 steps each
    lines, seen = [], []
    resumed = mlp_run(tmp_path, log_fn=lines.append, level_callback=lambda r: seen.append(r.level))
    assert "level  2: resuming from step 10" in lines
    assert seen == [0, 1, 2, 3]  # finished levels are reported again, not retrained
    assert [r["weights_remaining"] for r in resumed.records] == reference.trajectory
    for a, b in zip(final_masks(resumed), final_masks(reference)):
        assert leaves_equal(a, b)
    for a, b in zip(resumed.records, reference.records):
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-5)
    assert not (tmp_path / "level_02" / "checkpoints").exists()
    # a finished run given again trains nothing
    again = mlp_run(tmp_path, hooks=[lambda s, r: pytest.fail("a finished run must not train")])
    assert [r["test_loss"] for r in again.records] == [r["test_loss"] for r in resumed.records]


def test_resume_after_a_killed_process(tmp_path):
    workdir = tmp_path / "run"
    script = f"""
    import os, signal, sys
    sys.path.insert(0, "tests")
    from test_imp import mlp_run

    def kill(state, record):
        if record["level"] == 2 and record["epoch"] == 3:
            os.kill(os.getpid(), signal.SIGKILL)

    mlp_run({str(workdir)!r}, hooks=[kill])
    """
    proc = run_python(script, check=False)
    assert proc.returncode == -9, proc.stderr
    assert (workdir / "level_01" / "record.json").exists() and not (workdir / "level_02" / "record.json").exists()
    resumed = mlp_run(workdir)
    reference = mlp_run()
    for a, b in zip(final_masks(resumed), final_masks(reference)):
        assert leaves_equal(a, b)


def test_level_callback_stops_the_run_and_tickets_are_on_disk(tmp_path):
    result = mlp_run(tmp_path, level_callback=lambda r: r.level == 1)
    assert result.stopped_at_level == 1 and len(result.records) == 2
    ticket = load_ticket(tmp_path / "level_01" / "ticket")
    assert ticket.info["weights_remaining"] == result.trajectory[1]
    assert masks.count_remaining(ticket.mask) == result.trajectory[1]
    history = [json.loads(line) for line in open(tmp_path / "level_01" / "history.jsonl")]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]


def test_changed_settings_on_an_existing_workdir_are_refused(tmp_path):
    mlp_run(tmp_path, plan=PruningPlan(rate=0.4, levels=1))
    with pytest.raises(ValueError, match=r"holds a run with plan.rate=0.4; this run asks plan.rate=0.5"):
        mlp_run(tmp_path, plan=PruningPlan(rate=0.5, levels=1))
    extended = mlp_run(tmp_path, plan=PruningPlan(rate=0.4, levels=2))  # more levels: allowed
    assert len(extended.records) == 3


def test_layerwise_scope_and_explicit_counts():
    layerwise = mlp_run(plan=PruningPlan(rate=0.5, levels=2, scope="layerwise"))
    for level in (1, 2):
        prev, cur = layerwise.tickets[level - 1].mask, layerwise.tickets[level].mask
        for name in ("hidden_0", "hidden_1", "output"):
            n = int(np.sum(prev[name]["kernel"]))
            assert int(np.sum(cur[name]["kernel"])) == n - round(0.5 * n)
    total = 4 * 16 + 16 * 16 + 16 * 2
    explicit = mlp_run(plan=PruningPlan(counts=(total, 200, 101, 37)))
    assert [r["weights_remaining"] for r in explicit.records] == [total, 200, 101, 37]
    excluded = mlp_run(plan=PruningPlan(rate=0.5, levels=1, exclude=("^output/",)))
    assert np.all(excluded.tickets[1].mask["output"]["kernel"])
    assert excluded.records[1]["weights_remaining"] == (total - 32) // 2


@pytest.mark.parametrize(
    "plan_kwargs,message",
    [
        ({"rate": 1.5, "levels": 2}, r"rate=1.5 is outside"),
        ({"rate": 0.2, "levels": -1}, r"levels=-1 is negative"),
        ({"levels": 2, "target": 10**6}, r"target=1000000 is above the total of 352"),
        ({"counts": (10, 20)}, r"non-increasing"),
        ({"counts": (353, 100)}, r"counts start at 353 but the model has 352"),
        ({"rate": 0.2, "levels": 1, "scope": "unstructured"}, r"scope='unstructured'"),
        ({"rate": 0.2, "levels": 1, "exclude": ("outptu",)}, r"'outptu' matches no prunable parameter"),
    ],
)
def test_bad_plans(plan_kwargs, message):
    with pytest.raises(ValueError, match=message):
        mlp_run(plan=PruningPlan(**plan_kwargs))


def test_rewind_past_or_at_the_end_is_refused():
    with pytest.raises(ValueError, match="rewind step '9ep' = 45 steps is past the end of training"):
        mlp_run(rewind="9ep")
    with pytest.raises(ValueError, match=r"rewind step '4ep' = 20 steps is at the end of training \(20 steps\): pruned levels would not train"):
        mlp_run(rewind="4ep")
    assert len(mlp_run(rewind="4ep", plan=PruningPlan(rate=0.4, levels=0)).records) == 1  # no pruned level: fine


def test_early_stopping_before_the_rewind_step_is_a_clear_error():
    config = TrainConfig(epochs=40, batch_size=16, optimizer=OptimizerRecipe(name="adam", learning_rate=1e-2), log_every_epochs=0,
                         early_stopping_patience=1)
    with pytest.raises(ValueError, match=r"level  0 stopped early at step \d+, before the rewind step 175: rewind earlier"):
        mlp_run(config=config, rewind="35ep")
