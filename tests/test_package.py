"""The package's layout and the two things that walk it: the code fingerprint (which modules decide a run's numbers)
and the Kaggle bundle (every file the kernel needs). A module added anywhere, in a new subpackage too, is counted
by both unless `records.NOT_NUMERIC` names it."""
import io
import shutil
import zipfile

import pytest

from helpers.kaggle.bundle import package_archive
from helpers.run.records import NOT_NUMERIC, code_fingerprint, is_numeric, numeric_modules
from helpers.runtime.paths import PACKAGE_DIR

NEW_MODULE = "SCALE = 2.0\n\n\ndef scaled(x):\n    return SCALE * x\n"


def _modules(package) -> set[str]:
    """Every module of the package at any depth, walked here independently of `package_files`."""
    return {p.relative_to(package).as_posix() for p in package.rglob("*.py") if "__pycache__" not in p.parts}


@pytest.fixture
def package(tmp_path):
    copy = tmp_path / "helpers"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_every_module_is_fingerprinted_or_named_as_not_numeric():
    modules = _modules(PACKAGE_DIR)
    for entry in NOT_NUMERIC:  # no stale entry: each names a module or a subpackage that exists
        assert (PACKAGE_DIR / entry).is_dir() if entry.endswith("/") else entry in modules, entry
    counted = {p.relative_to(PACKAGE_DIR).as_posix() for p in numeric_modules()}
    assert counted == {m for m in modules if is_numeric(m)}
    assert counted | {m for m in modules if not is_numeric(m)} == modules
    for layer in ("configs", "runtime", "data", "model", "predict", "run"):  # the layers a run's numbers come from
        assert any(m.startswith(f"{layer}/") for m in counted), layer
    for module in ("model/losses.py", "model/models.py", "data/dataset.py", "predict/inference.py", "run/train.py",
                   "configs/experiments.py", "runtime/device.py"):
        assert module in counted, module


@pytest.mark.parametrize("where", ["model/new_block.py", "model/blocks/deep.py", "newlayer/first.py"])
def test_a_new_module_anywhere_changes_the_fingerprint_and_is_bundled(package, where):
    before = code_fingerprint(package, engine="tensorflow")
    assert before == code_fingerprint(engine="tensorflow"), "the copy is the package"
    path = package / where
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent != package and not (path.parent / "__init__.py").exists():
        (path.parent / "__init__.py").write_text('"""A new subpackage."""\n')
    path.write_text(NEW_MODULE)
    added = code_fingerprint(package, engine="tensorflow")
    assert added != before, f"{where} left out of the fingerprint"
    path.write_text(NEW_MODULE + "\n\nOFFSET = 1.0\n")
    assert code_fingerprint(package, engine="tensorflow") != added, f"an edit of {where} left out of the fingerprint"
    with zipfile.ZipFile(io.BytesIO(package_archive(package))) as archive:
        embedded = set(archive.namelist())
    assert f"helpers/{where}" in embedded, f"{where} left out of the Kaggle bundle"
    assets = {p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file() and p.parent.name == "assets"}
    assert "data/assets/alien_mask.npy" in assets
    assert embedded == {f"helpers/{m}" for m in _modules(package) | assets}


def test_a_not_numeric_module_changes_neither_fingerprint(package):
    before = code_fingerprint(package, engine="tensorflow")
    for relative in sorted(m for m in _modules(package) if not is_numeric(m)):
        path = package / relative
        path.write_text(path.read_text() + "\nEXTRA = 1\n")
    assert code_fingerprint(package, engine="tensorflow") == before
