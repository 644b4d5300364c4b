"""Wall time and peak memory of the whole notebook pipeline in the smoke profile, on a small synthetic set.

Runs `python -m helpers.pipeline --profile smoke --data <synthetic.npz> --out <temp>` as a child process
(with `MARS_DATA_DIR` in the temp folder too, so nothing touches the repository's data/ or reports/). The
data set has the size the test suite uses (300 training, 48 test images); generating it is not timed. The
peak memory is the child's `wait4` maxrss, which covers the notebook kernels it started and waited for.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers import synthetic

SIZE = {"n_train": 300, "n_test": 48, "seed": 3}


def _wait(process: subprocess.Popen, timeout: float):
    """(exit code, peak RSS in MiB of the child and its waited-for descendants); kills it after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage.ru_maxrss / 1024
        if time.monotonic() > deadline:
            process.kill()
        time.sleep(0.5)


def smoke_pipeline_seconds(timeout: float = 900) -> dict:
    """{"seconds", "returncode", "peak_memory_mb", "tail", "data"} of one smoke pipeline run."""
    with tempfile.TemporaryDirectory(prefix="mars-bench-") as folder:
        folder = Path(folder)
        data = folder / "data" / "smoke_mars.npz"
        synthetic.write(data, **SIZE)
        env = {**os.environ, "MARS_DATA_DIR": str(folder / "data"), "MARS_REPORTS": str(folder / "reports"),
               "MARS_KAGGLE_INPUT": str(folder / "no-kaggle-input"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        command = [sys.executable, "-m", "helpers.pipeline", "--profile", "smoke", "--data", str(data),
                   "--out", str(folder / "reports")]
        log = folder / "pipeline.log"
        with log.open("w") as output:
            started = time.perf_counter()
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
            returncode, peak = _wait(process, timeout)
            seconds = time.perf_counter() - started
        tail = log.read_text().strip().splitlines()[-3:]
    return {"seconds": seconds, "returncode": returncode, "peak_memory_mb": peak, "tail": tail, "data": SIZE}
