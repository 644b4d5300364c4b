"""Where things live: the repository root, the package and its assets, data/ and reports/ (the last two
overridable by environment variables).

`MARS_REPORTS` moves every generated output (records, figures, tables) elsewhere, e.g. into a temp
folder for tests or `/kaggle/working` in a kernel.
"""
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_DIR.parent
ASSETS_DIR = PACKAGE_DIR / "data" / "assets"


def data_dir() -> Path:
    """Folder holding data files: `MARS_DATA_DIR` if set, else `<repo>/data`."""
    return Path(os.environ.get("MARS_DATA_DIR", REPO_ROOT / "data"))


def reports_dir() -> Path:
    """Folder for generated outputs: `MARS_REPORTS` if set, else `<repo>/reports`."""
    return Path(os.environ.get("MARS_REPORTS", REPO_ROOT / "reports"))


def package_files(package=PACKAGE_DIR) -> list[Path]:
    """Every file the package is made of, sorted: its modules (`*.py`) at any depth and every file under an `assets/`
    folder; never a cache (`__pycache__`). The code fingerprint and the Kaggle bundle both walk the package here."""
    package = Path(package)
    found = []
    for path in package.rglob("*"):
        parts = path.relative_to(package).parts
        if path.is_file() and "__pycache__" not in parts and (path.suffix == ".py" or "assets" in parts[:-1]):
            found.append(path)
    return sorted(found)
