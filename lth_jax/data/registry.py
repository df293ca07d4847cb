"""Image-classification datasets by name (those of Morcos et al.), read from TFDS or scikit-learn.

Small datasets are read once into host memory as uint8 NHWC arrays
(:class:`~lth_jax.data.ArrayDataset`); augmentation and normalization run on the
device inside the jitted step (:mod:`lth_jax.data.augment`). ImageNet and
Places365 stream (:mod:`lth_jax.data.streaming`).

Names: ``cifar10``, ``cifar100``, ``svhn_cropped``, ``mnist``, ``fashion_mnist``,
``imagenet2012``, ``places365_small``; ``cifar10a`` / ``cifar10b``, the two
class-balanced disjoint halves of CIFAR-10's training set (Morcos et al.'s
same-distribution control; both keep the whole test set); and ``digits``
(scikit-learn's 1797 real 8×8 digits, offline) with halves ``digits_a`` /
``digits_b`` and variants that differ from them (:mod:`lth_jax.data.variants`):
``digits_0to4`` / ``digits_5to9`` (no class in common), ``digits_b_inverted`` and
``digits_b_rotated`` (domain shifts), ``digits_a_25pct`` / ``digits_a_50pct``
(smaller sources) and ``digits_a_5class`` / ``digits_a_2class`` (fewer, merged
classes on digits_a's images).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lth_jax.data.arrays import ArrayDataset
from lth_jax.data.tfds import read_split
from lth_jax.data.variants import apply_variant, digits_variants
from lth_jax.errors import UserError

__all__ = ["DatasetSpec", "DATASETS", "ImageData", "dataset_names", "get_spec", "load_dataset", "adapt_images", "class_balanced_halves"]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is: its source, classes, stored image shape, normalization, augmentation."""

    name: str
    source: str  # "tfds" or "sklearn_digits"
    source_name: str
    num_classes: int
    image_shape: tuple[int, int, int]  # as stored (None sides: variable, streaming)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool  # horizontal flips allowed as augmentation
    train_split: str = "train"
    test_split: str = "test"
    half: str | None = None  # "a" / "b": a class-balanced half of the training set
    streaming: bool = False
    # Variants (lth_jax.data.variants): keep these classes (train and test, relabelled 0..k-1), a fraction of the
    # training images (class-balanced, nested), a label rule ("pairs": y // 2, "halves": y >= 5), an image transform.
    classes: tuple[int, ...] | None = None
    fraction: float | None = None
    labels: str | None = None
    transform: str | None = None


_CIFAR10 = dict(source="tfds", source_name="cifar10", num_classes=10, image_shape=(32, 32, 3), mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), flip=True)
_DIGITS = dict(source="sklearn_digits", source_name="digits", num_classes=10, image_shape=(8, 8, 1), mean=(0.3053,), std=(0.3759,), flip=False)
_IMAGENET_STATS = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec("cifar10", **_CIFAR10),
        DatasetSpec("cifar10a", **_CIFAR10, half="a"),
        DatasetSpec("cifar10b", **_CIFAR10, half="b"),
        DatasetSpec("cifar100", "tfds", "cifar100", 100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True),
        DatasetSpec("svhn_cropped", "tfds", "svhn_cropped", 10, (32, 32, 3), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), False),
        DatasetSpec("mnist", "tfds", "mnist", 10, (28, 28, 1), (0.1307,), (0.3081,), False),
        DatasetSpec("fashion_mnist", "tfds", "fashion_mnist", 10, (28, 28, 1), (0.2860,), (0.3530,), True),
        DatasetSpec("imagenet2012", "tfds", "imagenet2012", 1000, (224, 224, 3), **_IMAGENET_STATS, flip=True, test_split="validation", streaming=True),
        DatasetSpec("places365_small", "tfds", "places365_small", 365, (224, 224, 3), **_IMAGENET_STATS, flip=True, test_split="validation", streaming=True),
        DatasetSpec("digits", **_DIGITS),
        DatasetSpec("digits_a", **_DIGITS, half="a"),
        DatasetSpec("digits_b", **_DIGITS, half="b"),
        *digits_variants(DatasetSpec, _DIGITS),
    ]
}


def dataset_names() -> list[str]:
    return sorted(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(dataset_names())}")
    return DATASETS[name]


@dataclasses.dataclass(frozen=True)
class ImageData:
    """Train and test data (uint8 NHWC, or streaming), with the normalization of the
    images as the model sees them (per channel, in [0, 1] units)."""

    spec: DatasetSpec
    train: object
    test: object
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes


def adapt_images(images: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 NHWC images made to fit a model's input ``shape``: gray replicated to 3
    channels; small images upsampled by the largest integer factor that fits
    (nearest neighbour) and zero-padded, centred, to the target size (as Morcos et al.:
    28×28 gray → 32×32×3; 8×8 digits → 32×32 by ×4)."""
    n, h, w, c = images.shape
    th, tw, tc = shape
    if c != tc:
        if c == 1 and tc == 3:
            images = np.repeat(images, 3, axis=-1)
        else:
            raise UserError(f"cannot turn {c}-channel images into {tc} channels")
    if th < h or tw < w:
        raise UserError(f"images of {h}×{w} do not fit an input of {th}×{tw}")
    factor = min(th // h, tw // w)
    if factor > 1:
        images = images.repeat(factor, axis=1).repeat(factor, axis=2)
        h, w = h * factor, w * factor
    top, left = (th - h) // 2, (tw - w) // 2
    return np.pad(images, ((0, 0), (top, th - h - top), (left, tw - w - left), (0, 0)))


def class_balanced_halves(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of two disjoint halves with (up to one example) the same count of every class."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        first.append(idx[: len(idx) // 2])
        second.append(idx[len(idx) // 2 :])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def _digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's digits as uint8 8×8×1 images; a stratified 80/20 split (random_state 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.clip(np.round(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype(np.int32), test_size=0.2, random_state=0, stratify=digits.target
    )
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


def load_dataset(
    name: str,
    *,
    data_dir: str | None = None,
    download: bool = False,
    input_shape: tuple[int, int, int] | None = None,
    workers: int = 16,
) -> ImageData:
    """The dataset ``name`` shaped for a model input ``input_shape`` (default: as stored)."""
    spec = get_spec(name)
    shape = tuple(input_shape) if input_shape is not None else spec.image_shape
    if spec.streaming:
        from lth_jax.data.streaming import StreamingDataset

        if shape[2] != 3:
            raise UserError(f"{name} has RGB images; input_shape={shape} asks {shape[2]} channels")
        common = dict(name=spec.source_name, data_dir=data_dir, download=download, size=shape[0], workers=workers)
        train = StreamingDataset(split=spec.train_split, train=True, **common)
        test = StreamingDataset(split=spec.test_split, train=False, **common)
        return ImageData(spec, train, test, shape, spec.mean, spec.std)
    if spec.source == "sklearn_digits":
        splits = _digits()
    else:
        splits = {}
        for part, split in (("train", spec.train_split), ("test", spec.test_split)):
            arrays = read_split(spec.source_name, split, data_dir=data_dir, download=download)
            splits[part] = (arrays["image"].astype(np.uint8), arrays["label"].astype(np.int32))
    x_train, y_train = splits["train"]
    if spec.half is not None:
        a, b = class_balanced_halves(y_train)
        keep = a if spec.half == "a" else b
        x_train, y_train = x_train[keep], y_train[keep]
    (x_train, y_train), (x_test, y_test) = apply_variant(spec, (x_train, y_train), splits["test"])
    x_train, x_test = adapt_images(x_train, shape), adapt_images(x_test, shape)
    channels = shape[2] // len(spec.mean)
    return ImageData(
        spec,
        ArrayDataset(x_train, y_train),
        ArrayDataset(x_test, y_test),
        shape,
        spec.mean * channels,
        spec.std * channels,
    )
