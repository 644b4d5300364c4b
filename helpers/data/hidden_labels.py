"""The hidden test labels a submission or a run's test-set predictions are scored against: loaded, validated and
fingerprinted before any work starts.

A labels file is an npz with `test_masks` (N, 64, 128) ints 0..4 and the public and private parts of the test set
(`public_ids`, `private_ids`), as the synthetic generator writes beside its data (`<stem>_test_labels.npz`), or a
plain (N, 64, 128) mask array whose parts then come from a seeded 25 / 75 draw (`default_partition`), like the
competition's public and private leaderboards (docs/study.md).
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from helpers.configs.constants import IMAGE_SHAPE, NUM_CLASSES

LABEL_KEYS = ("test_masks", "public_ids", "private_ids")


class LabelsError(ValueError):
    """A labels file that cannot be used (message: one line naming the problem)."""


PUBLIC_FRACTION = 0.25
PARTITION_SEED = 0


def default_partition(n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """(public_ids, private_ids) for labels given as a plain mask array: a seeded permutation of the ids
    (`np.random.default_rng(PARTITION_SEED)`), its first round(25 %) public, the rest private, each sorted —
    the competition's 25 / 75 split, the same for the same number of images."""
    order = np.random.default_rng(PARTITION_SEED).permutation(n_images)
    n_public = max(1, int(round(PUBLIC_FRACTION * n_images))) if n_images > 1 else n_images
    return np.sort(order[:n_public]).astype(np.int64), np.sort(order[n_public:]).astype(np.int64)


def load_test_labels(labels_path) -> dict:
    """Load and validate hidden test labels: an npz with `test_masks` (N, 64, 128) ints 0..4 and
    `public_ids`/`private_ids` ints in 0..N-1, or a plain (N, 64, 128) mask array (`.npy`, or an npz holding
    only `test_masks`), whose public and private parts then come from `default_partition`."""
    labels_path = Path(labels_path)
    if not labels_path.is_file():
        raise LabelsError(f"labels file {labels_path} does not exist")
    try:
        archive = np.load(labels_path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise LabelsError(f"labels file {labels_path} is not a readable .npy or .npz ({error})") from None
    if isinstance(archive, np.lib.npyio.NpzFile):
        with archive:
            files = archive.files
            wanted = LABEL_KEYS if set(files) != {"test_masks"} else ("test_masks",)
            missing = [key for key in wanted if key not in files]
            if missing:
                raise LabelsError(f"labels file {labels_path} lacks {', '.join(missing)}; expected an npz with "
                                  f"{', '.join(LABEL_KEYS)}, or a plain (N, 64, 128) mask array")
            try:
                labels = {key: archive[key] for key in wanted}
            except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
                raise LabelsError(f"labels file {labels_path} is not a readable npz ({error})") from None
    else:
        labels = {"test_masks": archive}
    masks = labels["test_masks"]
    if masks.ndim != 3 or masks.shape[1:] != IMAGE_SHAPE or not np.issubdtype(masks.dtype, np.integer) or not len(masks):
        raise LabelsError(f"labels file {labels_path}: test_masks has shape {masks.shape} dtype {masks.dtype}; "
                          "expected (N, 64, 128) integers")
    if int(masks.min()) < 0 or int(masks.max()) >= NUM_CLASSES:
        raise LabelsError(f"labels file {labels_path}: test_masks values outside 0..{NUM_CLASSES - 1}")
    if "public_ids" not in labels:
        labels["public_ids"], labels["private_ids"] = default_partition(len(masks))
    for key in ("public_ids", "private_ids"):
        ids = labels[key]
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise LabelsError(f"labels file {labels_path}: {key} must be a 1-D integer array, "
                              f"got shape {ids.shape} dtype {ids.dtype}")
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= len(masks)):
            raise LabelsError(f"labels file {labels_path}: {key} outside 0..{len(masks) - 1}")
        if len(np.unique(ids)) != len(ids):
            raise LabelsError(f"labels file {labels_path}: {key} repeats an id")
    both = np.intersect1d(labels["public_ids"], labels["private_ids"])
    if len(both):
        raise LabelsError(f"labels file {labels_path}: {len(both)} id(s) are both public and private (e.g. "
                          f"{int(both[0])}); each test image belongs to exactly one part")
    missing = len(masks) - len(labels["public_ids"]) - len(labels["private_ids"])
    if missing:
        raise LabelsError(f"labels file {labels_path}: public_ids and private_ids cover {len(masks) - missing} of "
                          f"the {len(masks)} test images; together they must cover every id 0..{len(masks) - 1}")
    return labels


def labels_fingerprint(labels: dict) -> str:
    """Content hash of loaded labels (`load_test_labels`): masks and both parts, so the same labels in any file
    give the same value and any change to a mask or a part gives another."""
    digest = hashlib.sha256()
    for key in LABEL_KEYS:
        array = np.ascontiguousarray(labels[key], dtype=np.uint8 if key == "test_masks" else np.int64)
        digest.update(key.encode() + str(array.shape).encode() + array.tobytes())
    return digest.hexdigest()[:16]
