"""Claims on run folders: several workers (processes, or machines sharing `reports/`) never train one run twice.

A worker claims a run by creating `<run folder>/.claim` exclusively (`O_CREAT | O_EXCL`, atomic on local
and NFS file systems) with its host, pid and start time, keeps it fresh while it trains (`Heartbeat`), and
removes it when the run ends. A claim is taken over when it is stale: its process is gone (same host) or
its heartbeat is older than `STALE_SECONDS` (any host). The run then resumes from its `backup/` folder
(Keras `BackupAndRestore`), so a killed worker's epochs are not lost.
"""
from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import keras

CLAIM = ".claim"
STALE_SECONDS = 600.0
HEARTBEAT_SECONDS = 30.0


class RunBusy(RuntimeError):
    """Another live worker holds the run."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder(folder: Path) -> dict | None:
    """Who holds the claim on `folder` ({host, pid, since, age}), or None when nobody does."""
    path = Path(folder) / CLAIM
    try:
        info = json.loads(path.read_text() or "{}")
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):
        info, age = {}, 0.0  # being written right now: not stale
    return {**info, "age": age}


def is_stale(info: dict) -> bool:
    if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int) and not _alive(info["pid"]):
        return True
    return info["age"] > STALE_SECONDS


def try_claim(folder: Path) -> bool:
    """Claim `folder` for this process; False when a live worker holds it (a stale claim is taken over)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CLAIM
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            info = holder(folder)
            if info is None:
                continue  # released in between: try again
            if not is_stale(info):
                return False
            path.unlink(missing_ok=True)  # stale: take it over
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}, handle)
        return True
    return False


def release(folder: Path) -> None:
    """Drop this process's claim on `folder` (someone else's is left alone)."""
    info = holder(folder)
    if info and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
        (Path(folder) / CLAIM).unlink(missing_ok=True)


@contextmanager
def claimed(folder: Path, *, wait: bool = True, poll_seconds: float = 2.0):
    """Hold the claim on `folder` inside the block; wait for a live holder, or raise `RunBusy` with `wait=False`."""
    while not try_claim(folder):
        if not wait:
            info = holder(folder) or {}
            raise RunBusy(f"{folder.name} is being trained by pid {info.get('pid')} on {info.get('host')}")
        time.sleep(poll_seconds)
    try:
        yield
    finally:
        release(folder)


class Heartbeat(keras.callbacks.Callback):
    """Touch the claim while training, at most every `HEARTBEAT_SECONDS`, so other workers see it is alive."""

    def __init__(self, folder: Path):
        super().__init__()
        self.path, self._last = Path(folder) / CLAIM, 0.0

    def on_train_batch_end(self, batch, logs=None):
        now = time.time()
        if now - self._last >= HEARTBEAT_SECONDS:
            self._last = now
            if self.path.exists():
                os.utime(self.path)
