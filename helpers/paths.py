"""Where things live: the repository root, data/ and reports/ (overridable by environment variables).

`MARS_REPORTS` moves every generated output (records, figures, tables) elsewhere, e.g. into a temp
folder for tests or `/kaggle/working` in a kernel.
"""
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = Path(__file__).resolve().parent / "assets"


def data_dir() -> Path:
    """Folder holding data files: `MARS_DATA_DIR` if set, else `<repo>/data`."""
    return Path(os.environ.get("MARS_DATA_DIR", REPO_ROOT / "data"))


def reports_dir() -> Path:
    """Folder for generated outputs: `MARS_REPORTS` if set, else `<repo>/reports`."""
    return Path(os.environ.get("MARS_REPORTS", REPO_ROOT / "reports"))
