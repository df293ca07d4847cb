"""Image datasets: the registry, input adaptation, halves, augmentation, streaming (TFDS mock)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from lth_jax.data.augment import image_preprocess, normalize, random_crop, random_flip
from lth_jax.data.registry import adapt_images, class_balanced_halves, dataset_names, load_dataset
from lth_jax.errors import UserError


def test_random_crops_stay_inside_the_padded_image():
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(1, 255, (64, 8, 8, 3)), jnp.uint8)  # no zeros: padding is visible
    crops = np.asarray(random_crop(images, jax.random.PRNGKey(0), 4))
    padded = np.pad(np.asarray(images), ((0, 0), (4, 4), (4, 4), (0, 0)))
    offsets = set()
    for crop, pad in zip(crops, padded):
        matches = [(dy, dx) for dy in range(9) for dx in range(9) if np.array_equal(pad[dy : dy + 8, dx : dx + 8], crop)]
        assert matches, "every crop is a window of the padded image"
        offsets.add(matches[0])
    assert len(offsets) > 10  # offsets vary across images


def test_flips_flip():
    images = jnp.asarray(np.random.default_rng(1).integers(0, 255, (64, 5, 5, 1)), jnp.uint8)
    flipped = np.asarray(random_flip(images, jax.random.PRNGKey(3)))
    same = [np.array_equal(f, i) for f, i in zip(flipped, np.asarray(images))]
    mirrored = [np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, np.asarray(images))]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 10 < sum(mirrored) < 54


def test_evaluation_is_deterministic_and_training_augments():
    images = jnp.asarray(np.random.default_rng(2).integers(0, 255, (8, 6, 6, 3)), jnp.uint8)
    prep = image_preprocess((0.5, 0.4, 0.3), (0.2, 0.2, 0.2), crop_padding=2, flip=True)
    a = prep(images, jax.random.PRNGKey(0), False)
    b = prep(images, jax.random.PRNGKey(1), False)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(np.asarray(a), (np.asarray(images) / 255.0 - [0.5, 0.4, 0.3]) / 0.2, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(np.asarray(prep(images, jax.random.PRNGKey(0), True)), np.asarray(a))
    assert normalize(images, (0.0,) * 3, (1.0,) * 3).dtype == jnp.float32


def test_adapt_images_for_the_model_input():
    gray = np.full((2, 28, 28, 1), 200, np.uint8)
    rgb = adapt_images(gray, (32, 32, 3))
    assert rgb.shape == (2, 32, 32, 3) and (rgb[:, 2:30, 2:30] == 200).all() and (rgb[:, :2] == 0).all()
    digits = np.arange(64, dtype=np.uint8).reshape(1, 8, 8, 1)
    up = adapt_images(digits, (32, 32, 3))
    assert up.shape == (1, 32, 32, 3) and up[0, 4, 4, 0] == digits[0, 1, 1, 0]
    lenet = adapt_images(digits, (28, 28, 1))  # ×3 and a 2-pixel border
    assert lenet.shape == (1, 28, 28, 1) and lenet[0, 2, 2, 0] == 0 and lenet[0, 5, 5, 0] == digits[0, 1, 1, 0]
    with pytest.raises(ValueError, match="images of 32×32 do not fit an input of 28×28"):
        adapt_images(np.zeros((1, 32, 32, 3), np.uint8), (28, 28, 3))


def test_class_balanced_disjoint_halves():
    labels = np.repeat(np.arange(10), 50)
    a, b = class_balanced_halves(labels)
    assert len(np.intersect1d(a, b)) == 0 and len(a) + len(b) == 500
    assert np.bincount(labels[a]).tolist() == [25] * 10 == np.bincount(labels[b]).tolist()


def test_digits_offline():
    data = load_dataset("digits", input_shape=(32, 32, 3))
    assert len(data.train) == 1437 and len(data.test) == 360
    assert data.train.x.shape[1:] == (32, 32, 3) and data.train.x.dtype == np.uint8
    assert data.mean == (0.3053,) * 3 and data.num_classes == 10
    a, b = load_dataset("digits_a"), load_dataset("digits_b")
    assert len(a.train) + len(b.train) == 1437 and len(a.test) == len(b.test) == 360
    full = load_dataset("digits")
    assert sorted(map(bytes, np.concatenate([a.train.x, b.train.x]))) == sorted(map(bytes, full.train.x))  # a partition
    assert abs(np.bincount(a.train.y).astype(int) - np.bincount(b.train.y).astype(int)).max() <= 1


def test_tfds_datasets_under_the_mock(tmp_path):
    with tfds.testing.mock_data(num_examples=20):
        cifar = load_dataset("cifar10", data_dir=str(tmp_path))
        fashion = load_dataset("fashion_mnist", data_dir=str(tmp_path), input_shape=(32, 32, 3))
        half = load_dataset("cifar10a", data_dir=str(tmp_path))
    assert cifar.train.x.shape == (20, 32, 32, 3) and cifar.spec.flip
    assert fashion.train.x.shape == (20, 32, 32, 3) and fashion.mean == (0.2860,) * 3
    assert len(half.train) < 20 and len(half.test) == 20


def test_missing_and_unknown_datasets_explain_themselves(tmp_path):
    with pytest.raises(UserError, match=r"TFDS dataset 'svhn_cropped' is not prepared in .*: prepare it with `tfds build svhn_cropped --file_format=array_record`"):
        load_dataset("svhn_cropped", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'; known datasets: cifar10, cifar100"):
        load_dataset("cifar11")
    assert "imagenet2012" in dataset_names() and "digits_b" in dataset_names()


def test_streaming_imagenet_under_the_mock(tmp_path):
    with tfds.testing.mock_data(num_examples=10):
        data = load_dataset("imagenet2012", data_dir=str(tmp_path), input_shape=(32, 32, 3), workers=4)
        first = list(data.train.batches(4, seed=0, epoch=0))
        again = list(data.train.batches(4, seed=0, epoch=0))
        other = list(data.train.batches(4, seed=0, epoch=1))
        test = list(data.test.batches(4))
        test_again = list(data.test.batches(4))
    assert [b["x"].shape for b in first] == [(4, 32, 32, 3)] * 3 and first[0]["x"].dtype == np.uint8
    assert first[-1]["weight"].tolist() == [1, 1, 0, 0]
    assert all(np.array_equal(a["x"], b["x"]) for a, b in zip(first, again))  # reproducible epochs
    assert not all(np.array_equal(a["x"], b["x"]) for a, b in zip(first, other))
    assert all(np.array_equal(a["x"], b["x"]) for a, b in zip(test, test_again))  # deterministic centre crops
    assert data.train.steps_per_epoch(4) == 3
