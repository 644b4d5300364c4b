"""The Kaggle kernel bundle: metadata, the embedded package, the compatibility probe, and a headless run."""
import ast
import base64
import hashlib
import io
import json
import zipfile
from pathlib import Path

import keras
import nbformat
import numpy as np
import pytest

from helpers.kaggle.bundle import (COMPETITION, SUMMARY_FILENAME, KernelError, bundle, compatibility_problems,
                                   execute_kernel, fake_kaggle_input, find_competition_file, main)
from helpers.predict.submission import read_submission, score_submission
from helpers.runtime.paths import REPO_ROOT

REPO_PACKAGE = REPO_ROOT / "helpers"


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    return bundle(tmp_path_factory.mktemp("dist") / "kaggle", profile="default", seed=2, user="jane-doe")


def _code_cells(notebook_path):
    return [cell for cell in nbformat.read(notebook_path, as_version=4).cells if cell.cell_type == "code"]


def _repo_package_files() -> dict[str, bytes]:
    """Every module of the package at any depth and every asset file, walked here independently of the bundle."""
    files = [p for p in REPO_PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts
             and (p.suffix == ".py" or p.parent.name == "assets")]
    return {p.relative_to(REPO_PACKAGE).as_posix(): p.read_bytes() for p in files}


def test_metadata_names_the_competition_and_the_kernel_file(bundled):
    metadata = json.loads(bundled["metadata"].read_text())
    assert metadata == {
        "id": "jane-doe/mars-terrain-final-model", "title": "Mars Terrain Final Model",
        "code_file": "mars-terrain-final-model.ipynb", "language": "python", "kernel_type": "notebook",
        "is_private": True, "enable_gpu": True, "machine_shape": "NvidiaTeslaT4", "docker_image_pinning_type": "latest",
        "enable_internet": False, "competition_sources": ["an-2-dl-2024-2025-homework-2"], "dataset_sources": [],
        "kernel_sources": []}
    assert bundled["notebook"] == bundled["metadata"].parent / metadata["code_file"]
    assert metadata["id"].split("/")[1] == metadata["title"].lower().replace(" ", "-")  # Kaggle's slug rule


def test_notebook_has_one_parameters_cell_and_imports_neither_papermill_nor_seaborn(bundled):
    import papermill

    declared = papermill.inspect_notebook(str(bundled["notebook"]))
    assert set(declared) == {"PROFILE", "SEED", "INPUT_DIR", "OUTPUT_DIR", "TIME_BUDGET_S", "MODEL", "MEMBERS", "TTA",
                             "SELF_TRAINING"}
    assert declared["MODEL"]["default"] == '"final"' and declared["MEMBERS"]["default"] == "None"
    assert declared["PROFILE"]["default"] == '"default"' and declared["SEED"]["default"] == "2"
    assert declared["TIME_BUDGET_S"]["default"] == str(11 * 3600)  # an hour under Kaggle's 12-hour limit
    cells = _code_cells(bundled["notebook"])
    assert sum("parameters" in cell.metadata.get("tags", []) for cell in cells) == 1
    assert all(not cell.outputs and cell.execution_count is None for cell in cells)
    imported = set()
    for cell in cells:
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module.split(".")[0])
    assert "helpers" in imported and not imported & {"papermill", "seaborn", "pip", "subprocess"}


def test_embedded_archive_is_the_whole_package_byte_for_byte(bundled):
    namespace = {}
    archive_cell = next(cell for cell in _code_cells(bundled["notebook"]) if "HELPERS_ZIP_BASE64 =" in cell.source)
    exec(archive_cell.source, namespace)
    archive = base64.b64decode(namespace["HELPERS_ZIP_BASE64"])
    assert hashlib.sha256(archive).hexdigest() == namespace["HELPERS_ZIP_SHA256"]
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        embedded = {name.removeprefix("helpers/"): zipped.read(name) for name in zipped.namelist()}
    assert embedded == _repo_package_files()
    assert {"__init__.py", "run/train.py", "predict/submission.py", "kaggle/bundle.py", "kaggle/__main__.py",
            "data/assets/alien_mask.npy"} <= set(embedded)


def test_command_line_sets_the_user_and_refuses_bad_arguments(tmp_path, capsys):
    assert main(["bundle", "--out", str(tmp_path), "--user", "alice", "--profile", "smoke"]) == 0
    assert json.loads((tmp_path / "kernel-metadata.json").read_text())["id"] == "alice/mars-terrain-final-model"
    assert "kaggle kernels push -p" in capsys.readouterr().out
    for bad in (["--user", "alice/bob"], ["--user", "two words"], ["--profile", "fast"], ["--seed", "-1"]):
        assert main(["bundle", "--out", str(tmp_path / "bad"), *bad]) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: ") and error.count("\n") == 1
    assert not (tmp_path / "bad").exists()


def test_compatibility_probe_names_what_an_older_keras_lacks(monkeypatch):
    assert compatibility_problems() == []
    assert compatibility_problems(uses_augmentation=True) == []

    def keras_3_3_loss_init(self, name=None, reduction="sum_over_batch_size"):  # Loss before Keras 3.4
        self.name, self.reduction = name, reduction

    monkeypatch.setattr(keras.losses.Loss, "__init__", keras_3_3_loss_init)
    [problem] = compatibility_problems()
    assert "dtype" in problem and "3.4" in problem
    monkeypatch.undo()
    monkeypatch.delattr(keras.layers, "Pipeline")
    assert compatibility_problems() == []
    [problem] = compatibility_problems(uses_augmentation=True)
    assert "Pipeline" in problem


def test_competition_file_is_found_anywhere_below_the_input_folder(tmp_path):
    with pytest.raises(KernelError, match="does not exist"):
        find_competition_file(tmp_path / "missing")
    with pytest.raises(KernelError, match=COMPETITION):
        find_competition_file(tmp_path)
    nested = tmp_path / "competitions" / COMPETITION / "mars_for_students.npz"
    nested.parent.mkdir(parents=True)
    nested.write_bytes(b"")
    assert find_competition_file(tmp_path) == nested


@pytest.mark.slow
def test_bundled_kernel_runs_headless_on_a_fake_kaggle_input(bundled, tmp_path, monkeypatch):
    """The notebook, run by a fresh `python3` kernel in smoke profile, trains and leaves a valid submission,
    even when its time budget (here a millisecond) stops training after the first batch.

    The kernel runs in the output folder with no MARS_* or PYTHONPATH variables; the repository's editable
    install stays visible to its interpreter, so the embedded copy must win on its own.
    """
    input_dir, output_dir = tmp_path / "kaggle" / "input", tmp_path / "kaggle" / "working"
    data_path, labels_path = fake_kaggle_input(input_dir)
    for name in ("MARS_DATA", "MARS_DATA_DIR", "MARS_REPORTS", "MARS_KAGGLE_INPUT", "PYTHONPATH"):
        monkeypatch.delenv(name, raising=False)
    execute_kernel(bundled["notebook"], input_dir, output_dir, tmp_path / "executed.ipynb", PROFILE="smoke", SEED=0,
                   TIME_BUDGET_S=0.001)

    summary = json.loads((output_dir / SUMMARY_FILENAME).read_text())
    embedded = (output_dir / "mars_helpers" / "helpers").resolve()
    assert Path(summary["helpers_file"]).resolve() == embedded / "__init__.py"
    assert {"helpers.run.train", "helpers.predict.submission", "helpers.kaggle"} <= set(summary["helpers_modules"])
    assert all(Path(path).resolve().is_relative_to(embedded) for path in summary["helpers_modules"].values())
    assert {name: (embedded / name).read_bytes() for name in _repo_package_files()} == _repo_package_files()
    assert summary["profile"] == "smoke" and Path(summary["data"]["path"]) == data_path.resolve()
    assert summary["time_budget"] == {"seconds": 0.001, "stopped": True, "stopped_after_epoch": 1}
    printed = "".join(output.get("text", "") for cell in nbformat.read(tmp_path / "executed.ipynb", as_version=4).cells
                      for output in cell.get("outputs", []))
    assert "strategy: the default strategy over 1 replica(s)" in printed and "time budget of 0.001 s reached" in printed
    assert list((output_dir / "mars_data" / "splits").glob("*.json"))

    ids, masks = read_submission(output_dir / "submission.csv", n_images=48)
    assert summary["submission_rows"] == 48 and ids.tolist() == list(range(48))
    run_folder = output_dir / "runs" / f"final-model__{summary['run_key']}"
    np.testing.assert_array_equal(masks, np.load(run_folder / "test_set_predictions.npz")["y_pred"])
    scored = score_submission(output_dir / "submission.csv", labels_path)
    assert scored["n_images"] == 48 and 0.0 <= scored["competition_miou"] <= 1.0
    # The record scores the profile's leaderboard subset (the first n_predicted images), the same for every row.
    from helpers.data.hidden_labels import load_test_labels
    from helpers.predict.leaderboard import score_parts

    in_kernel = summary["leaderboard"]["all"]
    subset = score_parts(load_test_labels(labels_path), masks[:summary["leaderboard"]["n_predicted"]])["all"]
    assert subset["competition_miou"] == pytest.approx(in_kernel["competition_miou"])
    assert subset["confusion_matrix"] == in_kernel["confusion_matrix"]


def test_improved_kernel_runs_headless_and_submits_the_ensemble(tmp_path, monkeypatch):
    """`bundle --model improved` in the smoke profile, on a fake Kaggle input: the self-trained soft vote of its
    members writes a valid submission that never predicts class 0."""
    from helpers.kaggle.bundle import bundle

    paths = bundle(tmp_path / "dist", profile="smoke", model="improved")
    assert paths["notebook"].name == "mars-terrain-improved-model.ipynb"
    input_dir, output_dir = tmp_path / "kaggle" / "input", tmp_path / "kaggle" / "working"
    fake_kaggle_input(input_dir)
    for name in ("MARS_DATA", "MARS_DATA_DIR", "MARS_REPORTS", "MARS_KAGGLE_INPUT", "PYTHONPATH"):
        monkeypatch.delenv(name, raising=False)
    execute_kernel(paths["notebook"], input_dir, output_dir, tmp_path / "executed.ipynb", PROFILE="smoke")
    summary = json.loads((output_dir / SUMMARY_FILENAME).read_text())
    ids, masks = read_submission(output_dir / "submission.csv", n_images=48)
    assert summary["submission_rows"] == 48 and masks.min() >= 1  # argmax over classes 1-4
    record = json.loads(next((output_dir / "runs").glob(f"improved__{summary['run_key']}/record.json")).read_text())
    assert record["role"] == "predictor" and len(record["members"]) == 2
    student = json.loads(next((output_dir / "runs").glob(f"improved__{record['members'][0]['key']}/record.json"))
                         .read_text())
    assert student["prepared"]["self_training"]["teacher"] == "Improved (f) ensemble"


def test_kernel_options_map_to_entries_and_refuse_what_the_final_model_lacks():
    from helpers.kaggle.bundle import KernelError, kernel_run

    assert kernel_run("final") == ("Final Model", None)
    assert kernel_run("improved") == ("Improved", None)
    assert kernel_run("improved", members=3, tta=False) == ("Improved", {"inference": {"members": 3, "tta": False}})
    assert kernel_run("improved", self_training=False) == ("Improved (f) ensemble", None)
    with pytest.raises(KernelError, match="--model improved"):
        kernel_run("final", members=3)
    with pytest.raises(KernelError, match="positive number"):
        kernel_run("improved", members=0)
