"""The digits variants that Morcos et al.'s claims need: class-disjoint, domain-shifted, smaller and merged-class datasets."""

import numpy as np
import pytest

from lth_jax.data.registry import dataset_names, get_spec, load_dataset
from lth_jax.data.variants import balanced_subset


def arrays(name, **kwargs):
    d = load_dataset(name, **kwargs)
    return np.asarray(d.train.x), np.asarray(d.train.y), np.asarray(d.test.x), np.asarray(d.test.y)


def rows(images):
    return {image.tobytes() for image in images}


def test_class_disjoint_pair_splits_the_classes_and_relabels_them():
    x, y, tx, ty = arrays("digits")
    for name, classes in (("digits_0to4", range(5)), ("digits_5to9", range(5, 10))):
        vx, vy, vtx, vty = arrays(name)
        assert get_spec(name).num_classes == 5 and set(vy) == set(vty) == set(range(5))
        keep = np.isin(y, list(classes))
        np.testing.assert_array_equal(vx, x[keep])
        np.testing.assert_array_equal(vy, y[keep] - classes[0])
        np.testing.assert_array_equal(vtx, tx[np.isin(ty, list(classes))])
        np.testing.assert_array_equal(vty, ty[np.isin(ty, list(classes))] - classes[0])
    assert not rows(arrays("digits_0to4")[0]) & rows(arrays("digits_5to9")[0])


@pytest.mark.parametrize("name,transform", [("digits_b_inverted", lambda a: 255 - a), ("digits_b_rotated", lambda a: np.rot90(a, 1, axes=(1, 2)))])
def test_domain_shifts_transform_digits_b_and_its_test_set(name, transform):
    bx, by, btx, bty = arrays("digits_b")
    vx, vy, vtx, vty = arrays(name)
    np.testing.assert_array_equal(vx, transform(bx))
    np.testing.assert_array_equal(vtx, transform(btx))
    np.testing.assert_array_equal(vy, by)
    np.testing.assert_array_equal(vty, bty)
    assert not np.array_equal(vx, bx)


def test_size_variants_are_nested_class_balanced_subsets_of_digits_a():
    ax, ay, atx, _ = arrays("digits_a")
    quarter, half = arrays("digits_a_25pct"), arrays("digits_a_50pct")
    assert rows(quarter[0]) <= rows(half[0]) <= rows(ax)
    for (x, y, tx, _), fraction in ((quarter, 0.25), (half, 0.5)):
        for label in range(10):
            assert abs(np.sum(y == label) - fraction * np.sum(ay == label)) <= 1
        np.testing.assert_array_equal(tx, atx)  # the whole test set
    subset = balanced_subset(np.repeat(np.arange(3), 8), 0.5)
    assert len(subset) == 12 and set(np.repeat(np.arange(3), 8)[subset]) == {0, 1, 2}


@pytest.mark.parametrize("name,rule,classes", [("digits_a_5class", lambda y: y // 2, 5), ("digits_a_2class", lambda y: (y >= 5).astype(y.dtype), 2)])
def test_class_count_variants_merge_labels_on_the_same_images(name, rule, classes):
    ax, ay, _, aty = arrays("digits_a")
    vx, vy, _, vty = arrays(name)
    np.testing.assert_array_equal(vx, ax)
    np.testing.assert_array_equal(vy, rule(ay))
    np.testing.assert_array_equal(vty, rule(aty))
    assert get_spec(name).num_classes == classes == len(set(vy))


# name: (classes, training images, test images), as docs/datasets.md lists them
SIZES = {"digits_0to4": (5, 721, 180), "digits_5to9": (5, 716, 180), "digits_b_inverted": (10, 721, 360),
         "digits_b_rotated": (10, 721, 360), "digits_a_50pct": (10, 358, 360), "digits_a_25pct": (10, 179, 360),
         "digits_a_5class": (5, 716, 360), "digits_a_2class": (2, 716, 360)}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_every_variant_has_its_classes_and_sizes(name):
    spec, data = get_spec(name), load_dataset(name)
    assert spec.name == name and name in dataset_names()
    assert (spec.num_classes, len(data.train), len(data.test)) == SIZES[name] == (data.num_classes, len(data.train.y), len(data.test.y))
    assert set(np.unique(data.train.y)) == set(np.unique(data.test.y)) == set(range(spec.num_classes))
    assert data.train.x.shape[1:] == data.test.x.shape[1:] == (8, 8, 1) and data.train.x.dtype == np.uint8


def test_variants_fit_other_input_shapes():
    x, y, tx, ty = arrays("digits_b_inverted", input_shape=(16, 16, 1))
    assert x.shape[1:] == (16, 16, 1) and tx.shape[1:] == (16, 16, 1)
    assert get_spec("digits_b_inverted").mean == pytest.approx((1 - get_spec("digits_b").mean[0],))
