"""The projected time of a row's training against the measured one: `python -m benchmarks.projection_check [ROW ...]`.

For each row, side by side in one run: `helpers.run.projection`'s figure for training it (one worker on every core,
as on a machine where the pipeline uses one worker) and the wall time of the same training in a fresh process
(`python -m helpers.run.train ROW`, a temporary reports folder), with their ratio. Run it on an idle machine. To
approximate the AVX2-only class on a newer CPU: `ONEDNN_MAX_CPU_ISA=AVX2 XLA_FLAGS=--xla_cpu_max_isa=AVX2`
(float32, one worker). Writes `reports/projection_check.json`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers.configs.profiles import resolve
from helpers.data.loading import load_mars
from helpers.run.projection import project
from helpers.runtime.paths import REPO_ROOT, reports_dir


def measure(name: str, data_path: str, profile: str) -> dict:
    """Wall seconds of `python -m helpers.run.train NAME` in a fresh process, and the record's own seconds."""
    with tempfile.TemporaryDirectory(prefix="mars-projection-") as folder:
        started = time.perf_counter()
        completed = subprocess.run([sys.executable, "-m", "helpers.run.train", name, "--profile", profile, "--data",
                                    data_path], env={**os.environ, "MARS_REPORTS": folder}, cwd=str(REPO_ROOT),
                                   capture_output=True, text=True)
        wall = time.perf_counter() - started
        if completed.returncode:
            raise SystemExit(f"error: training {name} failed: {completed.stderr.strip().splitlines()[-1:]}")
        (record_path,) = list((Path(folder) / "runs").glob("*/record.json"))
        record = json.loads(record_path.read_text())
    return {"wall_seconds": wall, "train_seconds": record["training"]["seconds"],
            "eval_seconds": record.get("eval_seconds"), "device": record.get("device_name")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.projection_check", description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="*", default=["Baseline", "Network 6"])
    parser.add_argument("--profile", default="default")
    args = parser.parse_args(argv)
    profile = resolve(args.profile)  # the command line's profile, checked once
    data = load_mars()
    results = []
    for name in args.rows:
        projected = project([name], 1, profile, data, workers=1, force=True)
        measured = measure(name, data.source.path, args.profile)
        results.append({"row": name, "projected_seconds": projected["seconds"], **measured,
                        "ratio_measured_to_projected": measured["wall_seconds"] / projected["seconds"],
                        "probe": {k: projected[k] for k in ("images_per_second", "startup_seconds",
                                                             "mixed_precision", "jit_compile")}})
        print(f"{name}: projected {projected['seconds']:.0f} s, measured {measured['wall_seconds']:.0f} s wall "
              f"({measured['train_seconds']:.0f} s training), measured/projected "
              f"{results[-1]['ratio_measured_to_projected']:.2f}", flush=True)
    out = reports_dir() / "projection_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"results": results, "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
                               "xla_flags": os.environ.get("XLA_FLAGS")}, indent=1))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
