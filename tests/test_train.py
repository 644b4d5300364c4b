"""helpers.run.train / records / table: every Table 1 row in the smoke profile, reuse, resume, CSV, the table."""
import json
import re
import shutil

import keras
import numpy as np
import pytest

from conftest import run_module
from helpers.configs.experiments import IMPROVED, TABLE1
from helpers.configs.profiles import get_profile
from helpers.data import synthetic
from helpers.data.hidden_labels import load_test_labels
from helpers.predict.leaderboard import score_parts
from helpers.predict.submission import read_submission
from helpers.run import train
from helpers.run.records import all_records, code_fingerprint, run_dir, run_key
from helpers.run.steps import Options
from helpers.runtime.paths import PACKAGE_DIR
from helpers.study.table import MISSING, ROWS, write_table

pytestmark = pytest.mark.slow


def test_every_table1_entry_trains_and_is_recorded(smoke_records, smoke_data):
    assert list(smoke_records) == TABLE1
    for name, record in smoke_records.items():
        assert record["status"] == "finished" and record["name"] == name
        assert (run_dir(name, record["key"]) / "record.json").exists()
        assert (run_dir(name, record["key"]) / "best.keras").exists()
        assert record["data"]["kind"] == "synthetic"
        for key in ("competition_miou", "miou_1_4"):
            assert 0.0 <= record["test"][key] <= 1.0
        assert np.asarray(record["test"]["confusion_matrix"]).sum() == 8 * 64 * 128  # smoke: 8 test-split images
        board = record["leaderboard"]
        assert board["n_predicted"] >= 16 and board["public"]["n_images"] + board["private"]["n_images"] == board["n_predicted"]
        epochs = round(record["settings"]["train"]["epochs_scale"])  # smoke: 1 epoch, Network 10 trains twice as long
        assert record["training"]["epochs_run"] == epochs and len(record["history"]["loss"]) == epochs
    assert smoke_records["Network 9"]["history"].get("w_dice"), "dynamic weights are logged per epoch"
    assert smoke_records["Final Model"]["prepared"]["used"]["train_after_blending"] > 24  # blending expanded it


def test_alien_removal_changes_the_split(smoke_records):
    all_sizes = smoke_records["Baseline"]["prepared"]["split_sizes"]
    clean_sizes = smoke_records["Network 1"]["prepared"]["split_sizes"]
    assert sum(all_sizes.values()) - sum(clean_sizes.values()) == synthetic.alien_count(300) >= 10


def test_finished_runs_are_reused(smoke_records, smoke_data, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(train, "build_model", no_training)
    again = train.run("Network 3", smoke_data, "smoke", 0)
    assert again == smoke_records["Network 3"]


def test_key_depends_on_everything_that_changes_a_run():
    settings, profile = {"a": 1}, get_profile("smoke")
    base = run_key(settings, profile, 0, "f" * 16, "1")
    assert len({base, run_key({"a": 2}, profile, 0, "f" * 16, "1"), run_key(settings, get_profile("default"), 0, "f" * 16, "1"),
                run_key(settings, profile, 1, "f" * 16, "1"), run_key(settings, profile, 0, "e" * 16, "1"),
                run_key(settings, profile, 0, "f" * 16, "2")}) == 6


def test_code_fingerprint_changes_with_numeric_code_only(tmp_path):
    package = tmp_path / "helpers"
    shutil.copytree(PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_fingerprint(package) == code_fingerprint()
    plots = package / "study" / "plots.py"
    plots.write_text(plots.read_text() + "\nEXTRA = 1\n")
    assert code_fingerprint(package) == code_fingerprint(), "reporting code does not invalidate records"
    losses = package / "model" / "losses.py"
    losses.write_text(losses.read_text().replace('"""', '"""Reworded. ', 1) + "\n# a comment\n")
    assert code_fingerprint(package) == code_fingerprint(), "docstrings and comments do not count"
    losses.write_text(losses.read_text() + "\nEXTRA = 1\n")
    assert code_fingerprint(package) != code_fingerprint(), "a loss edit invalidates records"


class Interrupt(keras.callbacks.Callback):
    """Raises once, at the start of the given epoch: a stand-in for a killed process."""

    fired = False

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch and not Interrupt.fired:
            Interrupt.fired = True
            raise KeyboardInterrupt("simulated interruption")


def test_interrupted_run_resumes_from_its_last_epoch(smoke_data, smoke_records):
    profile = {**get_profile("smoke"), "name": "smoke-3-epochs", "epochs": 3, "patience": 3}
    before = {p: p.read_text() for p in sorted(run_dir("x", "y").parent.glob("*/record.json"))}
    Interrupt.fired = False
    with pytest.raises(train.RunInterrupted, match=r"interrupted after 2 of 3 epochs; the same command resumes "
                                                   r"from epoch 3"):
        train.run("Network 1", smoke_data, profile, 0, options=Options(verbose=0, callbacks=[Interrupt(2)]))
    folder = train.plan("Network 1", smoke_data, profile, 0).folder
    assert not (folder / "record.json").exists() and (folder / train.STAGING / "backup").exists()
    assert {p: p.read_text() for p in before} == before, "records already written are kept"
    first_part = json.loads((folder / train.STAGING / train.PARTS).read_text())
    assert [part["from_epoch"] for part in first_part] == [0]
    record = train.run("Network 1", smoke_data, profile, 0, options=Options(verbose=0, callbacks=[Interrupt(2)]))
    assert record["training"]["epochs_run"] == 3
    assert record["history"]["epoch"] == [0.0, 1.0, 2.0]
    assert not (folder / "backup").exists() and not (folder / train.STAGING).exists()
    parts = record["training"]["parts"]
    assert record["training"]["resumed"] is True and [part["from_epoch"] for part in parts] == [0, 2]
    assert parts[0]["seconds"] >= first_part[0]["seconds"] > 0
    assert record["training"]["seconds"] == pytest.approx(sum(part["seconds"] for part in parts))
    assert json.loads((folder / "record.json").read_text())["training"]["resumed"] is True
    assert smoke_records["Network 1"]["training"]["resumed"] is False


def test_an_interrupted_force_run_keeps_the_finished_result(smoke_data, smoke_records, monkeypatch):
    folder = run_dir("Baseline", smoke_records["Baseline"]["key"])
    kept = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".claim"}
    assert {"record.json", "best.keras", "test_split_predictions.npz", "history.csv"} <= set(kept)
    Interrupt.fired = False
    with pytest.raises(KeyboardInterrupt):
        train.run("Baseline", smoke_data, "smoke", 0,
                  options=Options(verbose=0, force=True, callbacks=[Interrupt(0)]))
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == kept, "the old result is intact"
    assert train.run("Baseline", smoke_data, "smoke", 0, options=Options(verbose=0)) == smoke_records["Baseline"]

    def evaluation_killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "score_models", evaluation_killed)  # killed after training, while predicting
    with pytest.raises(KeyboardInterrupt):
        train.run("Baseline", smoke_data, "smoke", 0, options=Options(verbose=0, force=True))
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == kept, "the old result is intact"
    monkeypatch.undo()
    again = train.run("Baseline", smoke_data, "smoke", 0, options=Options(verbose=0, force=True))
    assert again["finished_epoch"] > smoke_records["Baseline"]["finished_epoch"]
    assert json.loads((folder / "record.json").read_text())["finished_epoch"] == again["finished_epoch"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(kept), "replaced file by file, no staging left"


def test_other_labels_rescore_the_leaderboard_instead_of_reusing_it(smoke_data, smoke_records, tmp_path,
                                                                    monkeypatch):
    from helpers.data.loading import load_mars

    def no_training(*args, **kwargs):
        raise AssertionError("only the leaderboard is scored again, nothing is retrained")

    monkeypatch.setattr(train, "build_model", no_training)
    labels = load_test_labels(smoke_data.source.labels_path)
    other = tmp_path / "other_labels.npz"
    np.savez(other, test_masks=(labels["test_masks"] + 1) % 5, public_ids=labels["public_ids"],
             private_ids=labels["private_ids"])
    right = smoke_records["Network 2"]["leaderboard"]
    wrong = train.run("Network 2", load_mars(smoke_data.source.path, other), "smoke", 0, options=Options(verbose=0))
    assert wrong["leaderboard"]["private"]["competition_miou"] != right["private"]["competition_miou"]
    assert wrong["data"]["labels_path"] == str(other.resolve()) and wrong["key"] == smoke_records["Network 2"]["key"]
    back = train.run("Network 2", smoke_data, "smoke", 0, options=Options(verbose=0))  # the same command without --labels
    for part in ("public", "private"):
        assert back["leaderboard"][part]["competition_miou"] == pytest.approx(right[part]["competition_miou"])
    assert back["data"]["labels_fingerprint"] == smoke_data.source.labels_fingerprint


def test_train_cli_refuses_options_its_mode_ignores_and_ctrl_c_is_one_line(smoke_data, monkeypatch, capsys):
    for argv, fragment in ((["Baseline", "--seeds", "3"], "--seeds goes with --all; for one run of NAME pass --seed"),
                           (["Baseline", "--workers", "2"], "--workers goes with --all"),
                           (["--all", "--seed", "1"], "--seed goes with one experiment NAME"),
                           (["--all", "--workers", "0"], "--workers and --seeds must be at least 1"),
                           (["--all", "--seeds", "0"], "--workers and --seeds must be at least 1")):
        with pytest.raises(SystemExit) as caught:
            train.main(argv)
        assert caught.value.code == 2 and fragment in capsys.readouterr().err
    message = "Network 1 (seed 0) interrupted after 2 of 3 epochs; the same command resumes from epoch 3"

    def interrupted(*args, **kwargs):
        raise train.RunInterrupted(message)

    monkeypatch.setattr(train, "run", interrupted)
    assert train.main(["Network 1", "--profile", "smoke", "--data", smoke_data.source.path]) == 130
    assert capsys.readouterr().err == f"interrupted: {message}\n"


def test_malformed_records_do_not_crash_training(smoke_data, isolated_dirs, capfd):
    from helpers.run.records import runs_dir

    for index, text in enumerate(("null", "[]", '{"status": "finished", "name": "Baseline"}')):
        (runs_dir() / f"bad{index}").mkdir(parents=True)
        (runs_dir() / f"bad{index}" / "record.json").write_text(text)
    assert train.stale_record(train.plan("Baseline", smoke_data, get_profile("smoke"), 0), smoke_data) is None
    assert len([line for line in capfd.readouterr().err.splitlines() if line.startswith("warning: ignoring")]) == 3


def test_submission_csv_scores_as_the_record_says(smoke_records, smoke_data):
    record = smoke_records["Final Model"]
    csv = run_dir("Final Model", record["key"]) / "submission.csv"
    ids, masks = read_submission(csv, n_images=len(smoke_data.test_images))
    assert ids.tolist() == list(range(len(smoke_data.test_images)))
    labels = load_test_labels(smoke_data.source.labels_path)
    whole = score_parts(labels, masks)
    limit = record["profile"]["test_set_limit"]
    assert limit < len(masks) and record["leaderboard"]["n_predicted"] == limit
    with np.load(run_dir("Final Model", record["key"]) / "test_split_predictions.npz") as saved:
        assert saved["y_pred_foreground"].min() >= 1
    subset = score_parts(labels, masks[:limit])
    for part in ("public", "private"):
        result = run_module("helpers.predict.submission", "score", str(csv), "--labels", smoke_data.source.labels_path,
                            "--part", part)
        assert result.returncode == 0, result.stderr
        printed = float(re.search(r"competition_miou: ([0-9.]+)", result.stdout).group(1))
        assert printed == pytest.approx(whole[part]["competition_miou"], abs=1e-6)
        # Table 1 scores every row on the same first `test_set_limit` images, the Final Model included.
        assert record["leaderboard"][part]["competition_miou"] == pytest.approx(subset[part]["competition_miou"])
        assert record["leaderboard"][part]["n_images"] == subset[part]["n_images"]


def test_the_row_s_own_run_writes_its_submission_whoever_trains_it_first(smoke_data, isolated_dirs):
    """A predictor's first member is the row's own run (same key): trained there first (the workers take the
    longest work first, so "Final Model + flip TTA" can reach it before the row does), it still writes the
    submitted row's test-set predictions and CSV, which notebook 05 and the Kaggle kernel read."""
    predictor = train.run("Final Model + flip TTA", smoke_data, "smoke", 0, options=Options(verbose=0))
    (member,) = predictor["members"]
    folder = run_dir("Final Model", member["key"])
    assert (folder / "test_set_predictions.npz").exists() and (folder / "submission.csv").exists()
    row = train.run("Final Model", smoke_data, "smoke", 0, options=Options(verbose=0))
    assert row["key"] == member["key"] and row["role"] == "row"
    read_submission(folder / "submission.csv", n_images=len(smoke_data.test_images))


def test_table_renders_from_records_alone(smoke_records, tmp_path):
    runs = tmp_path / "runs"
    for name, record in smoke_records.items():
        (runs / name.replace(" ", "_")).mkdir(parents=True)
        (runs / name.replace(" ", "_") / "record.json").write_text(json.dumps(record))
    records = all_records(runs)
    paths = write_table(profile="smoke", records=records, out_dir=tmp_path)
    text = paths["md"].read_text()
    assert "synthetic" in text
    for name, record in smoke_records.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert f"| {100 * record['test']['competition_miou']:.2f} |" in row and MISSING not in row
    improved = [line for line in text.splitlines() if "(beyond the report) |" in line]
    assert len(improved) == len(IMPROVED) and all(MISSING in line for line in improved)  # not trained here
    assert paths["png"].stat().st_size > 0 and paths["csv"].read_text().count("\n") == 1 + len(ROWS)

    # A missing record shows as missing; a second seed turns the cell into mean ± std.
    shutil.rmtree(runs / "Network_4")
    second = json.loads(json.dumps(smoke_records["Baseline"]))
    second["seed"], second["test"]["competition_miou"] = 1, smoke_records["Baseline"]["test"]["competition_miou"] + 0.1
    (runs / "Baseline_seed1").mkdir()
    (runs / "Baseline_seed1" / "record.json").write_text(json.dumps(second))
    text = write_table(profile="smoke", records=all_records(runs), out_dir=tmp_path)["md"].read_text()
    network4 = next(line for line in text.splitlines() if line.startswith("| Network 4 |"))
    assert network4.count(MISSING) == 8  # five scores, images seen, training time and epochs
    values = 100 * np.array([smoke_records["Baseline"]["test"]["competition_miou"], second["test"]["competition_miou"]])
    baseline = next(line for line in text.splitlines() if line.startswith("| Baseline |"))
    assert f"{values.mean():.2f} ± {values.std(ddof=1):.2f}" in baseline
    one_seed = write_table(profile="smoke", records=all_records(runs), out_dir=tmp_path, seeds=1)["md"].read_text()
    assert "±" not in next(line for line in one_seed.splitlines() if line.startswith("| Baseline |"))


def test_train_cli_runs_a_row_by_name(smoke_data, smoke_records):
    result = run_module("helpers.run.train", "Network 2", "--profile", "smoke", "--data", smoke_data.source.path)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout[result.stdout.index("{"):])
    assert printed["test"]["competition_miou"] == pytest.approx(smoke_records["Network 2"]["test"]["competition_miou"])
    bad = run_module("helpers.run.train", "Network 11", "--profile", "smoke", "--data", smoke_data.source.path)
    assert bad.returncode == 2 and "unknown experiment" in bad.stderr


def test_two_workers_fill_one_store_without_duplicates(smoke_data, tmp_path):
    """Two `--all` processes started at once on one reports folder: every run trained exactly once."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MARS_REPORTS": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "helpers.run.train", "--all", "--profile", "smoke", "--data", smoke_data.source.path,
               "--labels", smoke_data.source.labels_path]
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [worker.communicate(timeout=1200) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    trained = [line.split("] ", 1)[1] for out, _ in outputs for line in out.splitlines() if line.endswith(": trained")]
    names = [f"{name} (seed 0): trained" for name in train.experiments.names(include_ablations=True)]
    assert sorted(trained) == sorted(names), "each run trained once, by one of the two workers"
    assert all(": trained" in out for out, _ in outputs), "both workers took a share"
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == len(names) + 4  # members: (d) and the Final Model at seed 1000, Improved's two students
    for folder in folders:
        assert (folder / "record.json").exists() and not (folder / ".claim").exists()
        assert not (folder / "backup").exists()
