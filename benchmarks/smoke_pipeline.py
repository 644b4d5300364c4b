"""Wall time and peak memory of the whole notebook pipeline in the smoke profile, on a small synthetic set.

Runs `python -m helpers.study.pipeline --profile smoke --data <synthetic.npz> --out <temp>` as a child process
(with `MARS_DATA_DIR` in the temp folder too, so nothing touches the repository's data/ or reports/). The
data set has the size the test suite uses (300 training, 48 test images); generating it is not timed.

Peak memory: a child's maxrss starts from its parent's at fork time (Linux carries it over `exec`), so the
pipeline is started by a small Python launcher whose `RUSAGE_CHILDREN` maxrss then covers the pipeline and
the notebook kernels it waited for, and nothing of this (large) benchmark process.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers.data import synthetic

SIZE = {"n_train": 300, "n_test": 48, "seed": 3}


_LAUNCHER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
             "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
             "sys.exit(code)")


def smoke_pipeline_seconds(timeout: float = 900) -> dict:
    """{"seconds", "returncode", "peak_memory_mb", "tail", "data"} of one smoke pipeline run."""
    with tempfile.TemporaryDirectory(prefix="mars-bench-") as folder:
        folder = Path(folder)
        data = folder / "data" / "smoke_mars.npz"
        synthetic.write(data, **SIZE)
        env = {**os.environ, "MARS_DATA_DIR": str(folder / "data"), "MARS_REPORTS": str(folder / "reports"),
               "MARS_KAGGLE_INPUT": str(folder / "no-kaggle-input"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        peak_file = folder / "peak_kib.txt"
        command = [sys.executable, "-c", _LAUNCHER, str(peak_file), sys.executable, "-m", "helpers.study.pipeline",
                   "--profile", "smoke", "--data", str(data), "--out", str(folder / "reports")]
        started = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
        seconds = time.perf_counter() - started
        peak = int(peak_file.read_text()) / 1024 if peak_file.exists() else float("nan")
    tail = (completed.stdout + completed.stderr).strip().splitlines()[-3:]
    return {"seconds": seconds, "returncode": completed.returncode, "peak_memory_mb": peak, "tail": tail,
            "data": SIZE}
