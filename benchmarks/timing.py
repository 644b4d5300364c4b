"""Timing primitives shared by the benchmarks: epoch timer, repeated timing, peak memory, matmul peak.

TensorFlow is imported by `matmul_gflops` only, so the rest serves a Keras process on JAX too
(`benchmarks.backend_child`), where TensorFlow must stay unimported.
"""
import resource
import statistics
import time

import keras
import numpy as np


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of every epoch of a `fit`; the first includes tracing and compilation (the warm-up)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._started)


def rate(items: int, seconds: list[float], warmup: int = 1) -> dict:
    """Items per second: the median over the repeats after `warmup`, with every repeat's seconds."""
    timed = seconds[warmup:] or seconds
    return {"per_second": items / statistics.median(timed), "seconds": [round(s, 3) for s in seconds],
            "warmup": min(warmup, len(seconds) - 1), "items": items}


def time_calls(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of `warmup + repeats` calls of `fn()`."""
    seconds = []
    for _ in range(warmup + repeats):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return seconds


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (`getrusage` maxrss, MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_gflops(n: int = 4096, repeats: int = 3, bfloat16: bool = True) -> dict:
    """GFLOP/s of an n×n matmul (2n³ FLOPs), best of `repeats` after a warm-up: TensorFlow's and numpy's in
    float32, and with `bfloat16` TensorFlow's in bfloat16 (oneDNN's AMX kernels where the CPU has them; leave it
    out under an ONEDNN_MAX_CPU_ISA cap below bfloat16, where oneDNN aborts the process on that matmul).

    numpy's BLAS (OpenBLAS) comes close to the cores' FMA peak; TensorFlow's own CPU matmul reaches far less.
    The higher of the two is the ceiling the convolutions are compared against.
    """
    import tensorflow as tf

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    tensor = tf.constant(a)
    matmul = tf.function(lambda x: tf.reduce_sum(tf.linalg.matmul(x, x)))
    flops = 2 * n**3 / 1e9
    measured = {"tensorflow": flops / min(time_calls(lambda: matmul(tensor).numpy(), repeats)[1:]),
                "numpy": flops / min(time_calls(lambda: a @ a, repeats)[1:])}
    if bfloat16:
        bf16 = tf.cast(tensor, tf.bfloat16)
        measured["tensorflow_bfloat16"] = flops / min(time_calls(lambda: matmul(bf16).numpy(), repeats)[1:])
    return measured
