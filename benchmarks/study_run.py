"""The study's runs without TensorFlow or notebooks, for a machine with Keras on JAX alone (a GPU machine whose
image has no TensorFlow): train every run of a profile, write Table 1 and a speed report.

    KERAS_BACKEND=jax python -m benchmarks.study_run [--profile default] [--seeds 1] [--notebooks 02 05]
                                                    [--data PATH] [--out DIR] [--workers N]

It trains what `make table1` trains (`helpers.run.train`'s `--all`, one worker per GPU by default) into `--out`
(default reports/study_run/), then writes `table1.md` there and `study_run.json` / `study_run.md`: the device, the
backend and versions, the wall time, and per run its images seen, training seconds and images per second. The
rate is a run's optimizer images over its whole `fit` (validation and XLA compilation included), so a short run
reads low. Without `KERAS_BACKEND` it picks JAX, since Keras's default backend is TensorFlow.

It needs Python, numpy, scikit-learn, OpenCV, matplotlib, JAX (any device) and Keras with its small pure
dependencies: `benchmarks/study_run_wheels.txt` lists what a machine with JAX but not Keras must bring.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

def run_rates(records: list[dict]) -> list[dict]:
    """Per trained run (ensemble predictors, which train nothing of their own, left out): images seen, seconds
    of training and images per second, in the order the runs finished."""
    rows = []
    for record in sorted(records, key=lambda r: r.get("finished_epoch", 0)):
        training = record.get("training", {})
        if record.get("role") == "predictor" or not training.get("images_seen"):
            continue
        rows.append({"name": record["name"], "seed": record["seed"], "images_seen": training["images_seen"],
                     "seconds": round(training["seconds"], 2),
                     "images_per_second": round(training["images_per_second"], 1)})
    return rows


def to_markdown(report: dict) -> str:
    lines = [f"# Study run: profile {report['profile']}, {report['seeds']} seed(s)", "",
             f"- Device: {report['device']}", f"- Keras backend: {report['versions']['backend']}; versions: "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if k != "backend"),
             f"- Data: {report['data']}", f"- Workers: {report['workers']}",
             f"- Wall time: {report['wall_seconds'] / 60:.1f} min (training {report['training_seconds'] / 60:.1f} min)",
             f"- Table 1: {report['table']}", "",
             "| Run | seed | images seen | training s | images/s |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['name']} | {r['seed']} | {r['images_seen']} | {r['seconds']:.1f} | {r['images_per_second']:.1f} |"
              for r in report["runs"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.study_run", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--notebooks", nargs="+", help="only the runs of these notebooks (e.g. 02 05)")
    parser.add_argument("--data", help="competition-layout npz (default: load_mars search order)")
    parser.add_argument("--out", default=None, help="outputs folder (default: reports/study_run)")
    parser.add_argument("--workers", type=int, help="training processes (default: one per GPU, else the "
                                                     "pipeline's CPU rule)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or (args.workers is not None and args.workers < 1):
        parser.error("--seeds and --workers must be at least 1")
    started = time.perf_counter()
    from helpers.runtime.paths import reports_dir

    out = Path(args.out or reports_dir() / "study_run").resolve()
    if out.is_file():
        parser.error(f"--out {out} is a file, not a folder")
    os.environ["MARS_REPORTS"] = str(out)  # the worker processes' reports folder (process boundary)
    from helpers.configs import experiments
    from helpers.configs.profiles import resolve
    from helpers.data.loading import load_mars
    from helpers.run import train
    from helpers.run.backend_choice import default_workers
    from helpers.run.records import all_records
    from helpers.runtime.device import describe_device
    from helpers.runtime.files import write_json_atomic
    from helpers.study.table import write_table

    try:
        resolve(args.profile)  # the command line's profile, checked once
        data = load_mars(args.data)
        experiments.notebook_runs(args.notebooks)  # an unknown notebook is refused before any training
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    workers = args.workers or default_workers()
    command = ["--all", "--profile", args.profile, "--seeds", str(args.seeds), "--workers", str(workers),
               "--data", data.source.path, *(["--notebooks", *args.notebooks] if args.notebooks else [])]
    if data.source.labels_path:
        command += ["--labels", data.source.labels_path]
    print(f"study run: {describe_device()}; Keras on {train.backend.name()}; {workers} worker(s); outputs in {out}",
          flush=True)
    training_started = time.perf_counter()
    code = train.main(command)
    training_seconds = time.perf_counter() - training_started
    if code:
        print(f"error: training stopped with exit code {code}; finished runs are kept in {out} and a rerun reuses them",
              file=sys.stderr)
        return code
    code_now = train.code_fingerprint()
    records = [r for r in all_records() if r.get("profile", {}).get("name") == args.profile
               and r.get("code") == code_now and r["data"]["fingerprint"] == data.source.fingerprint]
    table = write_table(profile=args.profile, fingerprint=data.source.fingerprint, seeds=args.seeds, out_dir=out,
                        records=records)
    report = {"profile": args.profile, "seeds": args.seeds, "notebooks": args.notebooks, "device": describe_device(),
              "versions": train._versions(), "data": data.source.label(), "workers": workers,
              "training_seconds": training_seconds, "wall_seconds": time.perf_counter() - started,
              "table": str(table["md"]), "runs": run_rates(records)}
    write_json_atomic(out / "study_run.json", report)
    (out / "study_run.md").write_text(to_markdown(report))
    print(f"study run done in {report['wall_seconds'] / 60:.1f} min: {out / 'study_run.md'}, {table['md']}", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")  # the process boundary: before anything imports Keras
    raise SystemExit(main())
