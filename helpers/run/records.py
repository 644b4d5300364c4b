"""Run records: one JSON file per training run, written atomically (`helpers.runtime.files`), keyed by what
determines the run.

The key hashes the resolved entry settings, the profile, the seed, the data fingerprint and a fingerprint
of the code that decides a run's numbers (`code_fingerprint`), so a rerun with the same inputs and code
finds its finished record and reuses it, and anything that changes the run gets a new one. Records live in
`reports/runs/<slug>__<key>/record.json`, beside the run's history and best model.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
from pathlib import Path

from helpers.runtime.paths import PACKAGE_DIR, package_files, reports_dir


# Files of helpers/ that cannot change a run's numbers (orchestration, reporting, packaging), as paths relative to the
# package; a name ending in "/" is a whole subpackage. Editing them keeps the records. Every other module of helpers/,
# at any depth, is part of the code fingerprint (`numeric_modules`).
NOT_NUMERIC = frozenset({"__init__.py", "study/", "kaggle/", "runtime/paths.py", "runtime/files.py",
                         "data/hidden_labels.py", "model/flops.py", "predict/leaderboard.py", "predict/submission.py",
                         "run/backend_choice.py", "run/claims.py", "run/progress.py", "run/projection.py",
                         "run/records.py"})


def is_numeric(relative: str) -> bool:
    """Whether the package file at `relative` (a posix path inside helpers/, e.g. "model/losses.py") counts in the
    code fingerprint: not named in `NOT_NUMERIC`, nor inside a subpackage it names."""
    return not any(relative == entry or (entry.endswith("/") and relative.startswith(entry)) for entry in NOT_NUMERIC)


def numeric_modules(package: Path | None = None) -> list[Path]:
    """The modules of helpers/ (or `package`), at any depth, whose code decides a run's numbers, sorted."""
    package = Path(package) if package else PACKAGE_DIR
    return [path for path in package_files(package)
            if path.suffix == ".py" and is_numeric(path.relative_to(package).as_posix())]


def _code_only(source: str) -> str:
    """The module's syntax tree without docstrings (comments never reach it): what runs, not what it says."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def code_fingerprint(package: Path | None = None, engine: str | None = None) -> str:
    """Hash of the code of helpers/ (or `package`) that decides a run's numbers (`numeric_modules`: models, losses,
    data...), each module named by its path in the package; docstrings and comments do not count. The Keras
    backend (`engine`, default the one running) counts too when it is not TensorFlow: the same code gives other
    numbers on JAX (other random streams and kernels), so a JAX run never reuses a TensorFlow record, while
    TensorFlow's fingerprints have no backend part."""
    from helpers.runtime import backend

    digest = hashlib.sha256()
    package = Path(package) if package else PACKAGE_DIR
    for path in numeric_modules(package):
        relative = path.relative_to(package).as_posix()
        digest.update(relative.encode() + b"\0" + _code_only(path.read_text()).encode() + b"\0")
    engine = engine or backend.name()
    if engine != "tensorflow":
        digest.update(b"backend\0" + engine.encode())
    return digest.hexdigest()[:12]


def run_key(settings: dict, profile: dict, seed: int, fingerprint: str, code: str) -> str:
    payload = json.dumps({"settings": settings, "profile": profile, "seed": seed, "data": fingerprint,
                          "code": code}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def runs_dir() -> Path:
    return reports_dir() / "runs"


def run_dir(name: str, key: str) -> Path:
    return runs_dir() / f"{slug(name)}__{key}"


REQUIRED = {"name": str, "key": str, "seed": int, "profile": dict, "data": dict, "settings": dict,
            "training": dict, "test": dict, "finished_at": str}
"""The fields every finished record has (and their types): a record lacking one is reported and not used."""


def _warn(path, problem: str) -> None:
    print(f"warning: ignoring {path}: {problem}; the run will be redone", file=sys.stderr)


def read_record(path: Path) -> dict | None:
    """A finished record, or None when absent, unfinished or malformed; an unreadable or malformed file (not a
    JSON object, no "status", a required field missing: `REQUIRED`) is reported on stderr in one line, never used."""
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        _warn(path, f"unreadable record ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
        return None
    if not isinstance(record, dict):
        _warn(path, f"a record is a JSON object, this file holds {type(record).__name__ if record is not None else 'null'}")
        return None
    if "status" not in record:
        _warn(path, 'no "status" field (not a record written by helpers.run.train)')
        return None
    if record["status"] != "finished":
        return None
    wrong = [key for key, kind in REQUIRED.items() if not isinstance(record.get(key), kind)]
    wrong += [f"{outer}.{inner}" for outer, inner in (("profile", "name"), ("data", "fingerprint"))
              if outer not in wrong and not isinstance(record[outer].get(inner), str)]
    if wrong:
        _warn(path, f"finished record without a valid {', '.join(repr(k) for k in wrong)} field")
        return None
    return record


def all_records(root: Path | None = None) -> list[dict]:
    """Every finished record under reports/runs (or `root`)."""
    root = Path(root) if root else runs_dir()
    records = (read_record(p) for p in sorted(root.glob("*/record.json")))
    return [r for r in records if r is not None]
