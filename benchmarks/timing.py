"""Timing primitives shared by the benchmarks: epoch timer, repeated timing, peak memory, matmul peak."""
import resource
import statistics
import time

import keras
import numpy as np
import tensorflow as tf


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


def matmul_gflops(n: int = 4096, repeats: int = 3) -> float:
    """Measured float32 peak of this device: GFLOP/s of an n×n matmul (2n³ FLOPs), best of `repeats` after one warm-up.

    The best rather than the median: this is the ceiling the convolutions are compared against.
    """
    a = tf.constant(np.random.default_rng(0).random((n, n), dtype=np.float32))
    matmul = tf.function(lambda x: tf.reduce_sum(tf.linalg.matmul(x, x)))
    seconds = time_calls(lambda: matmul(a).numpy(), repeats)
    return 2 * n**3 / min(seconds[1:]) / 1e9
