"""Run records: one JSON file per training run, written atomically, keyed by what determines the run.

The key hashes the resolved entry settings, the profile, the seed, the data fingerprint and the package
version, so a rerun with the same inputs finds its finished record and reuses it, and anything that
changes the run gets a new one. Records live in `reports/runs/<slug>__<key>/record.json`, beside the
run's history and best model.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from helpers.paths import reports_dir


def run_key(settings: dict, profile: dict, seed: int, fingerprint: str, version: str) -> str:
    payload = json.dumps({"settings": settings, "profile": profile, "seed": seed, "data": fingerprint,
                          "version": version}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def runs_dir() -> Path:
    return reports_dir() / "runs"


def run_dir(name: str, key: str) -> Path:
    return runs_dir() / f"{slug(name)}__{key}"


def write_json_atomic(path: Path, payload) -> None:
    """Write JSON via a temp file and os.replace, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(path: Path) -> dict | None:
    """A finished record, or None when absent or unreadable (an unreadable one is reported, never used)."""
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError) as exc:
        print(f"warning: ignoring unreadable record {path} ({exc}); the run will be redone")
        return None
    return record if record.get("status") == "finished" else None


def all_records(root: Path | None = None) -> list[dict]:
    """Every finished record under reports/runs (or `root`)."""
    root = Path(root) if root else runs_dir()
    records = (read_record(p) for p in sorted(root.glob("*/record.json")))
    return [r for r in records if r is not None]
