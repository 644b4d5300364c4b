"""Shared fixtures. Every test writes under a temporary data/ and reports/ folder, never the repo's."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

# Applies to every test process and subprocess: nothing touches the repo's data/ or reports/.
_SESSION_ROOT = Path(os.environ.setdefault("MARS_TEST_ROOT", str(Path(__import__("tempfile").mkdtemp(prefix="mars-tests-")))))
os.environ.setdefault("MARS_DATA_DIR", str(_SESSION_ROOT / "data"))
os.environ.setdefault("MARS_REPORTS", str(_SESSION_ROOT / "reports"))
os.environ.setdefault("MARS_KAGGLE_INPUT", str(_SESSION_ROOT / "no-kaggle-input"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_competition_arrays(n_train=40, n_test=12, *, alien_ids=(3, 7, 8, 15, 20, 21, 22, 30, 31, 33, 36, 39),
                            duplicate_pair=(5, 6), seed=0):
    """A tiny file in the competition layout, built independently of the synthetic generator.

    Masks are random blocks of classes; `alien_ids` share one identical mask; `duplicate_pair` shares
    another (a legitimate repeat that must not be flagged).
    """
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_train, 64, 128)).astype(np.float64)
    blocks = rng.integers(0, 5, size=(n_train, 4, 8))
    masks = np.kron(blocks, np.ones((16, 16), dtype=np.int64)).astype(np.float64)
    alien_mask = np.kron(rng.integers(0, 4, size=(2, 2)), np.ones((32, 64))).astype(np.float64)
    masks[list(alien_ids)] = alien_mask
    masks[duplicate_pair[1]] = masks[duplicate_pair[0]]
    training_set = np.stack([images, masks], axis=1)
    test_set = rng.integers(0, 256, size=(n_test, 64, 128)).astype(np.uint8)
    return training_set, test_set


@pytest.fixture
def competition_file(tmp_path):
    training_set, test_set = make_competition_arrays()
    path = tmp_path / "mars_for_students.npz"
    np.savez(path, training_set=training_set, test_set=test_set)
    return path


@pytest.fixture(autouse=True)
def _global_dtype_policy():
    """Each test starts from the dtype policy the one before it found: `helpers.runtime.device.configure` sets the global
    policy (mixed_bfloat16 on CPUs where it pays), which would otherwise reach every later test's models."""
    import keras

    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch):
    """Fresh data/, reports/ and Kaggle input folders for one test."""
    for name, sub in (("MARS_DATA_DIR", "data"), ("MARS_REPORTS", "reports"), ("MARS_KAGGLE_INPUT", "kaggle")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.delenv("MARS_DATA", raising=False)
    return tmp_path


def run_module(*args, env=None, timeout=300):
    """Run `python -m ...` in a subprocess with this interpreter; return the CompletedProcess."""
    import subprocess

    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


SMOKE_SIZE = {"n_train": 300, "n_test": 48, "seed": 3}  # 300 training images hold 12 aliens (the shipped alien mask)


@pytest.fixture(scope="session")
def smoke_data():
    """A small synthetic data set (with hidden test labels) shared by the training and pipeline tests."""
    from helpers.data import synthetic
    from helpers.data.loading import load_mars

    path = _SESSION_ROOT / "smoke" / "smoke_mars.npz"
    if not path.exists():
        synthetic.write(path, **SMOKE_SIZE)
    return load_mars(path)


@pytest.fixture(scope="session")
def smoke_records(smoke_data):
    """Every Table 1 entry trained once in the smoke profile (records land in the session's reports/)."""
    from helpers.configs.experiments import TABLE1
    from helpers.run.steps import Options
    from helpers.run.train import run

    return {name: run(name, smoke_data, "smoke", 0, options=Options(verbose=0)) for name in TABLE1}


def run_side(script: Path, out: Path, *args, env: dict, name: str, cwd=None) -> dict:
    """Run one side of a cross-process comparison (`python SCRIPT ... OUT.npz ...`) and return its npz as a dict;
    an AssertionError with the end of its stderr if it failed."""
    import subprocess

    done = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=cwd)
    if done.returncode != 0:
        raise AssertionError(f"the {name} side failed:\n{done.stderr[-4000:]}")
    return dict(np.load(out))
