"""Soft-vote ensemble: the mean of the members' class probabilities. Written by hand (a few lines; Keras has no
ensemble of segmentation models). An ensemble of identical models is that model."""
from __future__ import annotations

from keras import ops

from helpers.runtime import backend


def soft_vote(predicts, x):
    """Mean of predict(x) over the callables `predicts`, each (B, H, W, C) -> (B, H, W, K) probabilities."""
    if not predicts:
        raise ValueError("an ensemble needs at least one member")
    return backend.add_n([ops.cast(predict(x), "float32") for predict in predicts]) / len(predicts)
