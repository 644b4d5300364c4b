"""Per-device speed settings (XLA, mixed precision, threads) and scaling past one device with `tf.distribute`.

Order of calls in a fresh process, before any model or tensor exists:

    split_cpu(2)            # optional, only to exercise multi-replica code on a CPU machine
    set_determinism(seed)   # optional (helpers.runtime.determinism): turns XLA off, one inter-op thread
    settings = device.configure()
    with device.strategy().scope():
        model = build_x(...)
        model.compile(..., jit_compile=settings["jit_compile"])

`configure` decides from the device and applies what TensorFlow lets a library apply globally
(mixed-precision policy, thread pools); XLA is a `compile()` argument in Keras, so the decision is
returned as `jit_compile` for the caller to pass on. Under "mixed_float16" Keras wraps the optimizer
in a `LossScaleOptimizer` by itself; keep the softmax head in float32 (`dtype="float32"`).

The device facts come from the backend Keras runs (`helpers.runtime.backend.devices`), so they read the same under JAX;
the thread pools, `split_cpu` and `strategy` are TensorFlow's and import it when called.
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings

import keras

from helpers.runtime import backend
from helpers.runtime import cpu
from helpers.runtime.cpu import (cpu_bfloat16_pays, nvidia_gpu_count, nvidia_gpu_present,  # noqa: F401 (this module's API)
                                 visible_cores)

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
MIN_MIXED_FLOAT16_CAPABILITY = (7, 0)  # tensor cores: Volta and later
MAX_INTER_OP_THREADS = 2


def cpu_class(facts: dict) -> str:
    """The CPU class the speed figures name: "AMX", "AVX512-BF16" or "AVX2 only" (float32), as oneDNN may use it."""
    return "AMX" if facts.get("cpu_amx_bf16") else "AVX512-BF16" if facts.get("cpu_avx512_bf16") else "AVX2 only"


def _replicas(found: dict) -> int:
    """How many devices `strategy()` will mirror over (read without initialising the runtime)."""
    workers = max(1, _tf_config_workers()) if backend.is_tensorflow() else 1
    if found["gpus"] or found["tpu_cores"]:
        return workers * max(len(found["gpus"]), found["tpu_cores"], 1)
    return workers * found["cpu_devices"]


def device_facts() -> dict:
    """What `configure` decides from: device type ("gpu", "tpu" or "cpu"), GPUs, cores, replicas, determinism."""
    found = backend.devices()
    gpus, tpu_cores = found["gpus"], found["tpu_cores"]
    device_type = "gpu" if gpus else "tpu" if tpu_cores else "cpu"
    return {**cpu.cpu_facts(backend.name()), "device_type": device_type, "gpus": gpus, "tpu_cores": tpu_cores,
            "replicas": _replicas(found), "op_determinism": found["op_determinism"]}


def _describe(facts: dict) -> str:
    cpu = f"{facts['cores']} cores, {facts['cpu_model']}"
    if facts["device_type"] == "gpu":
        names = {}
        for gpu in facts["gpus"]:
            key = (gpu["name"], gpu["compute_capability"])
            names[key] = names.get(key, 0) + 1
        gpus = ", ".join(f"{count} × {name} (compute capability {cc[0]}.{cc[1]})"
                         for (name, cc), count in names.items())
        return f"GPU: {gpus}; host CPU: {cpu}"
    if facts["device_type"] == "tpu":
        return f"TPU: {facts['tpu_cores']} cores; host CPU: {cpu}"
    return f"CPU: {cpu} ({cpu_class(facts)})"


def describe_device() -> str:
    """One line naming the accelerator(s) and host CPU, e.g. "CPU: 2 cores, AMD EPYC (AVX2 only)"."""
    return _describe(device_facts())


def _auto_policy(facts: dict) -> str:
    """The mixed-precision policy that speeds up the device: float16 on tensor-core GPUs, bfloat16 on TPUs
    and on CPUs where oneDNN's bfloat16 kernels pay (`cpu_bfloat16_pays`)."""
    if facts["device_type"] == "tpu" or cpu_bfloat16_pays(facts):
        return "mixed_bfloat16"
    capabilities = [gpu["compute_capability"] for gpu in facts["gpus"]]
    if facts["device_type"] == "gpu" and capabilities and min(capabilities) >= MIN_MIXED_FLOAT16_CAPABILITY:
        return "mixed_float16"
    return "float32"


def onednn_beats_xla(facts: dict) -> bool:
    """A one-core TensorFlow process on a CPU with oneDNN's kernels on: there they beat XLA's single-threaded
    code, in training (1.1-1.2x) and inference (1.07-1.27x), and skip its compile per model; on more cores
    XLA's code wins (docs/performance.md, 2026-12-05)."""
    return facts["device_type"] == "cpu" and bool(facts.get("onednn")) and facts["cores"] == 1


def choose_settings(facts: dict, *, xla="auto", mixed_precision="auto", threads="auto") -> dict:
    """Decide the settings for a device described by `facts` (see `device_facts`) without applying them.

    xla: "auto" | True | False. "auto" is on for one device, CPU included (Keras' own "auto" means
    off on CPU, yet XLA is faster for these UNets in float32 there, docs/performance.md), and off where
    Keras cannot or will not use it or where it does not pay: a multi-device strategy (XLA cannot reach
    variables on the other replicas; TPUStrategy compiles with XLA by itself), op determinism enabled,
    bfloat16 on a CPU (oneDNN's AMX kernels beat XLA's CPU code there), or a one-core TensorFlow process
    with oneDNN's kernels on (`facts["onednn"]`: they beat XLA's single-threaded code, 1.1-1.2x, and skip
    its 7-10 s compile per model; docs/performance.md).
    mixed_precision: "auto" ("mixed_float16" on GPUs of compute capability >= 7, "mixed_bfloat16" on
    TPUs and where `cpu_bfloat16_pays`, "float32" otherwise) | False (float32) | a policy name.
    threads: "auto" (intra-op = visible cores) | False (TensorFlow's defaults, untouched) | an int
    intra-op count. Inter-op is min(2, intra), or 1 under op determinism, which needs one inter-op
    thread for bit-identical CPU reruns (`helpers.runtime.determinism`).
    """
    if not (xla == "auto" or isinstance(xla, bool)):
        raise ValueError(f"xla={xla!r} is not understood; pass 'auto', True or False")
    if not (mixed_precision is False or (isinstance(mixed_precision, str) and mixed_precision in ("auto", *POLICIES))):
        raise ValueError(f"mixed_precision={mixed_precision!r} is not understood; "
                         f"pass 'auto', False or one of {POLICIES}")
    if not (threads == "auto" or threads is False or (type(threads) is int and threads >= 1)):
        raise ValueError(f"threads={threads!r} is not understood; pass 'auto', False or a positive int")

    device_type = facts["device_type"]
    xla_blocker = ("a multi-device strategy" if facts.get("replicas", 1) > 1 or device_type == "tpu"
                   else "op determinism" if facts.get("op_determinism") else None)
    if facts.get("backend", "tensorflow") == "jax":
        xla_blocker = None  # JAX compiles every step with XLA, sharded ones (keras.distribution) included
    if xla is True and xla_blocker:
        raise ValueError(f"xla=True cannot be honoured under {xla_blocker} (Keras would fail or turn it off); "
                         f"pass xla='auto' or False")
    policy = _auto_policy(facts) if mixed_precision == "auto" else mixed_precision or "float32"
    if xla_blocker is None and device_type == "cpu" and policy == "mixed_bfloat16":
        xla_blocker = "bfloat16 on a CPU"  # XLA's CPU backend bypasses oneDNN's AMX kernels: slower, not faster
    if xla_blocker is None and onednn_beats_xla(facts):
        xla_blocker = "oneDNN in a one-core process"
    intra = facts["cores"] if threads == "auto" else threads or None
    inter = None if not intra else 1 if facts.get("op_determinism") else min(MAX_INTER_OP_THREADS, intra)
    return {"device": _describe(facts), "device_type": device_type, "replicas": facts.get("replicas", 1),
            "jit_compile": xla is True or (xla == "auto" and xla_blocker is None),
            "mixed_precision": policy, "onednn": bool(facts.get("onednn")) and device_type == "cpu",
            "intra_op_threads": intra, "inter_op_threads": inter}


def _apply_threads(intra: int, inter: int) -> bool:
    """Set TF's thread pools; False (with a warning) when the runtime already started with other counts."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
        return True
    except RuntimeError:
        warnings.warn(f"TensorFlow is already initialised, so its thread pools keep their sizes instead of "
                      f"{intra}/{inter}; call helpers.runtime.device.configure() first in a fresh process", stacklevel=3)
        return False


def configure(*, xla="auto", mixed_precision="auto", threads="auto") -> dict:
    """Decide per device (see `choose_settings`) and apply: global mixed-precision policy and thread pools.

    Call it after `split_cpu` and `enable_op_determinism` (both change the XLA choice) and before
    anything starts the TensorFlow runtime (thread pools are fixed then).

    Returns a plain dict: device (description), device_type, replicas, jit_compile (pass to `model.compile`),
    mixed_precision (the policy now global), intra_op_threads / inter_op_threads (None = TF's
    defaults) and threads_applied (False when they were left alone or TF had already started). The thread
    pools are TensorFlow's: under JAX they are left alone (threads_applied False), and with several JAX devices
    `keras.distribution.DataParallel` over them becomes the process-wide distribution.
    """
    facts = device_facts()
    if facts["device_type"] == "cpu" and nvidia_gpu_present():
        engine = facts.get("backend", "tensorflow")
        fix = ("install the CUDA wheels with `make clean-venv setup GPU=1` (requirements-gpu.txt)"
               if engine == "tensorflow" else "install JAX's CUDA build (jax[cuda12] or jax[cuda13])")
        warnings.warn(f"an NVIDIA GPU is present but {engine} sees none, so training runs on the CPU: "
                      f"{fix}", RuntimeWarning, stacklevel=2)
    settings = choose_settings(facts, xla=xla, mixed_precision=mixed_precision, threads=threads)
    keras.mixed_precision.set_global_policy(settings["mixed_precision"])
    if not backend.is_tensorflow() and (distribution := backend.data_parallel()) is not None:
        keras.distribution.set_distribution(distribution)  # every later variable and batch: JAX's data parallelism
    applied = (backend.is_tensorflow() and settings["intra_op_threads"] is not None
               and _apply_threads(settings["intra_op_threads"], settings["inter_op_threads"]))
    return {**settings, "threads_applied": applied}


def split_cpu(n: int) -> list:
    """Split the CPU into `n` logical devices so `strategy()` mirrors over them; returns their names.

    Only for running multi-replica code (batch splitting, gradient all-reduce) on a CPU machine:
    it adds no speed. Logical devices are fixed once TensorFlow initialises its runtime, so call
    this first in a fresh process, before any tensor, model or strategy exists.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"split_cpu needs a positive int number of devices, got {n!r}")
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is None or len(current) != n:
        try:
            tf.config.set_logical_device_configuration(cpu, wanted)
        except RuntimeError:
            raise RuntimeError(f"split_cpu({n}) came too late: TensorFlow has already initialised its devices; "
                               f"call it first in a fresh process") from None
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def _tpu_resolver():
    """A TPU cluster resolver (Kaggle, Colab, Cloud TPU VMs; found from the environment), or None without a TPU."""
    import tensorflow as tf

    attempts = [{}] + ([{"tpu": "local"}] if tf.config.list_physical_devices("TPU") else [])
    for kwargs in attempts:
        try:
            return tf.distribute.cluster_resolver.TPUClusterResolver(**kwargs)
        except (ValueError, RuntimeError, ImportError, KeyError):
            continue
    return None


_STRATEGY: tf.distribute.Strategy | None = None


def _multi_worker_mirrored() -> tf.distribute.Strategy:
    """TensorFlow's MultiWorkerMirroredStrategy, with a `reduce` that takes what Keras 3's `fit` passes it
    (keras-team/keras#20585): a whole (x, y, sample_weight) batch at once when it builds the model (a nest,
    reduced here value by value, as MirroredStrategy does), and scalar logs with `axis=0` (reduced here
    across replicas only, as a scalar has no axis). Every other call is TensorFlow's own."""
    import tensorflow as tf

    class _MultiWorkerMirrored(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            def one(part):
                local = self.experimental_local_results(part)[0] \
                    if isinstance(part, tf.distribute.DistributedValues) else part
                rank = getattr(local, "shape", tf.TensorShape([])).rank
                return super(_MultiWorkerMirrored, self).reduce(reduce_op, part, None if rank == 0 else axis)

            return tf.nest.map_structure(one, value)

    return _MultiWorkerMirrored()


def _tf_config_workers() -> int:
    """Workers named in the `TF_CONFIG` cluster (TensorFlow's own multi-worker convention), 0 without one."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError:
        raise ValueError("TF_CONFIG is not valid JSON: set it to {\"cluster\": {\"worker\": [...]}, "
                         "\"task\": {\"type\": \"worker\", \"index\": i}} or unset it") from None
    cluster = config.get("cluster") or {}
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def multi_worker() -> bool:
    """Whether `TF_CONFIG` names a cluster of several workers (then `strategy()` is MultiWorkerMirrored); never
    on JAX, which reads no `TF_CONFIG`."""
    return backend.is_tensorflow() and _tf_config_workers() > 1


def strategy() -> tf.distribute.Strategy:
    """The `tf.distribute` strategy for what is present, made once per process and then reused.

    A `TF_CONFIG` cluster of several workers → MultiWorkerMirroredStrategy (each worker runs the same
    command; TensorFlow's collectives do the rest); a TPU (the cluster resolver succeeds) → TPUStrategy;
    several GPUs → MirroredStrategy over all; no GPU but several logical CPUs (after `split_cpu`) →
    MirroredStrategy over them; else the default strategy. Call after `split_cpu`/`configure`: this starts
    the TensorFlow runtime.
    """
    global _STRATEGY
    if _STRATEGY is None:
        _STRATEGY = _new_strategy()
    return _STRATEGY


def scope():
    """The context to build and compile a model in: `strategy().scope()` on TensorFlow; nothing on JAX, where
    `configure` made the data parallelism over several devices process-wide (`keras.distribution`), so that
    `fit`, `evaluate` and `predict` split their batches too."""
    return strategy().scope() if backend.is_tensorflow() else contextlib.nullcontext()


def strategy_summary() -> str:
    """One line for the top of a run's output, read without starting the TensorFlow runtime: the devices found,
    the strategy `strategy()` will choose and its replicas, and the dtype policy `configure()` will pick; on a
    machine without accelerators it says so, since training is slow there."""
    facts = device_facts()
    replicas = facts["replicas"]
    chosen = ("MultiWorkerMirroredStrategy" if multi_worker() else "TPUStrategy" if facts["device_type"] == "tpu"
              else "MirroredStrategy" if replicas > 1 else "the default strategy")
    line = (f"devices: {_describe(facts)}; strategy: {chosen} over {replicas} replica(s); "
            f"precision: {choose_settings(facts)['mixed_precision']}")
    if facts["device_type"] == "cpu":
        line += " — no GPU or TPU found: training on one device, the CPU (on Kaggle: Settings → Accelerator)"
    return line


def _new_strategy() -> tf.distribute.Strategy:
    import tensorflow as tf

    if multi_worker():
        return _multi_worker_mirrored()
    resolver = _tpu_resolver()
    if resolver is not None:
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    if not tf.config.list_physical_devices("GPU"):
        cpus = tf.config.list_logical_devices("CPU")
        if len(cpus) > 1:
            return tf.distribute.MirroredStrategy(devices=[device.name for device in cpus])
    return tf.distribute.get_strategy()
