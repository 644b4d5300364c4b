"""The Kaggle submission CSV: write it fast, read it back strictly, score it against known labels.

Format (docs/study.md): header `id,0,1,…,8191`; one row per test image in file order, ids 0..N-1;
pixel column r·128 + c (row-major); integer class ids 0..4.

The text is built by hand with numpy: each pixel is looked up in a table of the byte pairs
"0,".."4," (held as uint16) and a row is written as one buffer, so the 10022-image test set takes
about 2 s (pandas `to_csv` writes 100-300 of these 8193-column rows per second: minutes). No
library writes this fixed-width digit layout faster, hence the hand-written writer and reader.

Command line: `python -m helpers.predict.submission score SUBMISSION.csv --labels LABELS.npz
[--part all|public|private]` prints the competition score and the mean IoU over classes 1-4.
"""
import argparse
import re
import sys
from pathlib import Path

import numpy as np

from helpers.configs.constants import IMAGE_SHAPE, NUM_CLASSES
from helpers.data.hidden_labels import LabelsError, load_test_labels
from helpers.runtime.files import atomic_file

N_PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
HEADER = "id," + ",".join(str(i) for i in range(N_PIXELS))
PARTS = ("all", "public", "private")

# Each pixel's two output bytes ("3," or "3\n" at a row's end) as one uint16, gathered in a single lookup.
_CELLS = np.frombuffer(b"".join(b"%d," % c for c in range(NUM_CLASSES)), np.uint16)
_ROW_ENDS = np.frombuffer(b"".join(b"%d\n" % c for c in range(NUM_CLASSES)), np.uint16)
_COMMA, _ZERO = ord(","), ord("0")
_ROWS_PER_CHUNK = 1024
_INTEGER = re.compile(rb"\s*[+-]?\d+\s*")


class SubmissionError(ValueError):
    """A submission CSV, its predictions or the labels file it is scored against is malformed (message names the
    problem)."""


def _check_predictions(predictions) -> np.ndarray:
    array = np.asarray(predictions)
    if array.ndim == 4 and array.shape[1:3] == IMAGE_SHAPE:
        hint = "take argmax(axis=-1) of the probabilities" if array.shape[-1] > 1 else "squeeze the last axis"
        raise SubmissionError(f"predictions have shape {array.shape}; expected (N, 64, 128) class ids: {hint}")
    if array.ndim != 3 or array.shape[1:] != IMAGE_SHAPE or array.shape[0] == 0:
        raise SubmissionError(f"predictions have shape {array.shape}; expected (N, 64, 128) with N >= 1")
    if not np.issubdtype(array.dtype, np.integer):
        raise SubmissionError(f"predictions have dtype {array.dtype}; expected integer class ids "
                              "(argmax, then astype(int))")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= NUM_CLASSES:
        raise SubmissionError(f"predictions hold values {low}..{high}; class ids must lie in 0..{NUM_CLASSES - 1}")
    return array.astype(np.uint8, copy=False)


def write_submission(predictions, path) -> Path:
    """Write `predictions` (N, 64, 128) int class ids as the Kaggle CSV at `path`; returns the path.

    The file appears atomically (`helpers.runtime.files.atomic_file`), so a crash never leaves a
    half-written submission under the final name.
    """
    masks = _check_predictions(predictions)
    path = Path(path)
    with atomic_file(path) as file:
        file.write(HEADER.encode() + b"\n")
        for start in range(0, len(masks), _ROWS_PER_CHUNK):
            chunk = masks[start:start + _ROWS_PER_CHUNK].reshape(-1, N_PIXELS)
            cells = _CELLS[chunk]
            cells[:, -1] = _ROW_ENDS[chunk[:, -1]]
            for offset, row in enumerate(cells):
                file.write(b"%d," % (start + offset))
                file.write(row.data)
    return path


def _parse_pixels_slowly(text: bytes, line_number: int) -> np.ndarray:
    """Parse one row's pixel fields one by one, naming the first bad field (used when the fast path fails)."""
    fields = text.split(b",")
    if len(fields) != N_PIXELS:
        raise SubmissionError(
            f"line {line_number}: {len(fields) + 1} columns, expected {N_PIXELS + 1} (id + {N_PIXELS} pixels)")
    values = np.empty(N_PIXELS, np.uint8)
    for column, field in enumerate(fields):
        shown = field.decode(errors="replace")
        if not _INTEGER.fullmatch(field):
            raise SubmissionError(f"line {line_number}, pixel column {column}: {shown!r} is not an integer class id")
        value = int(field)
        if not 0 <= value < NUM_CLASSES:
            raise SubmissionError(
                f"line {line_number}, pixel column {column}: class id {value} outside 0..{NUM_CLASSES - 1}")
        values[column] = value
    return values


def _parse_row(line: bytes, line_number: int, expected_id: int) -> np.ndarray:
    id_text, comma, pixels = line.partition(b",")
    if not comma:
        raise SubmissionError(f"line {line_number}: no comma; expected 'id,' followed by {N_PIXELS} pixel values")
    if not _INTEGER.fullmatch(id_text) or int(id_text) != expected_id:
        shown = id_text.decode(errors="replace")
        raise SubmissionError(f"line {line_number}: id {shown!r}, expected {expected_id} (ids run 0..N-1 in test order)")
    if len(pixels) == 2 * N_PIXELS - 1:
        codes = np.frombuffer(pixels, np.uint8)
        digits = codes[0::2] - np.uint8(_ZERO)
        if (codes[1::2] == _COMMA).all() and int(digits.max()) < NUM_CLASSES:
            return digits
    return _parse_pixels_slowly(pixels, line_number)


def read_submission(path, n_images: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate a submission CSV; returns (ids (N,) int64, masks (N, 64, 128) uint8).

    Checks the header, that ids run 0..N-1 in order, that every row holds 8192 integer class
    ids in 0..4 and, when `n_images` is given, that there are exactly that many rows. Each
    problem raises `SubmissionError` naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"submission file {path} does not exist")
    rows = []
    with open(path, "rb") as file:
        header = file.readline().rstrip(b"\r\n").decode(errors="replace")
        if header != HEADER:
            shown = header if len(header) <= 40 else header[:40] + "…"
            raise SubmissionError(
                f"line 1: header {shown!r} is not 'id,0,1,…,{N_PIXELS - 1}' ({N_PIXELS + 1} columns)")
        for index, raw in enumerate(file):
            line = raw.rstrip(b"\r\n")
            rows.append(_parse_row(line, index + 2, index))
    if not rows:
        raise SubmissionError(f"{path}: no data rows after the header")
    if n_images is not None and len(rows) != n_images:
        raise SubmissionError(f"{path}: {len(rows)} rows, expected {n_images} (one per test image)")
    return np.arange(len(rows), dtype=np.int64), np.stack(rows).reshape(-1, *IMAGE_SHAPE)


def score_submission(path, labels_path, part: str = "all") -> dict:
    """Score a submission CSV against a labels npz on the `part` ("all", "public" or "private") of the test set.

    Returns a plain dict: part, n_images, competition_miou (starter-kit `MeanIoU(5, ignore_class=0)`
    semantics), miou_1_4 (mean IoU over classes 1-4) and per_class_iou {class name: IoU on all
    pixels, None for a class in neither truth nor prediction} and the confusion matrix: `helpers.model.metrics.scores`.
    """
    if part not in PARTS:
        raise SubmissionError(f"part {part!r} is unknown; use one of {', '.join(PARTS)}")
    try:
        labels = load_test_labels(labels_path)
    except LabelsError as error:
        raise SubmissionError(str(error)) from None
    masks = labels["test_masks"]
    _, predictions = read_submission(path)
    if len(predictions) != len(masks):
        raise SubmissionError(f"{path} has {len(predictions)} rows but labels file {labels_path} holds {len(masks)} "
                              "test masks: score against the labels of the test set this submission predicts")
    chosen = np.arange(len(masks)) if part == "all" else np.sort(labels[f"{part}_ids"])
    if not len(chosen):
        raise SubmissionError(f"labels file {labels_path}: {part}_ids is empty, nothing to score")
    from helpers.model import metrics  # Keras with it: loading data (which reads test labels here) must not start Keras

    return {"part": part, "n_images": int(len(chosen)), **metrics.scores(masks[chosen], predictions[chosen])}


def main(argv=None) -> int:
    """Command line entry point; malformed inputs print one line on stderr and return 2."""
    parser = argparse.ArgumentParser(prog="python -m helpers.predict.submission", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="score a submission CSV against a labels npz")
    score.add_argument("submission", help="the submission CSV")
    score.add_argument("--labels", required=True, help="npz with test_masks, public_ids, private_ids")
    score.add_argument("--part", choices=PARTS, default="all", help="which part of the test set to score")
    args = parser.parse_args(argv)
    try:
        result = score_submission(args.submission, args.labels, part=args.part)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"part: {result['part']} ({result['n_images']} images)")
    print(f"competition_miou: {result['competition_miou']:.6f}")
    print(f"miou_1_4: {result['miou_1_4']:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
