import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ConvBN, image_data

from lth_jax import masks, objectives
from lth_jax.optim import OptimizerRecipe, learning_rate_schedule, make_optimizer, mask_optimizer_state, param_like_subtrees
from lth_jax.train import create_train_state, init_variables, make_train_step

RECIPES = {
    "sgd_momentum_wd": OptimizerRecipe(name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-2),
    "sgd_nesterov_wd": OptimizerRecipe(name="sgd", learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "adam": OptimizerRecipe(name="adam", learning_rate=1e-2, weight_decay=1e-3),
    "adamw": OptimizerRecipe(name="adamw", learning_rate=1e-2, weight_decay=1e-1),
}


@pytest.mark.parametrize("mask_forward", [True, False])
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_pruned_weights_and_optimizer_state_stay_exactly_zero(name, mask_forward):
    model = ConvBN()
    data = image_data(n=32)
    params, batch_stats = init_variables(model, jax.random.PRNGKey(0), data.x[:1])
    # A random 90%-sparse mask over the prunable leaves (conv and head kernels).
    dense = masks.init_mask(params)
    sparse = masks.global_magnitude_prune(params, dense, fraction=0.9)
    mask = masks.random_mask(sparse, jax.random.PRNGKey(1), scope="layer")
    tx = make_optimizer(RECIPES[name], steps_per_epoch=1, total_steps=50)
    state = create_train_state(params, tx, mask=mask, batch_stats=batch_stats, rng=jax.random.PRNGKey(2))
    step = make_train_step(model, tx, objectives.softmax_classification(), mask_forward=mask_forward)
    start = jax.device_get(state.params)
    batches = list(data.batches(16, seed=0, epoch=0))
    for i in range(50):
        state, _ = step(state, batches[i % len(batches)])
    pruned = [~np.asarray(m) for m in jax.tree.leaves(mask)]
    for p, off in zip(jax.tree.leaves(state.params), pruned):
        assert np.all(np.asarray(p)[off] == 0.0)
    subtrees = param_like_subtrees(state.opt_state, mask)
    assert subtrees, "the optimizer state should hold momentum / moment trees"
    for tree in subtrees:
        for s, off in zip(jax.tree.leaves(tree), pruned):
            assert np.all(np.asarray(s)[off] == 0.0)
    # and training did move the kept weights (the test can fail)
    moved = [np.abs(np.asarray(a) - np.asarray(b))[~off].max() for a, b, off in zip(jax.tree.leaves(state.params), jax.tree.leaves(start), pruned) if (~off).any()]
    assert max(moved) > 1e-3


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_wrapper_zeroes_updates_and_state_even_for_nonzero_gradients(name):
    """The optimizer alone (no masked loss): gradients and weights are non-zero at pruned positions."""
    rng = np.random.default_rng(0)
    params = {"d": {"kernel": jnp.asarray(rng.standard_normal((4, 5)), jnp.float32), "bias": jnp.ones(5)}}
    mask = {"d": {"kernel": jnp.asarray(rng.random((4, 5)) < 0.3), "bias": jnp.ones(5, bool)}}
    off = ~np.asarray(mask["d"]["kernel"])
    tx = make_optimizer(RECIPES[name], 1, 100)
    state = tx.init(params)
    for step in range(5):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), jnp.float32), params)
        updates, state = tx.update(grads, state, params, mask=mask, step=step)
        assert np.all(np.asarray(updates["d"]["kernel"])[off] == 0.0)
        assert np.any(np.asarray(updates["d"]["kernel"])[~off] != 0.0)
    for tree in param_like_subtrees(state, mask):
        assert np.all(np.asarray(tree["d"]["kernel"])[off] == 0.0)


def test_mask_optimizer_state_zeroes_carried_state():
    params = {"d": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones(3)}}
    tx = make_optimizer(RECIPES["adam"], 1, 10)
    opt_state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    _, opt_state = tx.update(grads, opt_state, params, mask=masks.init_mask(params), step=0)
    mask = {"d": {"kernel": jnp.eye(3, dtype=bool), "bias": jnp.ones(3, bool)}}
    cleaned = mask_optimizer_state(opt_state, mask)
    for tree in param_like_subtrees(cleaned, mask):
        assert np.all(np.asarray(tree["d"]["kernel"])[~np.eye(3, dtype=bool)] == 0)
        assert np.all(np.asarray(tree["d"]["bias"]) != 0)


def test_step_and_piecewise_schedules_in_epochs():
    recipe = OptimizerRecipe(name="sgd", learning_rate=0.1, schedule="step", milestones=(80, 120), gamma=0.1)
    lr = learning_rate_schedule(recipe, steps_per_epoch=10, total_steps=1600)
    assert float(lr(0)) == pytest.approx(0.1)
    assert float(lr(799)) == pytest.approx(0.1)
    assert float(lr(800)) == pytest.approx(0.01)
    assert float(lr(1200)) == pytest.approx(0.001)
    piecewise = OptimizerRecipe(name="adam", learning_rate=3e-4, schedule="piecewise", milestones=(2, 5), values=(1e-4, 1e-5))
    lr = learning_rate_schedule(piecewise, steps_per_epoch=4, total_steps=40)
    assert [float(lr(s)) for s in (0, 7, 8, 19, 20)] == pytest.approx([3e-4, 3e-4, 1e-4, 1e-4, 1e-5])
    warm = OptimizerRecipe(name="sgd", learning_rate=0.4, warmup_epochs=1)
    lr = learning_rate_schedule(warm, steps_per_epoch=4, total_steps=40)
    assert [float(lr(s)) for s in (0, 1, 3, 10)] == pytest.approx([0.1, 0.2, 0.4, 0.4])
    cosine = learning_rate_schedule(OptimizerRecipe(schedule="cosine", learning_rate=1.0), 10, 100)
    assert float(cosine(0)) == pytest.approx(1.0) and float(cosine(50)) == pytest.approx(0.5) and float(cosine(100)) == pytest.approx(0.0)


def test_schedule_follows_the_global_step_with_a_fresh_state():
    """After rewinding to step k with a fresh optimizer state, the learning rate is lr(k), not lr(0)."""
    recipe = OptimizerRecipe(name="sgd", learning_rate=1.0, momentum=0.0, schedule="step", milestones=(1,), gamma=0.1)
    tx = make_optimizer(recipe, steps_per_epoch=5, total_steps=20)
    params = {"d": {"kernel": jnp.zeros((2, 2))}}
    grads = {"d": {"kernel": jnp.ones((2, 2))}}
    mask = masks.init_mask(params)
    fresh = tx.init(params)
    early, _ = tx.update(grads, fresh, params, mask=mask, step=0)
    late, _ = tx.update(grads, fresh, params, mask=mask, step=7)
    assert float(early["d"]["kernel"][0, 0]) == pytest.approx(-1.0)
    assert float(late["d"]["kernel"][0, 0]) == pytest.approx(-0.1)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"name": "rmsprop"}, "optimizer name='rmsprop' is not one of sgd, adam, adamw"),
        ({"schedule": "linear"}, "schedule='linear' is not one of"),
        ({"learning_rate": -1.0}, "learning_rate=-1.0 must be > 0"),
        ({"momentum": 1.0}, r"momentum=1.0 is outside \[0, 1\)"),
        ({"schedule": "piecewise", "milestones": (1, 2), "values": (0.1,)}, "one value per milestone"),
        ({"milestones": (5, 2)}, "increasing"),
    ],
)
def test_bad_recipes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OptimizerRecipe(**kwargs)
