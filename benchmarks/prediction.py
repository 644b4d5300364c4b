"""Inference and submission-writing speed: `helpers.predict.inference` + `helpers.predict.submission` against the plain way.

- ours: `helpers.predict.inference.predict_labels` (argmax inside one compiled function, balanced batches chosen
  per device, XLA per device); its one compilation is paid in a warm-up call on one batch and reported apart.
- peer: `model.predict` (Keras' default batch of 32, no XLA) then `np.argmax` on the probabilities.
- CSV: `helpers.predict.submission.write_submission` on every row against pandas `DataFrame.to_csv` on a subset
  of rows, extrapolated linearly to the full count (pandas writes row after row at a steady rate).
"""
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.timing import time_calls
from helpers.predict.inference import balanced_batches, choose_inference_settings, predict_labels
from helpers.predict.submission import write_submission
from helpers.runtime.device import device_facts


def ours(model, images: np.ndarray, *, batch_size=None, jit_compile="auto") -> dict:
    """Images/s of `predict_labels` over all `images`, after a warm-up call that compiles the batch shape."""
    facts = {**device_facts(), "compute_dtype": model.dtype_policy.compute_dtype}
    settings = choose_inference_settings(facts, batch_size=batch_size, jit_compile=jit_compile)
    _, size = balanced_batches(len(images), settings["batch_size"])
    started = time.perf_counter()
    predict_labels(model, images[:size], **settings)
    warmup = time.perf_counter() - started
    started = time.perf_counter()
    labels = predict_labels(model, images, **settings)
    seconds = time.perf_counter() - started
    return {"per_second": len(images) / seconds, "seconds": seconds, "warmup_seconds": warmup,
            "items": len(images), "batch_size": size, "jit_compile": settings["jit_compile"], "labels": labels}


def peer(model, images: np.ndarray, *, batch_size: int = 32) -> dict:
    """Images/s of `model.predict` + `np.argmax` (labels as uint8), after a warm-up call on one batch."""
    model.compile(jit_compile=False)
    started = time.perf_counter()
    model.predict(images[:batch_size, ..., None], batch_size=batch_size, verbose=0)
    warmup = time.perf_counter() - started
    started = time.perf_counter()
    labels = np.argmax(model.predict(images[..., None], batch_size=batch_size, verbose=0), axis=-1).astype(np.uint8)
    seconds = time.perf_counter() - started
    return {"per_second": len(images) / seconds, "seconds": seconds, "warmup_seconds": warmup,
            "items": len(images), "batch_size": batch_size, "jit_compile": False, "labels": labels}


def csv_ours(labels: np.ndarray, repeats: int = 2) -> dict:
    """Rows/s of `write_submission` writing every row of `labels` (median of `repeats`, no warm-up needed)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "submission.csv"
        seconds = sorted(time_calls(lambda: write_submission(labels, path), repeats, warmup=0))
        size = path.stat().st_size
    median = seconds[len(seconds) // 2]
    return {"rows_per_second": len(labels) / median, "seconds": median, "rows": len(labels), "bytes": size}


def csv_pandas(labels: np.ndarray, rows: int) -> dict:
    """Rows/s of pandas building the DataFrame and `to_csv` for the first `rows` rows (same layout as ours)."""
    import pandas as pd

    subset = labels[:rows].reshape(min(rows, len(labels)), -1)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        frame = pd.DataFrame(subset)
        frame.insert(0, "id", np.arange(len(subset)))
        frame.to_csv(Path(folder) / "submission.csv", index=False)
        seconds = time.perf_counter() - started
    return {"rows_per_second": len(subset) / seconds, "seconds": seconds, "rows": len(subset)}
