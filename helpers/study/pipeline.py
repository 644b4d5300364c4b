"""The papermill pipeline: run the numbered notebooks headless, in order, then write Table 1.

    python -m helpers.study.pipeline [--profile smoke|default|full] [--data PATH] [--labels PATH] [--seeds N]
                               [--only 03 ...] [--out DIR] [--force] [--workers N]

Executed copies go to `<out>/executed/`; records, figures, the submission and Table 1 to `<out>/`
(default `reports/`); a full run also leaves its wall time in `<out>/bench_pipeline.json`. Injected parameters are checked against each notebook's `parameters` cell
(`papermill.inspect_notebook`) and unknown names refused, so an override can never silently do nothing.
If a notebook fails, the pipeline says which one and which cell, keeps every record already written (a
rerun reuses them) and exits non-zero. `make table1` is this with the default profile on the default data.

With `workers` > 1 (default: one per CPU core on a machine without GPUs, one per GPU otherwise) every run is
trained first by that many `python -m helpers.run.train --all` processes, one core (or GPU) each, sharing the runs
through their claims (`helpers.run.claims`); the notebooks then reuse the records. Where one-core workers train in
bfloat16 (`helpers.run.backend_choice.default_workers`), they train more images per second than one process on every core
(docs/performance.md).
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import contextlib
from contextlib import contextmanager
from pathlib import Path

from helpers.runtime.paths import REPO_ROOT, reports_dir
from helpers.study.notebook import PARAMETERS, ParameterError, typed_parameters

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
KERNEL_NAME = "python3"  # the running interpreter's own kernel (ipykernel's native spec)
PROJECT_KERNEL = "mars-study"  # what the stored notebooks ask for; `make setup` registers it inside .venv


class PipelineError(RuntimeError):
    """A notebook that failed or cannot be run; the message is one line."""


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in order, optionally only those whose number or name starts with `only`."""
    found = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not only:
        return found
    chosen = [nb for nb in found if any(nb.name.startswith(prefix) for prefix in only)]
    unknown = [p for p in only if not any(nb.name.startswith(p) for nb in found)]
    if unknown:
        raise PipelineError(f"--only {' '.join(unknown)} matches no notebook; choose from "
                            f"{', '.join(nb.stem for nb in found)}")
    return chosen


def check_parameters(notebook: Path, parameters: dict) -> None:
    """Refuse parameters the notebook's `parameters` cell does not define."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    if not declared:
        raise PipelineError(f"{notebook.name} has no cell tagged 'parameters': tag one in JupyterLab")
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise PipelineError(f"{notebook.name} does not declare parameter(s) {', '.join(unknown)} "
                            f"(it declares {', '.join(sorted(declared))})")


def execute(notebook: Path, output: Path, parameters: dict, verbose: bool = False) -> float:
    """Run one notebook with papermill; return seconds; raise PipelineError naming the failing cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    check_parameters(notebook, parameters)
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=KERNEL_NAME,
                                   cwd=str(NOTEBOOKS_DIR), progress_bar=False, log_output=False,
                                   extra_arguments=[] if verbose else ["--IPKernelApp.log_level=CRITICAL"])
    except PapermillExecutionError as exc:
        raise PipelineError(f"{notebook.name} failed in cell {exc.cell_index} (execution count "
                            f"{exc.exec_count}): {exc.ename}: {exc.evalue.splitlines()[0] if exc.evalue else ''} "
                            f"— see {output}") from None
    return time.perf_counter() - started


@contextmanager
def _environment(updates: dict):
    """Set environment variables (inherited by the notebooks' kernels) for the block, then restore them."""
    saved = {key: os.environ.get(key) for key in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def announced(runs: list[str], seeds: int) -> set[tuple[str, int]]:
    """The (name, seed) the progress lines will count: every run of `runs` × seeds, and the ensemble members
    and teachers trained under other seeds (`helpers.configs.experiments.trainings`)."""
    from helpers.configs.experiments import trainings

    return {(name, seed) for seed in range(seeds) for name in runs} | {
        (name, seed) for name, seed, _ in trainings(runs, seeds)}


def pretrain(workers: int, *, profile: str, data: str, labels: str | None, seeds: int, force: bool,
             log: Path, only: list[str] | None = None) -> float:
    """Train every run the notebooks show (`only`: those of these notebooks) with `workers` processes of
    `helpers.run.train --all`; seconds taken. Their own output goes to `log` (the progress lines reach the terminal
    through the progress log)."""
    import subprocess

    command = [sys.executable, "-m", "helpers.run.train", "--all", "--workers", str(workers), "--profile", profile,
               "--seeds", str(seeds), "--data", data, *(["--labels", labels] if labels else []),
               *(["--force"] if force else []), *(["--notebooks", *only] if only else [])]
    started = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT))
    if code:
        tail = [line for line in log.read_text().splitlines() if line.strip()][-1:]
        raise PipelineError(f"training workers failed (exit {code}): {tail[0] if tail else 'no output'} — see {log}; "
                            "finished runs are kept and a rerun reuses them")
    return time.perf_counter() - started


def _projection(runs: list[str], seeds: int, profile: dict, dataset, workers: int, force: bool,
                speed: dict | None = None) -> dict | None:
    """Print the run's projected training time on this machine (`helpers.run.projection`) in `profile` (resolved);
    None if the probe failed, which is said and does not stop the run."""
    from helpers.run.projection import describe, project

    print("projecting the run's time (a short speed probe) ...", flush=True)
    try:
        projection = project(runs, seeds, profile, dataset, workers, force, speed)
    except RuntimeError as exc:
        print(f"projected time: not available ({exc})", flush=True)
        return None
    print(describe(projection, workers), flush=True)
    return projection


@contextmanager
def _echo(path: Path, poll_seconds: float = 1.0):
    """Print the lines the notebooks' kernels append to `path` (helpers.run.progress) while the block runs."""
    stop = threading.Event()

    def follow():
        with path.open() as handle:
            while True:
                line = handle.readline()
                if line:
                    print(line.rstrip("\n"), flush=True)
                elif stop.is_set():
                    return
                else:
                    time.sleep(poll_seconds)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def run_pipeline(*, profile: str = "default", data: str | None = None, labels: str | None = None,
                 seeds: int = 1, only: list[str] | None = None, out: str | None = None, force: bool = False,
                 verbose: bool = False, workers: int | None = None, backend: str | None = None) -> dict:
    """Train every run with `workers` processes (whole runs only; see the module docstring), run the notebooks,
    then write Table 1; return {"notebooks": {name: seconds}, "table": paths, "workers": ...}."""
    from helpers.data.loading import load_mars
    from helpers.study.table import write_table

    started = time.perf_counter()
    # Everything is checked before anything is written: a refused command leaves the reports folder as it was.
    try:
        typed = typed_parameters({"PROFILE": profile, "SEEDS": seeds, "FORCE": force, "DATA_PATH": data,
                                  "LABELS_PATH": labels, "REPORTS_DIR": out})
    except ParameterError as exc:
        raise PipelineError(str(exc)) from None
    settings, seeds, force = typed["PROFILE"], typed["SEEDS"], typed["FORCE"]  # the profile checked once, here
    profile = settings["name"]
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise PipelineError(f"--workers must be a whole number of at least 1, got {workers!r}")
    chosen = notebooks(only)
    out_dir = Path(out).expanduser().resolve() if out else reports_dir()
    if out_dir.exists() and not out_dir.is_dir():
        raise PipelineError(f"--out {out} is a file, not a folder: pass a folder (it is created if missing)")
    dataset = load_mars(data, labels)  # validates the file (or makes the synthetic default) once, up front
    from helpers import held_stderr
    from helpers.run import backend_choice

    with contextlib.nullcontext() if verbose else held_stderr():  # the probes' CUDA lines on CPU machines
        choice = backend_choice.choose(profile, out_dir, backend)
    os.environ["KERAS_BACKEND"] = choice["backend"]  # before Keras is imported here; the workers and kernels inherit it
    # --out reaches this process's own lookups (records, the projection's finished runs), the training workers and
    # the kernels through MARS_REPORTS, for this call only: the caller's value comes back afterwards.
    with _environment({"MARS_REPORTS": str(out_dir)} if out else {}):
        executed_dir = out_dir / "executed"
        executed_dir.mkdir(parents=True, exist_ok=True)
        print(f"data: {dataset.source.label()}; profile {profile}; seeds {seeds}; outputs in {out_dir}", flush=True)
        print(backend_choice.describe(choice), flush=True)
        parameters = {"DATA_PATH": dataset.source.path, "LABELS_PATH": dataset.source.labels_path,
                      "PROFILE": profile, "SEEDS": seeds, "REPORTS_DIR": str(out_dir), "FORCE": force}
        if set(parameters) != set(PARAMETERS):  # the notebooks declare helpers.study.notebook.PARAMETERS, exactly
            raise PipelineError(f"the pipeline passes {sorted(parameters)}, the notebooks declare "
                                f"{sorted(PARAMETERS)}")
        timings, training_seconds = {}, None
        from helpers.configs.experiments import notebook_runs

        runs = notebook_runs([nb.stem for nb in chosen] if only else None)
        if workers is None and choice.get("workers"):
            workers = choice["workers"]  # the layout the probe found fastest
        if workers is None:
            with contextlib.nullcontext() if verbose else held_stderr():  # CUDA probing lines (cuInit on CPU machines)
                workers = backend_choice.default_workers()
        with contextlib.nullcontext() if verbose else held_stderr():
            probed = choice.get("probe")  # the chosen layout's probe, if just taken
            projection = _projection(runs, seeds, settings, dataset, workers, force,
                                     probed if probed and probed["workers"] == workers else None)
        log = out_dir / "progress.log"
        log.write_text("")
        kernels_env = {"MARS_PROGRESS_LOG": str(log), "MARS_PROGRESS_STARTED": str(time.time()),
                       "MARS_PROGRESS_TOTAL": str(len(announced(runs, seeds))),
                       "MARS_PROGRESS_WORKERS": str(workers)}
        if not verbose:
            kernels_env["TF_CPP_MIN_LOG_LEVEL"] = "3"  # the kernels' C++ start-up noise (cuInit on CPU machines...)
        with _environment(kernels_env), _echo(log):
            if workers > 1:
                print(f"training every run with {workers} workers (their output: {out_dir / 'workers.log'}) ...",
                      flush=True)
                training_seconds = pretrain(workers, profile=profile, data=dataset.source.path,
                                            labels=dataset.source.labels_path, seeds=seeds, force=force,
                                            log=out_dir / "workers.log",
                                            only=[nb.stem for nb in chosen] if only else None)
                print(f"  every run trained in {training_seconds / 60:.0f} min; the notebooks reuse them", flush=True)
                parameters["FORCE"] = False  # the workers just retrained what --force asked for
            for notebook in chosen:
                print(f"running {notebook.name} (elapsed {(time.perf_counter() - started) / 60:.0f} min) ...",
                      flush=True)
                timings[notebook.stem] = execute(notebook, executed_dir / notebook.name, parameters, verbose=verbose)
                print(f"  {notebook.stem} done in {timings[notebook.stem]:.0f} s", flush=True)
        table = write_table(profile=profile, fingerprint=dataset.source.fingerprint, seeds=seeds, out_dir=out_dir)
        print(f"Table 1: {table['md']}", flush=True)
        if not only:
            from helpers.runtime.device import describe_device
            from helpers.runtime.files import write_json_atomic

            write_json_atomic(out_dir / "bench_pipeline.json", {
                "profile": profile, "seeds": seeds, "data": dataset.source.label(), "device": describe_device(),
                "workers": workers, "projected_training_seconds": projection and projection["seconds"],
                "training_workers_seconds": training_seconds, "notebook_seconds": timings,
                "total_seconds": time.perf_counter() - started,
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        return {"notebooks": timings, "table": table, "workers": workers, "projection": projection}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.study.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", help="smoke, default (default) or full")
    parser.add_argument("--data", help="competition-layout npz (default: load_mars search order)")
    parser.add_argument("--labels", help="hidden test labels npz (default: beside the data file, if any)")
    parser.add_argument("--seeds", type=int, default=1, help="train every row with seeds 0..N-1")
    parser.add_argument("--only", nargs="+", help="run only these notebooks (e.g. 01 03)")
    parser.add_argument("--out", help="output folder (default: reports/)")
    parser.add_argument("--force", action="store_true", help="retrain even where a finished record exists")
    parser.add_argument("--verbose", action="store_true", help="keep TensorFlow's and the kernels' log lines")
    parser.add_argument("--workers", type=int,
                        help="training processes side by side before the notebooks (default: the layout the backend "
                             "probe found fastest, else one per GPU, or per core where bfloat16 or JAX pays; 1: none)")
    parser.add_argument("--backend", choices=("tensorflow", "jax"),
                        help="Keras backend (default: KERAS_BACKEND, else the faster one here by a speed probe; "
                             "helpers.run.backend_choice)")
    parser.add_argument("--reuse-stale", action="store_true",
                        help="reuse records trained by older code of helpers/ (Table 1 marks them)")
    args = parser.parse_args(argv)
    if args.reuse_stale:
        os.environ["MARS_REUSE_STALE"] = "1"  # read by helpers.run.train.run in every notebook's kernel
    try:
        result = run_pipeline(profile=args.profile, data=args.data, labels=args.labels, seeds=args.seeds,
                              only=args.only, out=args.out, force=args.force, verbose=args.verbose,
                              workers=args.workers, backend=args.backend)
    except (PipelineError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, PipelineError) else 2
    print(result["table"]["md"].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
