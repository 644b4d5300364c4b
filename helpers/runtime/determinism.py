"""One switch for bit-identical reruns on CPU: seeds, deterministic ops, one inter-op thread.

All three are needed (checked by running): `keras.utils.set_random_seed` fixes Python, NumPy, TF
and Keras' own seeds; `enable_op_determinism` makes ops and `tf.data` deterministic (maps holding
random ops, such as the augmentation layers, then run serially); one inter-op thread stops
independent ops from racing. The thread count is fixed when TensorFlow runs its first op, so call
`set_determinism` first: at the top of a script, in a notebook's setup cell, before any data or
model is built.

On JAX the seeds are all there is to set: XLA's CPU code computes the same bits on every rerun (tested across
processes in tests/test_jax_path.py), and nothing here imports TensorFlow.
"""
import warnings

import keras
import numpy as np

from helpers.runtime import backend


def set_determinism(seed: int, enabled: bool = True) -> bool:
    """Seed everything and, when `enabled`, make TensorFlow deterministic; True if fully in force.

    Safe to call again later in the same process (e.g. before each experiment) once the first call
    came early enough. If TensorFlow had already started with more than one inter-op thread, seeds
    and op determinism are still set, a RuntimeWarning says reruns may differ in the last bits, and
    False is returned. `enabled=False` only sets the seeds (TensorFlow has no public way to turn op
    determinism off again once it is on in a process).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not enabled:
        backend.set_random_seed(int(seed))
        return False
    if not backend.is_tensorflow():
        backend.set_random_seed(int(seed))
        return True
    import tensorflow as tf

    in_force = True
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        in_force = False
        warnings.warn(
            "set_determinism: TensorFlow already started with "
            f"{tf.config.threading.get_inter_op_parallelism_threads() or 'default'} inter-op threads, "
            "so CPU reruns may differ in the last bits; call set_determinism before any TensorFlow "
            "op runs (first thing in the script or notebook, or restart the kernel)",
            RuntimeWarning,
            stacklevel=2,
        )
    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()
    return in_force
