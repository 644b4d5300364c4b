"""Train / validation / test splits, stored so every notebook and run shares them.

Report (§3): the (filtered) data set is split into test (10 %) and train+validation (90 %), and the
latter into validation (10 %) and train (90 %). Two successive `sklearn.model_selection.train_test_split`
calls with seed 42 give 2028 / 226 / 251 images from the 2505 clean ones (docs/study.md).

One split for every comparison: every row is validated and tested on the clean split's validation and test
images, whatever data it trains on. The "all" variant (the report's rows on unfiltered data) is the clean
split with the alien images added to its *training* part only, so "all" and "clean" rows differ in what they
saw, never in what they are scored on. (The report split all 2615 images on their own, 2117 / 236 / 262;
scored on different test images, its Network 1 vs Baseline comparison measured the split as much as the
filtering.)

The clean split is stored as JSON under `data/splits/`, named by the data fingerprint and the seed; it holds
indices into the file's `training_set`. Once written it is the split for that data, whatever a later library
version would compute.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from helpers.data.aliens import DEFAULT_MIN_COUNT, find_aliens
from helpers.data.loading import MarsData
from helpers.runtime.files import write_json_atomic
from helpers.runtime.paths import data_dir

VARIANTS = ("clean", "all")
PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Indices into the data file's training_set for each part."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    variant: str
    seed: int
    fingerprint: str

    def sizes(self) -> dict[str, int]:
        return {part: int(len(getattr(self, part))) for part in PARTS}


def split_path(fingerprint: str, seed: int) -> Path:
    return data_dir() / "splits" / f"{fingerprint}_clean_seed{seed}.json"


def compute_split(n_images: int, candidates: np.ndarray, *, seed: int = 42, test_size: float = 0.1,
                  val_size: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two successive seeded 90/10 splits of `candidates` (indices) → sorted train, val, test indices."""
    if len(candidates) < 10:
        raise ValueError(f"only {len(candidates)} usable images of {n_images}: a 3-way split needs at least 10")
    train_val, test = train_test_split(candidates, test_size=test_size, random_state=seed)
    train, val = train_test_split(train_val, test_size=val_size, random_state=seed)
    return np.sort(train), np.sort(val), np.sort(test)


def _check_stored(payload: dict, path: Path, n_images: int) -> None:
    parts = [np.asarray(payload[p]) for p in PARTS]
    joined = np.concatenate(parts)
    if len(np.unique(joined)) != len(joined) or (len(joined) and (joined.min() < 0 or joined.max() >= n_images)):
        raise ValueError(f"{path}: stored split overlaps or points outside the {n_images} images — delete it to recompute")


def make_split(data: MarsData, *, variant: str = "clean", seed: int = 42, min_count: int = DEFAULT_MIN_COUNT) -> Split:
    """The split for this data/variant/seed: the stored clean split (computed and written on first use); for
    "all", the same validation and test parts with the alien images added to the training part."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown split variant {variant!r}: use one of {', '.join(VARIANTS)}")
    n_images = len(data.train_masks)
    path = split_path(data.source.fingerprint, seed)
    aliens = find_aliens(data.train_masks, min_count).indices
    if path.exists():
        payload = json.loads(path.read_text())
        _check_stored(payload, path, n_images)
    else:
        train, val, test = compute_split(n_images, np.setdiff1d(np.arange(n_images), aliens), seed=seed)
        payload = {"variant": "clean", "seed": seed, "fingerprint": data.source.fingerprint,
                   "n_images": n_images, "train": train.tolist(), "val": val.tolist(), "test": test.tolist()}
        write_json_atomic(path, payload)
    train, val, test = (np.asarray(payload[p], dtype=np.int64) for p in PARTS)
    if variant == "all":
        train = np.union1d(train, np.asarray(aliens, dtype=np.int64))
    return Split(train, val, test, variant=variant, seed=seed, fingerprint=data.source.fingerprint)

