"""Dataset variants made from a dataset's arrays: the digits datasets that differ.

Morcos et al.'s claims need source and target datasets that really differ; the
only real images offline are scikit-learn's digits, so these variants are built
from them (and named for what they are):

- ``digits_0to4`` / ``digits_5to9``: the digits of classes 0-4 and 5-9 (train and
  test), labels 0-4: two tasks with no class in common;
- ``digits_b_inverted`` (every pixel v → 255 − v) and ``digits_b_rotated`` (90°
  counter-clockwise): digits_b's images, and the test set, in another domain;
- ``digits_a_50pct`` / ``digits_a_25pct``: a class-balanced share of digits_a's
  training images (the 25% inside the 50%), the whole test set: smaller sources;
- ``digits_a_5class`` (labels y // 2) and ``digits_a_2class`` (y ≥ 5): digits_a's
  images with fewer, merged classes (the test set relabelled alike).
"""

from __future__ import annotations

import numpy as np

from lth_jax.errors import UserError

__all__ = ["LABEL_RULES", "TRANSFORMS", "digits_variants", "apply_variant", "balanced_subset"]

LABEL_RULES = {"pairs": lambda y: y // 2, "halves": lambda y: (y >= 5).astype(y.dtype)}
TRANSFORMS = {"invert": lambda x: 255 - x, "rot90": lambda x: np.ascontiguousarray(np.rot90(x, 1, axes=(1, 2)))}


def digits_variants(spec_type, digits: dict) -> list:
    """The variants' specs (``spec_type`` is :class:`lth_jax.data.registry.DatasetSpec`; ``digits`` its fields for digits)."""
    inverted = dict(digits, mean=tuple(1.0 - m for m in digits["mean"]))
    five = dict(digits, num_classes=5)
    return [
        spec_type("digits_0to4", **five, classes=(0, 1, 2, 3, 4)),
        spec_type("digits_5to9", **five, classes=(5, 6, 7, 8, 9)),
        spec_type("digits_b_inverted", **inverted, half="b", transform="invert"),
        spec_type("digits_b_rotated", **digits, half="b", transform="rot90"),
        spec_type("digits_a_50pct", **digits, half="a", fraction=0.5),
        spec_type("digits_a_25pct", **digits, half="a", fraction=0.25),
        spec_type("digits_a_5class", **five, half="a", labels="pairs"),
        spec_type("digits_a_2class", **dict(digits, num_classes=2), half="a", labels="halves"),
    ]


def balanced_subset(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``round(fraction × count)`` examples of every class: the first of one
    seeded permutation per class, so a smaller fraction's subset lies inside a larger one's."""
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"fraction={fraction} is outside (0, 1]")
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == label))[: int(round(fraction * np.sum(labels == label)))]
            for label in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def apply_variant(spec, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]):
    """``(train, test)`` arrays of ``spec``'s variant: classes kept, a fraction of the training
    images, labels merged, images transformed (in that order); unchanged for a plain dataset."""
    (x_train, y_train), (x_test, y_test) = train, test
    if spec.classes is not None:
        order = np.asarray(spec.classes)
        relabel = np.full(max(int(y_train.max()), int(y_test.max()), int(order.max())) + 1, -1, np.int32)
        relabel[order] = np.arange(len(order), dtype=np.int32)
        keep_train, keep_test = np.isin(y_train, order), np.isin(y_test, order)
        x_train, y_train = x_train[keep_train], relabel[y_train[keep_train]]
        x_test, y_test = x_test[keep_test], relabel[y_test[keep_test]]
    if spec.fraction is not None:
        keep = balanced_subset(y_train, spec.fraction)
        x_train, y_train = x_train[keep], y_train[keep]
    if spec.labels is not None:
        y_train, y_test = LABEL_RULES[spec.labels](y_train), LABEL_RULES[spec.labels](y_test)
    if spec.transform is not None:
        x_train, x_test = TRANSFORMS[spec.transform](x_train), TRANSFORMS[spec.transform](x_test)
    return (x_train, y_train), (x_test, y_test)
