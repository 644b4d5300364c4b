"""From class probabilities to labels: plain argmax, argmax over classes 1-4 only, and confident pseudo-labels.

Written by hand (a few tensor ops). The pseudo-labels of self-training are the foreground argmax where its
probability is at least `threshold`, and 0 elsewhere: with background out of the loss (`ignore_class=0`), 0
means "no label", so the unconfident pixels of a pseudo-labelled image do not train the model.
"""
from __future__ import annotations

import numpy as np
from keras import ops

from helpers.model.argmax import argmax_and_max

CLASSES = ("all", "foreground")


def check_classes(classes: str) -> str:
    if classes not in CLASSES:
        raise ValueError(f"classes={classes!r} is not understood; use 'all' or 'foreground' (argmax over 1-4)")
    return classes


def decode(probs, classes: str = "all", threshold: float | None = None):
    """uint8 labels (B, H, W) from probabilities (B, H, W, 5): argmax over all classes, or over 1-4 only
    ("foreground", never 0); with `threshold`, pixels whose chosen class has a lower probability become 0."""
    check_classes(classes)
    labels, best = argmax_and_max(ops.cast(probs, "float32"), start=1 if classes == "foreground" else 0)
    if threshold is not None:
        labels = ops.where(best >= threshold, labels, ops.zeros_like(labels))
    return ops.cast(labels, "uint8")


def pool(n_test: int, n_train: int, images: float, seed: int) -> np.ndarray:
    """Indices (sorted) of the test images to pseudo-label: a seeded draw of round(images * n_train) of them,
    all of them when that is more than there are."""
    if not images > 0:
        raise ValueError(f"self_training images={images!r} must be a positive multiple of the training split")
    count = min(n_test, max(1, round(images * n_train)))
    return np.sort(np.random.default_rng(seed).choice(n_test, size=count, replace=False))
