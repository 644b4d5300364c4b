"""Which backend Keras runs (TensorFlow or JAX), and the few operations that differ between the two.

Every other module that decides numbers (layers, models, losses, metrics, optimizers, callbacks, inference) is
written with `keras.ops` and runs on both; what cannot be is here. TensorFlow is imported only inside these
functions and only when Keras runs on it, so under `KERAS_BACKEND=jax` nothing here imports it. The backend
is Keras's own choice, fixed when Keras is first imported (`KERAS_BACKEND`, or `~/.keras/keras.json`).

On TensorFlow each function does exactly what the modules did before they became backend-neutral
(`tf.add_n`, `tf.name_scope`, `tf.distribute` replica sums, `tf.function`), so TensorFlow's numbers are unchanged.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import re
import sys
from functools import reduce

import keras

from helpers.configs.constants import BACKENDS


def name() -> str:
    """The backend Keras runs, "tensorflow" or "jax"; a one-line ValueError for any other."""
    backend = keras.backend.backend()
    if backend not in BACKENDS:
        raise ValueError(f"Keras runs the {backend!r} backend; this project runs on {' or '.join(BACKENDS)}: "
                         f"set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax before Keras is imported.")
    return backend


def is_tensorflow() -> bool:
    """Whether Keras runs on TensorFlow."""
    return name() == "tensorflow"


def stateless_steps() -> bool:
    """Whether compiled train/test steps take the model's state as arguments and bake any other value they
    read at trace time (JAX): a value changed outside the model's variables, such as a `CombinedLoss` term
    weight, then needs the step traced again. TensorFlow's steps read such variables at every call."""
    return name() == "jax"


def _tf():
    import tensorflow as tf

    return tf


def replicas_in_sync() -> int:
    """Devices the `tf.distribute` strategy in scope mirrors over; 1 on JAX, also under `data_parallel()`: a
    `keras.distribution` shards one program over the devices, so losses and BatchNorm already see the global
    batch and no loss is divided by the device count (tests/test_distribution_jax.py); Keras's synchronized
    BatchNormalization, which more than 1 would ask for, exists only on TensorFlow."""
    return _tf().distribute.get_strategy().num_replicas_in_sync if is_tensorflow() else 1


def replica_sum(value):
    """`value` summed over the replicas of a `tf.distribute` replica context with several replicas;
    `value` itself with one replica, outside a replica context and on JAX (whose `keras.distribution` program
    already sums over the global batch)."""
    if not is_tensorflow():
        return value
    tf = _tf()
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        return context.all_reduce(tf.distribute.ReduceOp.SUM, value)
    return value


def data_parallel():
    """A `keras.distribution.DataParallel` over every device JAX computes on (its GPUs or TPU cores, else its host
    CPU devices) when Keras runs on JAX and sees more than one; None with one device, and on TensorFlow, which
    scales with `tf.distribute` (`helpers.runtime.device.strategy`). Under it one jitted program runs on the global batch,
    split along its first axis over a 1-D mesh, with every variable replicated: the step's numbers are the
    one-device numbers up to summation order. The batch must divide by the device count."""
    if is_tensorflow():
        return None
    devices = keras.distribution.list_devices()
    return keras.distribution.DataParallel(devices=devices) if len(devices) > 1 else None


def name_scope(scope: str):
    """TensorFlow's `tf.name_scope` (names the graph ops of a loss); nothing on JAX."""
    return _tf().name_scope(scope) if is_tensorflow() else contextlib.nullcontext()


def add_n(tensors):
    """Elementwise sum of same-shaped tensors: `tf.add_n` on TensorFlow (its summation, as before), left to
    right with `keras.ops.add` on JAX."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("add_n needs at least one tensor")
    if is_tensorflow():
        return _tf().add_n(tensors)
    return reduce(keras.ops.add, tensors)


def float64_scope():
    """A block where float64 and int64 exist: JAX turns 64-bit types off by default (a float64 request silently
    gives float32) and this turns them on for the ops traced inside; TensorFlow always has them. Cast results
    back to 32 bits before leaving the block."""
    if is_tensorflow():
        return contextlib.nullcontext()
    import jax

    return jax.enable_x64(True)


def compile_function(function, jit_compile: bool, variables=()):
    """`function` compiled for repeated calls on tensors of one shape: `tf.function` (XLA if `jit_compile`,
    retracing reduced) on TensorFlow, which reads variables at every call; `jax.jit` on JAX whatever
    `jit_compile` says (XLA is JAX's only compiler, and op-by-op dispatch is far slower there), with the
    current values of `variables` (those `function` reads, e.g. a model's) passed in at every call, since a
    jitted function would bake them in when first traced and miss later training or `load_weights`."""
    if is_tensorflow():
        return _tf().function(function, jit_compile=jit_compile, reduce_retracing=True)
    import jax

    variables = list(variables)

    def pure(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return function(*args)

    jitted = jax.jit(pure)
    return lambda *args: jitted([variable.value for variable in variables], *args)


def _tf_devices() -> dict:
    tf = _tf()
    from tensorflow.python.framework.config import is_op_determinism_enabled  # what Keras itself consults

    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append({"name": details.get("device_name", gpu.name),
                     "compute_capability": tuple(details.get("compute_capability") or (0, 0))})
    logical = tf.config.get_logical_device_configuration(tf.config.list_physical_devices("CPU")[0])
    return {"gpus": gpus, "tpu_cores": len(tf.config.list_physical_devices("TPU")),
            "cpu_devices": len(logical) if logical else 1, "op_determinism": bool(is_op_determinism_enabled())}


def _capability(device) -> tuple[int, int]:
    numbers = re.findall(r"\d+", str(getattr(device, "compute_capability", "") or ""))
    return (int(numbers[0]), int(numbers[1])) if len(numbers) >= 2 else (0, 0)


def _jax_devices() -> dict:
    import jax

    devices = jax.devices()
    gpus = [{"name": device.device_kind, "compute_capability": _capability(device)}
            for device in devices if device.platform == "gpu"]
    tpu_cores = sum(device.platform == "tpu" for device in devices)
    return {"gpus": gpus, "tpu_cores": tpu_cores, "cpu_devices": len(jax.devices("cpu")), "op_determinism": False}


def devices() -> dict:
    """What the backend sees, read without starting TensorFlow's runtime: {"gpus": [{"name",
    "compute_capability"}], "tpu_cores", "cpu_devices" (logical CPU devices: TensorFlow's after
    `helpers.runtime.device.split_cpu`, JAX's host devices), "op_determinism" (TensorFlow's op determinism; JAX has none
    to switch on)}."""
    return _tf_devices() if is_tensorflow() else _jax_devices()


class _RefuseTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"{name} is not imported under Keras's JAX backend")
        return None


def set_random_seed(seed: int) -> None:
    """`keras.utils.set_random_seed`: Python's, NumPy's and Keras's seeds (and TensorFlow's on TensorFlow). On JAX
    it runs with TensorFlow refused for the call, since Keras imports TensorFlow to seed it wherever it is installed
    (for tf.data pipelines, which JAX runs here do not use); Keras then records TensorFlow as absent."""
    if is_tensorflow() or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    refuse = _RefuseTensorFlow()
    sys.meta_path.insert(0, refuse)
    try:
        keras.utils.set_random_seed(seed)
    finally:
        sys.meta_path.remove(refuse)
