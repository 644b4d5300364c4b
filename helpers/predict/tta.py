"""Flip test-time augmentation: the mean softmax of an image and its three flips, each flipped back.

Written by hand because neither Keras nor TensorFlow ships segmentation TTA. A model that is equivariant under
flips (its prediction of a flipped image is the flipped prediction) gets exactly its plain prediction back.
"""
from __future__ import annotations

from keras import ops

from helpers.runtime import backend

FLIPS = ((), (1,), (2,), (1, 2))
"""Axes of a (B, H, W, C) batch each view reverses: none, vertical, horizontal, both."""


def _flip(x, axes):
    return ops.flip(x, axis=axes) if axes else x


def flip_tta(predict, x):
    """Mean over `FLIPS` of predict(flip(x)) flipped back; `predict` maps (B, H, W, C) -> (B, H, W, K) probabilities."""
    views = [_flip(predict(_flip(x, axes)), axes) for axes in FLIPS]
    return backend.add_n([ops.cast(view, "float32") for view in views]) / len(views)
