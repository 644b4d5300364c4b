"""The notebook series and the papermill pipeline (smoke profile on a small synthetic set)."""
import ast
import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.configs import experiments
from helpers.predict.submission import read_submission
from helpers.run import backend_choice
from helpers.run.records import all_records
from helpers.study import pipeline
from helpers.study.notebook import PARAMETERS, start
from helpers.study.pipeline import NOTEBOOKS_DIR, PipelineError, check_parameters, run_pipeline

EXPECTED = ["01_eda_and_aliens", "02_feature_channels", "03_loss_design", "04_optimizers", "05_final_training",
            "06_beyond_the_report"]


def test_notebooks_are_numbered_clean_and_parameterised():
    import papermill

    assert [nb.stem for nb in pipeline.notebooks()] == EXPECTED
    for path in pipeline.notebooks():
        raw = json.loads(path.read_text())  # nbformat.read would fill in missing cell ids, with a warning each run
        assert all("id" in cell for cell in raw["cells"]), f"{path.name} has cells without an id"
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} stored with outputs"
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        declared = papermill.inspect_notebook(str(path))
        assert set(declared) == set(PARAMETERS), path.name
        assert {name: ast.literal_eval(p["default"]) for name, p in declared.items()} == PARAMETERS, f"{path.name}: defaults"
        assert "start(" in "".join(c.source for c in code) and "**parameters(globals())" in "".join(c.source for c in code)
        assert nb.metadata["kernelspec"]["name"] == pipeline.PROJECT_KERNEL, "JupyterLab would ask for a kernel"
        assert not any("def " in c.source or "class " in c.source for c in code), f"{path.name} defines code: use helpers/"


@pytest.mark.skipif(not (Path(sys.prefix) / ".installed").exists(), reason="runs in the .venv `make setup` built")
def test_make_setup_registers_the_kernel_the_notebooks_ask_for():
    """The kernel the stored notebooks ask for (checked above) is installed, and starts this very environment's
    Python: what `make setup` did, not a string in the Makefile (`make test` builds the .venv first)."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(pipeline.PROJECT_KERNEL)
    assert Path(spec.argv[0]).parent.parent.resolve() == Path(sys.prefix).resolve(), spec.argv
    assert spec.argv[spec.argv.index("-m") + 1] == "ipykernel_launcher"


def test_unknown_parameters_and_notebooks_are_refused():
    with pytest.raises(ValueError, match=r"unknown notebook parameter\(s\) SEED:"):
        start("01_eda_and_aliens", SEED=3)
    with pytest.raises(PipelineError, match="does not declare parameter"):
        check_parameters(NOTEBOOKS_DIR / f"{EXPECTED[0]}.ipynb", {"PROFILE": "smoke", "IM_SIZE": 64})
    with pytest.raises(PipelineError, match="matches no notebook"):
        pipeline.notebooks(["07"])


NOISE = re.compile(r"cuInit|cuda_platform|IPKernelApp|without encryption|retracing|setuptools|^E0000|^W0000|Traceback")


@pytest.mark.slow
def test_whole_pipeline_in_the_smoke_profile(smoke_data, smoke_records, monkeypatch, capfd):
    from helpers.runtime.paths import reports_dir

    out = reports_dir()
    monkeypatch.setenv("MARS_REPORTS", str(out))
    result = run_pipeline(profile="smoke", data=smoke_data.source.path)
    printed = "\n".join(capfd.readouterr())  # the kernels write to this process's file descriptors too
    noisy = [line for line in printed.splitlines() if NOISE.search(line)]
    assert not noisy, f"noise in the pipeline's output: {noisy[:5]}"
    total = len(pipeline.announced(experiments.notebook_runs(), 1))  # every run, plus members under seeds 1000+
    assert f"[{total}/{total}] " in printed and re.search(r"\[\d+/\d+\] .+ \(seed 0\): (training|reused)", printed)
    assert "ETA" in printed and "epoch 1/1" in printed
    # The projection's walk (helpers.configs.experiments.trainings) names exactly the models the run then trained.
    assert "projected training time on this machine: ≈ " in printed
    trained = set(re.findall(r"^\[\d+/\d+\] (.+) \(seed (\d+)\): training", printed, re.M))
    assert trained and {(name, str(seed)) for name, seed in result["projection"]["jobs"]} == trained
    assert list(result["notebooks"]) == EXPECTED
    assert result["workers"] == backend_choice.default_workers()
    if result["workers"] > 1:  # every run went through the training workers, each of which saw every run
        workers_log = (out / "workers.log").read_text()
        assert len(set(re.findall(r"^\[worker (\d+)\] ", workers_log, re.M))) == result["workers"], workers_log[-500:]
        assert re.search(r"^\[worker \d+\] Network 9 / fixed weights \(seed 0\): (trained|reused)$", workers_log, re.M)
    for name in EXPECTED:
        executed = nbformat.read(out / "executed" / f"{name}.ipynb", as_version=4)
        assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
        stored = (out / "executed" / f"{name}.ipynb").read_text()
        assert not re.search(r"cuInit|cuda_platform|IPKernelApp|without encryption|retracing", stored), name
        assert list((out / "figures" / name).glob("*.png")), f"{name} saved no figure"
        assert json.loads((out / "results" / f"{name}.json").read_text())["profile"] == "smoke"
    table = result["table"]["md"].read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| Model")]
    assert len(rows) == 20 and "missing" not in table and "synthetic" in table  # 12 rows + the Improved track's 8
    assert rows[12].startswith("| Improved (0) clean, Final's schedule (beyond the report) |")
    assert rows[13].startswith("| Improved (a) focal, no background (beyond the report) |")
    ids, _ = read_submission(out / "submission.csv", n_images=len(smoke_data.test_images))
    assert len(ids) == len(smoke_data.test_images)
    names = {r["name"] for r in all_records()}
    assert {"Network 1 + threshold", "Network 5 / sgd", "Network 8 / gated", "Network 9 + low-pass"} <= names


@pytest.mark.slow
def test_a_failing_notebook_is_named_and_records_are_kept(tmp_path, monkeypatch, smoke_data):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("\n".join(f"{name} = None" for name in sorted(PARAMETERS)),
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from helpers.runtime.files import write_json_atomic\n"
                                  "from helpers.runtime.paths import reports_dir\n"
                                  "write_json_atomic(reports_dir() / 'runs' / 'kept' / 'record.json', {'status': 'finished'})"),
        nbformat.v4.new_code_cell("raise RuntimeError('boom')"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, folder / "01_broken.ipynb")
    monkeypatch.setattr(pipeline, "NOTEBOOKS_DIR", folder)
    out = tmp_path / "reports"
    monkeypatch.setenv("MARS_REPORTS", str(out))
    params = {"PROFILE": "smoke"}
    with pytest.raises(PipelineError, match=r"01_broken.ipynb failed in cell \d+ .*RuntimeError: boom"):
        pipeline.execute(folder / "01_broken.ipynb", out / "executed.ipynb", params)
    assert (out / "runs" / "kept" / "record.json").exists()
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("MARS_REPORTS", str(elsewhere))  # --out wins for the run, then the caller's value comes back
    assert pipeline.main(["--profile", "smoke", "--data", smoke_data.source.path, "--out", str(out), "--workers", "1"]) == 1
    assert os.environ["MARS_REPORTS"] == str(elsewhere) and not elsewhere.exists()  # the kernel wrote into out


def test_failing_training_workers_stop_the_pipeline_with_one_line(tmp_path, competition_file):
    with pytest.raises(PipelineError, match=r"training workers failed \(exit 2\): error: unknown profile 'nope'.*"
                                            r"a rerun reuses them") as caught:
        pipeline.pretrain(2, profile="nope", data=str(competition_file), labels=None, seeds=1, force=False,
                          log=tmp_path / "workers.log")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("args, fragment", [
    (["--only", "9"], "--only 9 matches no notebook"), (["--seeds", "0"], "SEEDS=0 is not a positive whole number"),
    (["--profile", "nope"], "PROFILE='nope' is not a profile"), (["--workers", "0"], "--workers must be"),
    (["--out", "FILE"], "is a file, not a folder"),
])
def test_a_refused_pipeline_command_changes_nothing_on_disk(tmp_path, competition_file, capsys, args, fragment):
    out = tmp_path / "reports"
    (out / "executed").mkdir(parents=True)
    (out / "progress.log").write_text("[3/40] Network 2 (seed 0): training\n")  # a running make table1's log
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    args = [str(out / "progress.log") if a == "FILE" else a for a in args]
    command = ["--data", str(competition_file), *([] if "--out" in args else ["--out", str(out)]), *args]
    assert pipeline.main(command) in (1, 2)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and fragment in err, err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(out.rglob("*")) == sorted([out / "executed", out / "progress.log"])


@pytest.mark.parametrize("params, fragment", [
    ({"SEEDS": "abc"}, "SEEDS='abc' is not a positive whole number"), ({"SEEDS": True}, "SEEDS=True"),
    ({"PROFILE": {"epochs": 1}}, "PROFILE={'epochs': 1} is not a profile: pass one of"),
    ({"FORCE": "maybe"}, "FORCE='maybe' is not true or false"), ({"DATA_PATH": 3}, "DATA_PATH=3 is not a path"),
])
def test_start_refuses_wrongly_typed_parameters_in_one_line(params, fragment):
    from helpers.study.notebook import ParameterError

    with pytest.raises(ParameterError) as caught:
        start("01_eda_and_aliens", **params)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value._render_traceback_() == [f"ParameterError: {caught.value}"]  # what JupyterLab/papermill show


def test_papermill_strings_are_parsed_never_taken_as_truthy():
    from helpers.study.notebook import typed_parameters

    for text, value in (("false", False), ("False", False), ("no", False), ("0", False), ("true", True), ("1", True)):
        assert typed_parameters({"FORCE": text})["FORCE"] is value
    assert typed_parameters({"SEEDS": "3"})["SEEDS"] == 3


def test_force_false_from_papermill_is_false_in_the_context(competition_file, isolated_dirs):
    """`-p FORCE false` reaches `start` as the string "false": the context must not retrain."""
    context = start("01_eda_and_aliens", DATA_PATH=str(competition_file), PROFILE="smoke", FORCE="false")
    assert context.force is False and context.seeds == 1
