"""Progress lines of long runs: each run as it starts (its place, trained or reused), one line per epoch, and the
elapsed time and ETA estimated from the runs finished so far.

Lines go to stdout (a notebook's output, the terminal) and, when `MARS_PROGRESS_LOG` names a file, are also
appended to it: `helpers.study.pipeline` sets it (with `MARS_PROGRESS_TOTAL`, the number of distinct runs it will ask
for, ensemble members included: `helpers.study.pipeline.announced`) and prints the file's new lines as they come, so
`make table1` shows what its notebooks' kernels are doing.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import keras

from helpers.configs.constants import MONITOR, PRIMARY

START = re.compile(r"^\[(\d+)/(\d+)\] (.+) \(seed (\d+)\): (training|reused)")
FINISH = re.compile(r"^ +(.+) \(seed (\d+)\): trained in (\d+) s")


def _log() -> Path | None:
    path = os.environ.get("MARS_PROGRESS_LOG")
    return Path(path) if path else None


def say(line: str, log: bool = True) -> None:
    """Print `line` and (with `log`) append it to the progress log, if one is set."""
    print(line, flush=True)
    if log and (path := _log()) is not None:
        with path.open("a") as handle:
            handle.write(line + "\n")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def eta(lines: list[str], total: int, started: float | None, workers: int = 1) -> str:
    """'elapsed …, ETA …' from the log's lines so far: mean seconds of the runs trained × the runs not yet seen,
    shared by `workers` processes training side by side."""
    seen = {(m.group(3), m.group(4)) for m in map(START.match, lines) if m}
    trained = [int(m.group(3)) for m in map(FINISH.match, lines) if m]
    parts = [] if started is None else [f"elapsed {_minutes(time.time() - started)}"]
    if trained and total:
        left = max(0, total - len(seen))
        parts.append(f"ETA ≈ {_minutes(sum(trained) / len(trained) * left / max(1, workers))} more "
                     f"for {left} runs not started")
    return ", ".join(parts)


def announce(name: str, seed: int, state: str) -> None:
    """'[7/24] Network 6 (seed 0): training — elapsed …, ETA …' (the place only under the pipeline). A run the log
    already announced (trained by another worker, or before the notebooks) is printed but not logged again."""
    path, total = _log(), int(os.environ.get("MARS_PROGRESS_TOTAL", "0") or 0)
    lines = path.read_text().splitlines() if path is not None and path.exists() else []
    seen = {(m.group(3), m.group(4)) for m in map(START.match, lines) if m}
    again = (name, str(seed)) in seen and state.startswith("reused")
    place = len(seen | {(name, str(seed))})
    started = float(os.environ["MARS_PROGRESS_STARTED"]) if os.environ.get("MARS_PROGRESS_STARTED") else None
    workers = int(os.environ.get("MARS_PROGRESS_WORKERS", "1") or 1)
    head = f"[{place}/{total}] " if total else "[run] "
    note = eta(lines, total, started, workers)
    say(f"{head}{name} (seed {seed}): {state}" + (f" — {note}" if note else ""), log=not again)


def finished(name: str, seed: int, seconds: float, record: dict) -> None:
    members = record.get("members")
    done = f"scored {len(members)} model(s) trained in {seconds:.0f} s" if members else f"trained in {seconds:.0f} s"
    say(f"    {name} (seed {seed}): {done}; best val mIoU "
        f"{100 * (record['training']['best_val_miou_fg'] or 0):.1f} (epoch {record['training']['best_epoch']}), "
        f"test mIoU {100 * record['test'][PRIMARY]:.1f}")


class EpochLine(keras.callbacks.Callback):
    """One progress line per epoch: '    Network 6 (seed 0) epoch 3/6: val mIoU 24.1 (18 s)' (named, since
    several workers may train side by side)."""

    def __init__(self, epochs: int, run: str = ""):
        super().__init__()
        self.epochs, self.run = epochs, run

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(MONITOR)
        score = "" if value is None else f": val mIoU {100 * float(value):.1f}"
        name = f"{self.run} " if self.run else ""
        say(f"    {name}epoch {epoch + 1}/{self.epochs}{score} ({time.perf_counter() - self._started:.0f} s)")
