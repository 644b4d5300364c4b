"""Leaderboard-style scoring of competition test-set predictions against hidden labels.

The real leaderboard scored a public part of the test set (reportedly 25 %) during the competition and
a private part for the final ranking (docs/study.md). The synthetic default ships hidden test masks and a
seeded 25 % / 75 % public/private partition (`<stem>_test_labels.npz`), so the same two numbers can be
emulated locally. Predictions may cover only the first n test images (the default profile predicts a
prefix); each part is then scored on its ids below n, and the count is recorded.
"""
from __future__ import annotations

import numpy as np

from helpers.model.metrics import PRIMARY, miou_fg, scores


def score_parts(labels: dict, predictions: np.ndarray, foreground: np.ndarray | None = None) -> dict:
    """{"public": {...}, "private": {...}, "all": {...}} scores for predictions of the first n test images; with
    the same images' `foreground` argmax, each part also gets the primary score `miou_fg`."""
    masks = labels["test_masks"]
    n = len(predictions)
    if n > len(masks):
        raise ValueError(f"{n} predictions for {len(masks)} labelled test images: predict the test_set in file order")
    parts = {"all": np.arange(n), "public": np.sort(labels["public_ids"]), "private": np.sort(labels["private_ids"])}
    result = {"n_predicted": int(n), "n_test": int(len(masks))}
    for part, ids in parts.items():
        ids = ids[ids < n]
        result[part] = {"n_images": int(len(ids)), **(scores(masks[ids], predictions[ids]) if len(ids) else {})}
        if foreground is not None and len(ids):
            result[part][PRIMARY] = miou_fg(masks[ids], foreground[ids])
    return result
