"""Wall time of the whole notebook pipeline in the smoke profile, on a small synthetic data set, in a temp folder.

Runs `python -m helpers.pipeline --profile smoke --data <synthetic.npz> --out <temp>` as a child process
(with `MARS_DATA_DIR` in the temp folder too, so nothing touches the repository's data/ or reports/). The
data set has the size the test suite uses (300 training, 48 test images); generating it is not timed.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers import synthetic

SIZE = {"n_train": 300, "n_test": 48, "seed": 3}


def smoke_pipeline_seconds(timeout: float = 900) -> dict:
    """{"seconds", "returncode", "tail"}: the smoke pipeline's wall time, exit status and last output lines."""
    with tempfile.TemporaryDirectory(prefix="mars-bench-") as folder:
        folder = Path(folder)
        data = folder / "data" / "smoke_mars.npz"
        synthetic.write(data, **SIZE)
        env = {**os.environ, "MARS_DATA_DIR": str(folder / "data"), "MARS_REPORTS": str(folder / "reports"),
               "MARS_KAGGLE_INPUT": str(folder / "no-kaggle-input"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        command = [sys.executable, "-m", "helpers.pipeline", "--profile", "smoke", "--data", str(data),
                   "--out", str(folder / "reports")]
        started = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
        seconds = time.perf_counter() - started
    tail = (completed.stdout + completed.stderr).strip().splitlines()[-3:]
    return {"seconds": seconds, "returncode": completed.returncode, "tail": tail, "data": SIZE}
