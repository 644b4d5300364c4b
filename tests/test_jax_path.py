"""The study on Keras + JAX alone: every process started with TensorFlow unimportable (tests/no_tensorflow on
PYTHONPATH, which also logs any attempt that some code might catch), as on the GPU machine, whose image has JAX
but no TensorFlow.

`benchmarks.study_run` trains notebook 06's runs in the smoke profile (the Baseline, blending in the Final Model's
split, TTA, soft-vote ensembles and the self-trained Improved row: the whole of `helpers.run.train`) with two workers,
writes Table 1 and its speed report; then one of its runs, retrained in a fresh process on one core as a worker, gives the same numbers
to the last bit (JAX's determinism, `helpers.runtime.determinism`).
"""
import json
import os
from pathlib import Path

import pytest

from conftest import run_module

NO_TENSORFLOW = Path(__file__).with_name("no_tensorflow")


def _jax_env(folder: Path) -> dict:
    return {"KERAS_BACKEND": "jax", "MARS_TF_ATTEMPTS": str(folder / "tensorflow_imports.log"),
            "PYTHONPATH": os.pathsep.join(p for p in (str(NO_TENSORFLOW), os.environ.get("PYTHONPATH")) if p)}


def _records(folder: Path) -> dict:
    return {(r["name"], r["seed"]): r for r in (json.loads(p.read_text()) for p in folder.glob("runs/*/record.json"))}


@pytest.mark.slow
def test_the_study_trains_scores_and_tables_on_jax_without_tensorflow(tmp_path, smoke_data):
    from helpers.configs.experiments import notebook_runs
    from helpers.run.records import code_fingerprint

    env, out = _jax_env(tmp_path), tmp_path / "study"
    done = run_module("benchmarks.study_run", "--profile", "smoke", "--notebooks", "06", "--workers", "2",
                      "--data", smoke_data.source.path, "--out", str(out), env=env, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    attempts = Path(env["MARS_TF_ATTEMPTS"])
    assert not attempts.exists(), f"TensorFlow was asked for: {attempts.read_text()[:1000]}"
    assert "os.fork() was called" not in done.stderr  # workers are started without code between fork and exec

    report = json.loads((out / "study_run.json").read_text())
    assert report["versions"]["backend"] == "jax" and "tensorflow" not in report["versions"]
    assert report["workers"] == 2 and report["wall_seconds"] > report["training_seconds"] > 0
    trained = {row["name"] for row in report["runs"]}
    assert {"Baseline", "Final Model", "Improved"} <= trained and all(r["images_per_second"] > 0 for r in report["runs"])
    table = (out / "table1.md").read_text()
    assert "Keras backend jax" in table and "missing" not in table.split("Improved (0)")[1]

    records = _records(out)
    assert set(notebook_runs(["06"])) <= {name for name, _ in records}
    jax_code = code_fingerprint(engine="jax")
    assert jax_code != code_fingerprint(engine="tensorflow")  # a JAX run never reuses a TensorFlow record
    assert {r["code"] for r in records.values()} == {jax_code}
    assert all(r["versions"]["backend"] == "jax" for r in records.values())

    again = tmp_path / "again"
    done = run_module("helpers.run.train", "Baseline", "--profile", "smoke", "--data", smoke_data.source.path,
                      "--cores", "0", env={**env, "MARS_REPORTS": str(again)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = records[("Baseline", 0)], _records(again)[("Baseline", 0)]
    assert second["key"] == first["key"]
    assert second["history"] == first["history"] and second["test"] == first["test"]
    assert second["leaderboard"] == first["leaderboard"]
