"""Data-parallel training is the same training: one step on 2 logical CPU devices (MirroredStrategy) gives the
one-device loss and weights, and two MultiWorkerMirroredStrategy workers on localhost (TF_CONFIG) train a
smoke row to the same final weights."""
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

ONE_STEP = """
import json, sys
import numpy as np
from helpers.runtime import device
devices = int(sys.argv[1])
if devices > 1:
    device.split_cpu(devices)
import keras, tensorflow as tf
from helpers.configs.experiments import FINAL_MIX
from helpers.model.losses import combined_loss
from helpers.model.models import build_model
from helpers.model.optim import schedule_lengths
strategy = device.strategy()
assert strategy.num_replicas_in_sync == devices, strategy
rng = np.random.default_rng(0)
x = rng.random((8, 64, 128, 1), dtype=np.float32)
y = rng.integers(0, 5, (8, 64, 128)).astype(np.int32)
y[:2, :40] = 0  # replicas see different numbers of scored (non-background) pixels
w = np.where(y == 4, 3.0, 1.0).astype(np.float32)
keras.utils.set_random_seed(0)
with strategy.scope():
    model = build_model("dual_unet", kind="global_local", fusion="concat", channels=["edges", "wavelet"],
                        width=0.125, norm=sys.argv[3] if len(sys.argv) > 3 else "batch")
    loss = combined_loss(json.loads(sys.argv[4]) if len(sys.argv) > 4 else FINAL_MIX, ignore_class=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss,  # Adam's first step is ±lr for any tiny gradient
                  jit_compile=False)  # XLA fails under MirroredStrategy (helpers.runtime.device turns it off there)
initial = [v.numpy().tolist() for v in model.weights]
history = model.fit(tf.data.Dataset.from_tensor_slices((x, y, w)).batch(8), epochs=1, verbose=0)
weights = [v.numpy().tolist() for v in model.weights]
print(json.dumps({"loss": history.history["loss"][0], "initial": initial, "weights": weights}))
"""


def _run(code: str, *args, env=None, timeout=300):
    completed = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                               timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _max_difference(a, b):
    import numpy as np

    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(a, b))


@pytest.mark.parametrize("norm, tolerance", [("group", 1e-3), ("batch", 1e-2)])
def test_one_step_on_two_replicas_equals_one_device(norm, tolerance):
    """Every loss term reduces to the one-device value: the two weight updates differ by float rounding only,
    measured relative to the update itself (a sum over 65k pixels split two ways differs in its last bits,
    and SGD scales that by the learning rate). GroupNorm stays within 1e-3 of the step; synchronized
    BatchNorm is Keras's, which computes the variance as E[x^2] - E[x]^2 in float32 and drifts more. Per-replica
    loss normalization or BatchNorm statistics would differ by a sizeable part of the step."""
    one, two = _run(ONE_STEP, "1", "plain", norm), _run(ONE_STEP, "2", "plain", norm)
    assert one["initial"] == two["initial"]  # same seed, same start: the difference is the update's
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    step = _max_difference(one["weights"], one["initial"])
    assert step > 0
    assert _max_difference(one["weights"], two["weights"]) < tolerance * step


WORKER = """
import json, os, sys
os.environ["TF_CONFIG"] = sys.argv[1]
from helpers.runtime.device import strategy

import keras, numpy as np, tensorflow as tf
from helpers.data.loading import load_mars
from helpers.run import train
from helpers.run.steps import Options
chosen = strategy()
assert isinstance(chosen, tf.distribute.MultiWorkerMirroredStrategy), chosen
data = load_mars(sys.argv[2], sys.argv[3])
from helpers.configs.profiles import get_profile
profile = {**get_profile("smoke"), "name": "smoke-graph", "run_eagerly": False}  # collectives need graphs
record = train.run("Network 1", data, profile, 0, options=Options(verbose=0))
model = keras.models.load_model(os.path.join(str(train.plan("Network 1", data, profile, 0).folder), "best.keras"))
print(json.dumps({"replicas": chosen.num_replicas_in_sync, "weights": [v.numpy().tolist() for v in model.weights],
                  "task": json.loads(sys.argv[1])["task"]["index"]}))
"""


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_on_localhost_agree_on_the_final_weights(smoke_data, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MARS_REPORTS": str(tmp_path / f"worker{index}")}
        processes.append(subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WORKER), config, smoke_data.source.path,
             smoke_data.source.labels_path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    results = []
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, "\n".join(line for line in err.splitlines()[-60:] if len(line) < 300)
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["replicas"] for r in results] == [2, 2]
    assert _max_difference(results[0]["weights"], results[1]["weights"]) == 0.0
