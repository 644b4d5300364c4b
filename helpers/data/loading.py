"""Loading and validating the Mars data: the real competition file wherever it is, else the synthetic default.

`load_mars()` looks, in this order, at: an explicit path → the `MARS_DATA` environment variable →
`data/mars_for_students.npz` → any `/kaggle/input/**/mars_for_students.npz` (root overridable with
`MARS_KAGGLE_INPUT`) → the synthetic default `data/synthetic_mars.npz`, generated on first use (seed 0,
full competition size) and reused after. Every problem with a file is a `DataError` whose message is one
line naming the problem and the fix; `python -m helpers.data.loading inspect PATH` prints it and exits 2.

The competition layout (docs/study.md): `training_set` (N, 2, 64, 128) with images in `[:, 0]` as whole grey
levels 0..255 and masks 0..4 in `[:, 1]`, both float64; `test_set` (M, 64, 128) float64 or uint8. Any
numeric dtype is accepted here.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from helpers.configs.constants import CLASS_NAMES, IMAGE_SHAPE, NUM_CLASSES
from helpers.data.hidden_labels import LabelsError, labels_fingerprint, load_test_labels
from helpers.runtime.paths import data_dir

REAL_FILENAME = "mars_for_students.npz"
SYNTHETIC_FILENAME = "synthetic_mars.npz"
REQUIRED_KEYS = ("training_set", "test_set")


class DataError(ValueError):
    """A data file that cannot be used; the message is one line: the problem, then the fix."""


@dataclass(frozen=True)
class DataSource:
    """Where a data set came from, so every record and report can say so."""

    kind: str  # "real" or "synthetic"
    path: str
    fingerprint: str  # sha256 (first 16 hex digits) of the canonical uint8 arrays
    labels_path: str | None = None  # hidden test masks (synthetic data only)
    found_by: str = "path"  # which rule of the search order found it
    labels_fingerprint: str | None = None  # content hash of those labels (`helpers.data.hidden_labels.labels_fingerprint`)

    @property
    def is_synthetic(self) -> bool:
        return self.kind == "synthetic"

    def label(self) -> str:
        """A short human label, e.g. 'synthetic data (synthetic_mars.npz, 3f2a…)'."""
        return f"{self.kind} data ({Path(self.path).name}, {self.fingerprint})"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MarsData:
    """The loaded data set: images float32 in [0, 1], masks uint8 in 0..4."""

    train_images: np.ndarray  # (N, 64, 128) float32
    train_masks: np.ndarray  # (N, 64, 128) uint8
    test_images: np.ndarray  # (M, 64, 128) float32
    source: DataSource

    def __repr__(self) -> str:
        return (f"MarsData(train={len(self.train_images)}, test={len(self.test_images)}, "
                f"source={self.source.label()})")


def _fail(path, problem: str, fix: str):
    raise DataError(f"{path}: {problem} — {fix}")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array of an npz file, turning each way a file can be broken into a DataError."""
    if not path.exists():
        _fail(path, "file not found", f"put the competition file there, or pass another path / set MARS_DATA")
    if path.is_dir():
        _fail(path, "is a folder, not a file", f"point to the .npz file inside it (e.g. {path / REAL_FILENAME})")
    if path.stat().st_size == 0:
        _fail(path, "file is empty", "re-download or regenerate it")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            shape = getattr(loaded, "shape", "?")
            _fail(path, f"a plain .npy array (shape {shape}), not an .npz archive",
                  "save the arrays by name: np.savez(path, training_set=..., test_set=...)")
        with loaded as npz:
            arrays = {key: npz[key] for key in npz.files}
    except PermissionError:
        _fail(path, "permission denied", "make the file readable (chmod a+r) or copy it somewhere you can read")
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, zipfile.LargeZipFile) as exc:
        if isinstance(exc, DataError):
            raise
        reason = "not a zip archive" if not zipfile.is_zipfile(path) else (str(exc).splitlines() or [type(exc).__name__])[0]
        _fail(path, f"not a readable .npz file (truncated or another format: {reason})",
              "re-download it or regenerate it with `python -m helpers.data.synthetic`")
    odd = [key for key, value in arrays.items() if not isinstance(value, np.ndarray)]
    if odd:
        _fail(path, f"member(s) {', '.join(odd)} are not .npy arrays", "keep only arrays saved with np.savez in the file")
    return arrays


def _check_numeric(path, key: str, array: np.ndarray) -> None:
    if array.dtype.kind not in "biuf":
        _fail(path, f"'{key}' has dtype {array.dtype}, not numeric", "save the arrays as float or integer")
    if array.size == 0:
        _fail(path, f"'{key}' is empty (shape {array.shape})", "use a file that holds images")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        _fail(path, f"'{key}' holds {bad} NaN/inf values", "repair or re-download the file")


def _check_grey_levels(path, key: str, images: np.ndarray) -> None:
    """Whole grey levels 0..255 in every image: not standardised, not scaled to 0..1 (all images, or some of
    them: an image whose maximum is at most 1 and that holds a fraction), not fractional."""
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 255:
        _fail(path, f"'{key}' pixels span {low:g}..{high:g}, outside grey levels 0..255",
              "store raw grey levels 0..255 (not standardised values)")
    if high <= 1.0:
        _fail(path, f"'{key}' pixels all lie in 0..1: they look already scaled",
              "store raw grey levels 0..255 (multiply by 255 before saving)")
    if images.dtype.kind != "f":
        return
    fractional = (images != np.round(images)).reshape(len(images), -1)
    scaled = int((fractional.any(axis=1) & (images.reshape(len(images), -1).max(axis=1) <= 1.0)).sum())
    if scaled:
        _fail(path, f"'{key}' mixes scales: {scaled} image(s) lie in 0..1 (already scaled), "
                    f"{len(images) - scaled} in 0..255",
              "store every image as raw grey levels 0..255 (multiply the scaled ones by 255)")
    if fractional.any():
        examples = np.unique(images[fractional.reshape(images.shape)])[:3]
        _fail(path, f"'{key}' holds {int(fractional.sum())} fractional grey levels (e.g. "
                    f"{', '.join(f'{v:g}' for v in examples)}), not whole levels 0..255",
              "store whole grey levels (round them before saving if that is what you mean)")


def validate_arrays(path, training_set: np.ndarray, test_set: np.ndarray) -> None:
    """Check the competition layout; raise a one-line DataError on the first problem found."""
    h, w = IMAGE_SHAPE
    _check_numeric(path, "training_set", training_set)
    _check_numeric(path, "test_set", test_set)
    if training_set.ndim != 4 or training_set.shape[1:] != (2, h, w):
        _fail(path, f"'training_set' has shape {training_set.shape}, expected (N, 2, {h}, {w})",
              "stack images and masks as training_set[:, 0] and training_set[:, 1]")
    if test_set.ndim != 3 or test_set.shape[1:] != (h, w):
        _fail(path, f"'test_set' has shape {test_set.shape}, expected (M, {h}, {w})",
              "store the test images as one (M, 64, 128) array")
    _check_grey_levels(path, "training_set images", training_set[:, 0])
    _check_grey_levels(path, "test_set", test_set)
    masks = training_set[:, 1]
    bad = (masks < 0) | (masks > NUM_CLASSES - 1) | (masks != np.round(masks))
    if bad.any():
        examples = np.unique(masks[bad])[:5]
        _fail(path, f"masks hold {int(bad.sum())} values that are not integers in 0..{NUM_CLASSES - 1} "
                    f"(e.g. {', '.join(f'{v:g}' for v in examples)})",
              "store class ids 0 background, 1 soil, 2 bedrock, 3 sand, 4 big rock")


def fingerprint(train_images_u8: np.ndarray, train_masks: np.ndarray, test_images_u8: np.ndarray) -> str:
    """Content hash of the canonical uint8 arrays: equal for float64 and uint8 copies of the same data."""
    digest = hashlib.sha256()
    for array in (train_images_u8, train_masks, test_images_u8):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return digest.hexdigest()[:16]


def read_competition_file(path, *, kind: str | None = None, found_by: str = "path") -> MarsData:
    """Read and validate one file in the competition layout."""
    path = Path(path).expanduser()
    arrays = _read_npz(path)
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        _fail(path, f"missing key(s) {', '.join(missing)} (found: {', '.join(arrays) or 'none'})",
              "use the competition file mars_for_students.npz or the synthetic generator's output")
    training_set, test_set = arrays["training_set"], arrays["test_set"]
    validate_arrays(path, training_set, test_set)
    images_u8 = np.rint(training_set[:, 0]).astype(np.uint8)
    masks = np.rint(training_set[:, 1]).astype(np.uint8)
    test_u8 = np.rint(test_set).astype(np.uint8)
    labels = _labels_beside(path)
    source = DataSource(kind=kind or ("synthetic" if labels else "real"), path=str(path.resolve()),
                        fingerprint=fingerprint(images_u8, masks, test_u8), found_by=found_by)
    data = MarsData(train_images=images_u8.astype(np.float32) / 255.0, train_masks=masks,
                    test_images=test_u8.astype(np.float32) / 255.0, source=source)
    return with_labels(data, labels) if labels else data


def _labels_beside(path: Path) -> Path | None:
    """The hidden test masks the synthetic generator writes beside its data file, if present."""
    candidate = path.with_name(f"{path.stem}_test_labels.npz")
    return candidate if candidate.exists() else None


def kaggle_input_dir() -> Path:
    return Path(os.environ.get("MARS_KAGGLE_INPUT", "/kaggle/input"))


def find_under(root, name: str = REAL_FILENAME) -> Path | None:
    """The first file called `name` (sorted paths) anywhere under the folder `root`; None if there is none (or no
    such folder): how the competition file is found in a Kaggle input folder."""
    root = Path(root)
    found = sorted(root.glob(f"**/{name}")) if root.is_dir() else []
    return found[0] if found else None


def find_data_file(path=None) -> tuple[Path | None, str]:
    """Apply the search order; return (path or None for 'use the synthetic default', rule that matched)."""
    if path is not None:
        return Path(path).expanduser(), "explicit path"
    if os.environ.get("MARS_DATA"):
        return Path(os.environ["MARS_DATA"]).expanduser(), "MARS_DATA"
    local = data_dir() / REAL_FILENAME
    if local.exists():
        return local, f"data/{REAL_FILENAME}"
    found = find_under(kaggle_input_dir())
    if found is not None:
        return found, "Kaggle input"
    return None, "synthetic default"


def synthetic_default_path() -> Path:
    return data_dir() / SYNTHETIC_FILENAME


def ensure_synthetic_default() -> Path:
    """Generate the synthetic default under data/ on first use (full competition size, seed 0)."""
    target = synthetic_default_path()
    from helpers.data import synthetic  # imported lazily: only needed when no real file is present

    if not target.exists() or not synthetic.labels_path_for(target).exists():
        print(f"No competition file found: generating the synthetic default at {target} (once) ...",
              file=sys.stderr)
        target.parent.mkdir(parents=True, exist_ok=True)
        synthetic.write(target)
    return target


def load_mars(path=None, labels=None) -> MarsData:
    """Load the data by the search order in the module docstring; see `MarsData` for what comes back.

    `labels` names a hidden-test-labels file explicitly (default: `<stem>_test_labels.npz` beside the data).
    """
    found, rule = find_data_file(path)
    if found is None:
        data = read_competition_file(ensure_synthetic_default(), kind="synthetic", found_by=rule)
    else:
        data = read_competition_file(found, found_by=rule)
    if labels is not None:
        labels = Path(labels).expanduser()
        if not labels.is_file():
            _fail(labels, "labels file not found", "pass the *_test_labels.npz written beside the synthetic data, "
                                                   "or a (N, 64, 128) .npy of test masks")
        data = with_labels(data, labels)
    return data


def with_labels(data: MarsData, path: Path) -> MarsData:
    """`data` with hidden test labels from `path`, validated before any work starts (readable, well formed, one
    mask per test image, public and private parts that split the test set) and fingerprinted: the leaderboard
    scores of a record are keyed by that fingerprint (`helpers.run.train.run` re-scores on a change)."""
    path = Path(path)
    try:
        labels = load_test_labels(path)
    except LabelsError as error:
        raise DataError(str(error)) from None
    n_labels, n_test = len(labels["test_masks"]), len(data.test_images)
    if n_labels != n_test:
        _fail(path, f"{n_labels} test masks for {n_test} test images",
              "pass the labels of this data file's test_set, one (64, 128) mask per test image, in file order")
    return replace(data, source=replace(data.source, labels_path=str(path.resolve()),
                                        labels_fingerprint=labels_fingerprint(labels)))


def summarize(data: MarsData) -> dict:
    """Counts a reader checks first: images, class pixel shares, images per class, shared-mask outliers."""
    from helpers.data.aliens import find_aliens

    masks = data.train_masks
    pixels = np.bincount(masks.ravel(), minlength=NUM_CLASSES)
    per_image = np.stack([(masks == c).any(axis=(1, 2)) for c in range(NUM_CLASSES)], axis=1)
    aliens = find_aliens(masks)
    return {
        "source": data.source.to_dict(),
        "n_train": int(len(masks)),
        "n_test": int(len(data.test_images)),
        "pixel_share": {CLASS_NAMES[c]: float(pixels[c] / pixels.sum()) for c in range(NUM_CLASSES)},
        "images_with_class": {CLASS_NAMES[c]: int(per_image[:, c].sum()) for c in range(NUM_CLASSES)},
        "labelled_classes_per_image": float(per_image[:, 1:].sum(axis=1).mean()),
        "aliens": {"count": int(len(aliens.indices)), "groups": aliens.group_sizes,
                   "first_indices": aliens.indices[:10].tolist(), "min_count": aliens.min_count,
                   "rules": aliens.rules, "ambiguous_groups": aliens.ambiguous_group_sizes},
    }


def format_summary(summary: dict) -> str:
    src = summary["source"]
    lines = [f"source: {src['kind']} data at {src['path']} (fingerprint {src['fingerprint']}, found by: {src['found_by']})",
             f"training images: {summary['n_train']}   test images: {summary['n_test']}",
             f"{'class':<10} {'pixel share':>12} {'images':>8}"]
    for name, share in summary["pixel_share"].items():
        lines.append(f"{name:<10} {100 * share:>11.2f}% {summary['images_with_class'][name]:>8}")
    lines.append(f"labelled classes per image: {summary['labelled_classes_per_image']:.2f}")
    aliens = summary["aliens"]
    lines.append(f"aliens (the shipped alien mask, or the single dominant repeated mask): {aliens['count']} images "
                 f"in {len(aliens['groups'])} group(s) {aliens['groups']} ({', '.join(aliens['rules']) or 'none'}), "
                 f"first indices {aliens['first_indices']}")
    if aliens["ambiguous_groups"]:
        lines.append(f"kept, but repeated >= {aliens['min_count']} times: groups {aliens['ambiguous_groups']} "
                     "(find_aliens(..., extra_groups='remove') removes them)")
    if src["kind"] == "synthetic":
        lines.append("NOTE: synthetic data — numbers describe the generator, not the competition file.")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.data.loading", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    inspect = sub.add_parser("inspect", help="validate a data file and print a summary")
    inspect.add_argument("path", nargs="?", help="npz file (default: the search order of load_mars)")
    args = parser.parse_args(argv)
    try:
        print(format_summary(summarize(load_mars(args.path))))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
