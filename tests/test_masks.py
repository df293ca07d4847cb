import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ConvBN

from lth_jax import masks
from lth_jax.models import MLP
from lth_jax.train import init_variables

SHAPES = {
    "conv": {"kernel": (3, 3, 2, 4), "bias": (4,)},
    "bn": {"scale": (4,), "bias": (4,)},
    "dense": {"kernel": (16, 5), "bias": (5,)},
    "out": {"kernel": (5, 3), "bias": (3,)},
}


def random_tree(seed, decimals=None):
    rng = np.random.default_rng(seed)

    def leaf(shape):
        x = rng.standard_normal(shape).astype(np.float32)
        return np.round(x, decimals) if decimals is not None else x

    return jax.tree.map(leaf, SHAPES, is_leaf=lambda s: isinstance(s, tuple))


def reference_global_prune(params, mask, count):
    """Straightforward reference: list every prunable weight with its pool index, sort."""
    p_leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    m_leaves = jax.tree.leaves(mask)
    scores, owners = [], []
    for leaf_index, ((path, p), m) in enumerate(zip(p_leaves, m_leaves)):
        if path[-1].key != "kernel":
            continue
        for j, (w, keep) in enumerate(zip(np.ravel(p), np.ravel(m))):
            scores.append(abs(float(w)) if keep else np.inf)
            owners.append((leaf_index, j))
    order = np.lexsort((np.arange(len(scores)), np.array(scores)))  # by score, then pool index
    new = [np.array(m, dtype=bool).ravel().copy() for m in m_leaves]
    for pool_index in order[:count]:
        leaf_index, j = owners[pool_index]
        new[leaf_index][j] = False
    return jax.tree.unflatten(jax.tree.structure(mask), [n.reshape(np.shape(m)) for n, m in zip(new, m_leaves)])


def assert_masks_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("seed,decimals", [(0, None), (1, None), (2, 1), (3, 0)])
def test_global_prune_matches_numpy_reference_over_levels(seed, decimals):
    params = random_tree(seed, decimals)  # decimals=0/1 makes many ties
    mask = masks.init_mask(params)
    total = masks.count_prunable(params)
    assert total == 3 * 3 * 2 * 4 + 16 * 5 + 5 * 3
    rng = np.random.default_rng(seed)
    for count in (37, 0, 50, 1, 20):
        before = masks.count_remaining(mask)
        new = masks.global_magnitude_prune(params, mask, count=count)
        assert_masks_equal(new, reference_global_prune(params, mask, count))
        assert masks.count_remaining(new) == before - count
        for old_leaf, new_leaf in zip(jax.tree.leaves(mask), jax.tree.leaves(new)):
            assert not np.any(np.asarray(new_leaf) & ~np.asarray(old_leaf)), "result must be nested in the input mask"
        mask = new
        # "training" moves the weights between levels (keeping ties where decimals is set)
        moved = jax.tree.map(lambda p: p + 0.3 * rng.standard_normal(p.shape).astype(np.float32), params)
        params = moved if decimals is None else jax.tree.map(lambda p: np.round(p, decimals), moved)
    # non-prunable leaves are untouched
    assert np.all(np.asarray(mask["bn"]["scale"])) and np.all(np.asarray(mask["conv"]["bias"]))


def test_global_prune_ties_go_to_lower_pool_index():
    params = {"a": {"kernel": np.ones((2, 2), np.float32)}, "b": {"kernel": np.ones((2, 2), np.float32)}}
    mask = masks.global_magnitude_prune(params, masks.init_mask(params), count=3)
    np.testing.assert_array_equal(np.asarray(mask["a"]["kernel"]), [[False, False], [False, True]])
    np.testing.assert_array_equal(np.asarray(mask["b"]["kernel"]), np.ones((2, 2), bool))
    again = masks.global_magnitude_prune(params, masks.init_mask(params), count=3)
    assert_masks_equal(mask, again)


def test_global_prune_fraction_and_bad_counts():
    params = random_tree(0)
    mask = masks.init_mask(params)
    assert masks.global_magnitude_prune(params, mask, fraction=0.0) is mask
    total = masks.count_prunable(params)
    half = masks.global_magnitude_prune(params, mask, fraction=0.5)
    assert masks.count_remaining(half) == total - round(0.5 * total)
    with pytest.raises(ValueError, match=f"count={total + 1} exceeds the {total}"):
        masks.global_magnitude_prune(params, mask, count=total + 1)
    with pytest.raises(ValueError, match="count=-1"):
        masks.global_magnitude_prune(params, mask, count=-1)
    with pytest.raises(ValueError, match="fraction=1.5"):
        masks.global_magnitude_prune(params, mask, fraction=1.5)
    with pytest.raises(ValueError, match="exactly one of count and fraction"):
        masks.global_magnitude_prune(params, mask, count=1, fraction=0.1)
    pruned_all = masks.global_magnitude_prune(params, mask, count=total)
    assert masks.count_remaining(pruned_all) == 0
    with pytest.raises(ValueError, match="count=1 exceeds the 0"):
        masks.global_magnitude_prune(params, pruned_all, count=1)


def test_mask_structure_mismatch_is_a_value_error():
    params = random_tree(0)
    mask = masks.init_mask(params)
    missing = {k: v for k, v in mask.items() if k != "dense"}
    with pytest.raises(ValueError, match="'dense/bias' is in the params but not in the mask"):
        masks.global_magnitude_prune(params, missing, count=1)
    wrong_shape = jax.tree.map(lambda m: m, mask)
    wrong_shape["out"]["kernel"] = jnp.ones((3, 5), bool)
    with pytest.raises(ValueError, match=r"'out/kernel' has shape \(3, 5\); the params leaf has shape \(5, 3\)"):
        masks.apply_mask(params, wrong_shape)


def test_nan_weights_are_reported():
    params = random_tree(0)
    params["dense"]["kernel"][0, 0] = np.nan
    with pytest.raises(ValueError, match="'dense/kernel' holds NaN"):
        masks.global_magnitude_prune(params, masks.init_mask(params), count=3)


def test_layerwise_prune_takes_the_fraction_of_every_layer():
    params = random_tree(4)
    mask = masks.init_mask(params)
    for _ in range(3):
        before = {k: int(np.sum(np.asarray(mask[k]["kernel"]))) for k in ("conv", "dense", "out")}
        new = masks.layerwise_magnitude_prune(params, mask, fraction=0.2)
        for k, n in before.items():
            kept = np.asarray(new[k]["kernel"])
            assert kept.sum() == n - round(0.2 * n)
            assert not np.any(kept & ~np.asarray(mask[k]["kernel"]))
            # the removed ones are the smallest surviving magnitudes of that layer
            w = np.abs(params[k]["kernel"])
            removed = np.asarray(mask[k]["kernel"]) & ~kept
            if removed.any():
                assert w[removed].max() <= w[kept].min()
        mask = new


def test_default_rule_on_real_models_and_exclusion():
    params, batch_stats = init_variables(ConvBN(), jax.random.PRNGKey(0), np.zeros((1, 6, 6, 2), np.float32))
    assert masks.prunable_paths(params) == ["conv/kernel", "head/kernel"]
    assert masks.prunable_paths(batch_stats) == []
    mlp_params, _ = init_variables(MLP((4, 8, 8, 2)), jax.random.PRNGKey(0), np.zeros((1, 4), np.float32))
    rule = masks.prunable_rule(exclude=["^output/"])
    assert masks.prunable_paths(mlp_params, rule) == ["hidden_0/kernel", "hidden_1/kernel"]
    assert masks.count_prunable(mlp_params, rule) == 4 * 8 + 8 * 8
    with pytest.raises(ValueError, match="'outptu' matches no prunable parameter"):
        masks.check_exclude_patterns(mlp_params, ["outptu"])
    with pytest.raises(ValueError, match="not a valid regular expression"):
        masks.prunable_rule(exclude=["("])
    pruned = masks.global_magnitude_prune(mlp_params, masks.init_mask(mlp_params), fraction=0.5, prunable=rule)
    assert np.all(np.asarray(pruned["output"]["kernel"]))


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_random_mask_keeps_counts(scope):
    params = random_tree(0)
    mask = masks.global_magnitude_prune(params, masks.init_mask(params), fraction=0.7)
    rand = masks.random_mask(mask, jax.random.PRNGKey(1), scope=scope)
    assert masks.count_remaining(rand) == masks.count_remaining(mask)
    layer_counts = lambda m: [int(np.sum(np.asarray(m[k]["kernel"]))) for k in ("conv", "dense", "out")]  # noqa: E731
    if scope == "layer":
        assert layer_counts(rand) == layer_counts(mask)
    assert not all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(jax.tree.leaves(rand), jax.tree.leaves(mask)))
    assert np.all(np.asarray(rand["bn"]["scale"]))
    with pytest.raises(ValueError, match="scope='rows'"):
        masks.random_mask(mask, jax.random.PRNGKey(1), scope="rows")


def test_apply_mask_zeroes_exactly_and_works_under_jit():
    params = random_tree(0)
    mask = masks.global_magnitude_prune(params, masks.init_mask(params), fraction=0.5)
    out = jax.jit(masks.apply_mask)(params, mask)
    for p, m, o in zip(jax.tree.leaves(params), jax.tree.leaves(mask), jax.tree.leaves(out)):
        m = np.asarray(m)
        assert np.all(np.asarray(o)[~m] == 0.0)
        np.testing.assert_array_equal(np.asarray(o)[m], np.asarray(p)[m])


def test_sparsity_report_and_overlap():
    params = random_tree(0)
    mask = masks.global_magnitude_prune(params, masks.init_mask(params), fraction=0.5)
    report = masks.sparsity_report(mask)
    assert [layer["path"] for layer in report["layers"]] == ["conv/kernel", "dense/kernel", "out/kernel"]
    assert report["remaining"] == masks.count_remaining(mask)
    assert report["total"] == masks.count_prunable(mask)
    assert sum(layer["remaining"] for layer in report["layers"]) == report["remaining"]
    text = masks.format_sparsity_report(report)
    assert "dense/kernel" in text and "all prunable" in text

    same = masks.mask_overlap(mask, mask)
    assert same["iou"] == 1.0
    other = masks.random_mask(mask, jax.random.PRNGKey(0))
    overlap = masks.mask_overlap(mask, other)
    a = np.concatenate([np.ravel(np.asarray(mask[k]["kernel"])) for k in ("conv", "dense", "out")])
    b = np.concatenate([np.ravel(np.asarray(other[k]["kernel"])) for k in ("conv", "dense", "out")])
    assert overlap["iou"] == pytest.approx((a & b).sum() / (a | b).sum())
    assert 0 < overlap["iou"] < 1
    assert len(overlap["layers"]) == 3
