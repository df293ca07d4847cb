import jax
import numpy as np
import pytest
from helpers import ConvBN, image_data, vector_data

from lth_jax import masks, objectives
from lth_jax.data import ArrayDataset
from lth_jax.loop import early_stopping_update, fit
from lth_jax.models import MLP
from lth_jax.optim import OptimizerRecipe, make_optimizer
from lth_jax.train import TrainConfig, create_train_state, evaluate, init_variables, make_eval_step, make_train_step, parse_steps

ADAM = OptimizerRecipe(name="adam", learning_rate=1e-2)


def mlp_setup(shape=(4, 16, 2), seed=0):
    model = MLP(shape)
    params, _ = init_variables(model, jax.random.PRNGKey(seed), np.zeros((1, shape[0]), np.float32))
    return model, params


class CompileCounter:
    """Counts XLA backend compilations while active."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.count = 0

    def __call__(self, event, duration, **kwargs):
        if event == self.EVENT:
            self.count += 1

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self)


def test_changing_the_mask_does_not_recompile():
    model, params = mlp_setup()
    data = vector_data(n=64)
    tx = make_optimizer(ADAM, 4, 40)
    objective = objectives.sigmoid_tasks(2)
    step = make_train_step(model, tx, objective)
    evaluate_step = make_eval_step(model, objective)
    batches = list(data.batches(16, seed=0))
    state = create_train_state(params, tx)
    mask = state.mask

    def level(state, mask):
        mask = masks.global_magnitude_prune(jax.device_get(state.params), mask, fraction=0.5)
        state = create_train_state(params, tx, mask=mask, step=7)
        for b in batches:
            state, _ = step(state, b)
        evaluate(state, evaluate_step, data, 16)
        return state, mask

    state, mask = level(state, mask)  # the first level compiles everything once
    with CompileCounter() as counter:
        for _ in range(3):
            state, mask = level(state, mask)
    assert counter.count == 0
    assert masks.count_remaining(mask) < masks.count_prunable(params) // 8
    # the counter does count: a new batch size compiles
    with CompileCounter() as counter:
        step(state, next(iter(data.batches(8))))
    assert counter.count >= 1


def test_fast_path_skipping_the_forward_mask_gives_the_same_training():
    model = ConvBN()
    data = image_data(n=32)
    params, stats = init_variables(model, jax.random.PRNGKey(0), data.x[:1])
    mask = masks.global_magnitude_prune(params, masks.init_mask(params), fraction=0.7)
    tx = make_optimizer(OptimizerRecipe(name="sgd", learning_rate=0.1, weight_decay=1e-3), 2, 20)
    objective = objectives.softmax_classification()
    results = []
    for mask_forward in (True, False):
        state = create_train_state(params, tx, mask=mask, batch_stats=stats)
        step = make_train_step(model, tx, objective, mask_forward=mask_forward)
        for _ in range(4):
            for b in data.batches(16, seed=0):
                state, sums = step(state, b)
        results.append(jax.device_get(state))
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_fit_zeroes_pruned_weights_of_a_hand_built_state():
    """``state.replace(mask=...)`` without zeroing params: fit masks them at entry."""
    model, params = mlp_setup()
    tx = make_optimizer(ADAM, 4, 4)
    objective = objectives.sigmoid_tasks(2)
    mask = masks.global_magnitude_prune(params, masks.init_mask(params), fraction=0.5)
    state = create_train_state(params, tx).replace(mask=mask)  # params still dense
    config = TrainConfig(epochs=1, batch_size=16, optimizer=ADAM, log_every_epochs=0)
    step = make_train_step(model, tx, objective, mask_forward=False)
    result = fit(state, train_step_fn=step, eval_step_fn=make_eval_step(model, objective), train_data=vector_data(n=64), eval_data=vector_data(n=16), config=config)
    for p, m in zip(jax.tree.leaves(result.state.params), jax.tree.leaves(mask)):
        assert np.all(np.asarray(p)[~np.asarray(m)] == 0.0)
    assert np.any(np.asarray(jax.tree.leaves(state.params)[1])[~np.asarray(jax.tree.leaves(mask)[1])] != 0)  # the caller's state is untouched


def test_padded_last_batch_gives_exact_means():
    model, params = mlp_setup()
    tx = make_optimizer(ADAM, 1, 1)
    state = create_train_state(params, tx)
    objective = objectives.sigmoid_tasks(2)
    eval_step = make_eval_step(model, objective)
    data = vector_data(n=50)
    whole = evaluate(state, eval_step, data, 50)
    padded = evaluate(state, eval_step, data, 16)  # 16+16+16+2, last padded with weight 0
    assert padded["test_loss"] == pytest.approx(whole["test_loss"], rel=1e-5)
    assert padded["test_accuracy"] == pytest.approx(whole["test_accuracy"], rel=1e-6)
    assert len(whole["test_accuracy"]) == 2


def test_epoch_order_is_deterministic_and_covers_the_data():
    data = ArrayDataset(np.arange(10, dtype=np.float32)[:, None], np.arange(10))
    e0 = [b["y"] for b in data.batches(4, seed=3, epoch=0)]
    again = [b["y"] for b in data.batches(4, seed=3, epoch=0)]
    e1 = [b["y"] for b in data.batches(4, seed=3, epoch=1)]
    assert all(np.array_equal(a, b) for a, b in zip(e0, again))
    assert not all(np.array_equal(a, b) for a, b in zip(e0, e1))
    seen = np.concatenate(e0)[: len(data)]
    assert sorted(seen.tolist()) == list(range(10))
    weights = [b["weight"] for b in data.batches(4, seed=3, epoch=0)]
    assert weights[-1].tolist() == [1, 1, 0, 0]
    resumed = [b["y"] for b in data.batches(4, seed=3, epoch=0, start=1)]
    assert all(np.array_equal(a, b) for a, b in zip(e0[1:], resumed))
    assert data.steps_per_epoch(4) == 3 and data.steps_per_epoch(4, drop_remainder=True) == 2


def test_early_stopping_rule_of_the_thesis():
    losses = [1.0, 0.9, 0.95, 0.91, 0.85, 0.86, 0.87, 0.88]
    best, counter, stops = np.inf, 0, []
    for loss in losses:
        best, counter, stop = early_stopping_update(best, counter, loss, 3)
        stops.append(bool(stop))
    # two epochs without a new minimum do not stop; the minimum at epoch 5 resets the
    # counter; the third epoch after it without a new minimum stops
    assert stops == [False] * 7 + [True]
    assert float(best) == pytest.approx(0.85)


def test_fit_early_stops_without_restoring_and_captures_rewind():
    model, params = mlp_setup()
    data = vector_data(n=64)
    config = TrainConfig(epochs=200, batch_size=16, optimizer=OptimizerRecipe(name="adam", learning_rate=0.3), early_stopping_patience=2, log_every_epochs=0)
    tx = make_optimizer(config.optimizer, 4, 800)
    objective = objectives.sigmoid_tasks(2)
    captured = []
    result = fit(
        create_train_state(params, tx),
        train_step_fn=make_train_step(model, tx, objective),
        eval_step_fn=make_eval_step(model, objective),
        train_data=data,
        eval_data=vector_data(n=32, seed=1),
        config=config,
        rewind_step=6,
        on_rewind=captured.append,
    )
    history = result.history
    assert result.progress.stopped_early and len(history) < 200
    losses = [r["test_loss"] for r in history]
    best_epoch = int(np.argmin(losses))
    assert len(history) == best_epoch + 1 + 2  # stops `patience` epochs after the last minimum
    assert result.final["test_loss"] == losses[-1]  # no restore of the best weights
    assert captured and captured[0].step == 6 and result.rewind is captured[0]
    assert int(result.state.step) == len(history) * 4


def test_fit_resumes_mid_epoch_exactly():
    model = ConvBN()
    data = image_data(n=40)
    params, batch_stats = init_variables(model, jax.random.PRNGKey(0), data.x[:1])
    config = TrainConfig(epochs=3, batch_size=8, optimizer=OptimizerRecipe(name="sgd", learning_rate=0.05, weight_decay=1e-4), log_every_epochs=0)
    tx = make_optimizer(config.optimizer, 5, 15)
    objective = objectives.softmax_classification()
    kwargs = dict(
        train_step_fn=make_train_step(model, tx, objective),
        eval_step_fn=make_eval_step(model, objective),
        train_data=data,
        eval_data=data,
        config=config,
    )
    start = create_train_state(params, tx, batch_stats=batch_stats, rng=jax.random.PRNGKey(5))
    full = fit(start, **kwargs)
    # the same run, stopped after 7 steps (mid-epoch 2) and continued
    short = TrainConfig(**{**config.to_dict(), "optimizer": config.optimizer, "epochs": 3})
    step_fn = kwargs["train_step_fn"]
    state = start
    for i, batch in enumerate(b for e in range(2) for b in data.batches(8, seed=0, epoch=e)):
        if i == 7:
            break
        state, _ = step_fn(state, batch)
    resumed = fit(state, **{**kwargs, "config": short})
    for a, b in zip(jax.tree.leaves(full.state.params), jax.tree.leaves(resumed.state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    for a, b in zip(jax.tree.leaves(full.state.batch_stats), jax.tree.leaves(resumed.state.batch_stats)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_parse_steps():
    assert parse_steps(0, 10) == 0
    assert parse_steps("1ep", 391) == 391
    assert parse_steps("0.5ep", 10) == 5
    assert parse_steps("500it", 10) == 500
    assert parse_steps("0", 10) == 0 and parse_steps("12", 10) == 12
    for bad in ("1 epoch", "ep", "-3it", "1.5it"):
        with pytest.raises(ValueError, match="step spec"):
            parse_steps(bad, 10)


def test_bad_train_configs():
    with pytest.raises(ValueError, match="epochs=0 must be >= 1"):
        TrainConfig(epochs=0, batch_size=8)
    with pytest.raises(ValueError, match="early_stopping_patience=0"):
        TrainConfig(epochs=1, batch_size=8, early_stopping_patience=0)
    with pytest.raises(ValueError, match="x has 3 examples but y has 2"):
        ArrayDataset(np.zeros((3, 2)), np.zeros(2))


def test_resume_stage_starts_from_the_stage_checkpoint_and_says_so():
    from lth_jax.loop import FitProgress, resume_stage

    class FakeStage:  # what resume_stage needs of a Stage: resume and save_checkpoint
        saved = None

        def resume(self, state):
            return (state, None) if self.saved is None else self.saved

        def save_checkpoint(self, state, progress):
            self.saved = (state, progress)

    lines = []
    assert resume_stage(None, "state", tag="level  1", log_fn=lines.append) == ("state", None, None)
    stage = FakeStage()
    _, params = mlp_setup()
    state = create_train_state(params, make_optimizer(ADAM, 10, 100), rng=jax.random.PRNGKey(0), step=0)
    start, progress, checkpoint = resume_stage(stage, state, tag="level  1", log_fn=lines.append)
    assert start is state and progress is None and lines == []  # a fresh stage: nothing to resume, nothing said
    checkpoint(state.replace(step=7), FitProgress(history=[{"epoch": 1}], best_loss=0.5, patience_counter=2))
    assert stage.saved[1] == {"history": [{"epoch": 1}], "best_loss": 0.5, "patience_counter": 2, "stopped_early": False, "diverged": False}
    start, progress, _ = resume_stage(stage, state, tag="level  1", log_fn=lines.append)
    assert int(start.step) == 7 and progress == FitProgress([{"epoch": 1}], 0.5, 2) and lines == ["level  1: resuming from step 7"]
    assert resume_stage(stage, state)[1] == progress  # without log_fn: silent


def test_a_level_stopped_by_divergence_between_evaluations_records_it():
    """With eval_every_epochs=3, a loss that blows up in epoch 1 stops the level there, before any
    evaluation: its record carries that epoch's train loss and the flag, and divergence() names it."""
    from lth_jax.executors import DataParallelEpochs
    from lth_jax.loop import Replica, fit_replicas, level_record
    from lth_jax.sizes import divergence

    model, params = mlp_setup()
    data = vector_data(n=64)
    config = TrainConfig(epochs=6, batch_size=16, eval_every_epochs=3, optimizer=OptimizerRecipe(name="sgd", learning_rate=1e20),
                         log_every_epochs=0)
    tx = make_optimizer(config.optimizer, 4, 24)
    executor = DataParallelEpochs.build(model, tx, objectives.sigmoid_tasks(2), data, vector_data(n=32, seed=1), config,
                                        mesh=jax.sharding.Mesh(jax.devices()[:1], ("data",)))
    chance = float(np.log(2))
    (result,) = fit_replicas([Replica(create_train_state(params, tx))], executor, config, divergence_loss=100 * chance,
                             log_fn=lambda line: None)
    assert result.progress.diverged and len(result.history) < 3 and not any(r.get("evaluated") for r in result.history)
    record = level_record(0, {"weights_remaining": 10, "total_prunable": 10}, result, 1.0, 0)
    assert record["diverged"] and record["epochs"] == len(result.history) and "test_loss" not in record
    assert record["train_loss"] is result.history[-1]["train_loss"]  # the epoch that stopped it
    assert divergence(record, chance).startswith("train loss ")


def test_divergence_reads_the_losses_and_the_flag_of_a_level():
    from lth_jax.sizes import divergence

    assert divergence({"level": 0, "test_loss": 0.3, "train_loss": 0.2, "diverged": False, "epochs": 5}, 0.7) is None
    assert divergence({"level": 0, "test_loss": float("nan"), "train_loss": 0.2, "epochs": 5}, 0.7) == "test loss nan"
    assert divergence({"level": 0, "train_loss": 71.0, "epochs": 5}, 0.7) == "train loss 71"  # finite, above 100 × chance
    # the loop stopped it (say at a limit the record's rounded losses do not show): the flag alone says so
    assert divergence({"level": 0, "test_loss": 0.3, "diverged": True, "epochs": 2}, 0.7) == \
        "stopped at epoch 2 by the divergence rule (a loss NaN, infinite or above 100 × chance)"


def test_diverged_loss_on_floats_is_the_array_rule():
    from lth_jax.train import diverged_loss

    for limit in (None, 2.0, np.float64(2.0), np.float32(2.0)):
        for loss in (0.5, 2.0, 2.5, float("nan"), float("inf"), -float("inf")):
            array_rule = bool(diverged_loss(np.array([loss]), limit))
            assert diverged_loss(loss, limit) == array_rule == bool(diverged_loss(jax.numpy.asarray(loss), limit)), (loss, limit)
            assert array_rule == (not np.isfinite(loss) or (limit is not None and loss > limit))
