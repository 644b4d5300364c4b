"""Fast inference: class ids (N, 64, 128) uint8 from a segmentation model, in large compiled batches.

`model.predict` returns float32 probabilities (5 × 4 bytes a pixel, 20× the labels) through Keras' per-batch
callback loop and a final concatenation; here the forward pass, argmax and the cast to uint8 run in one
compiled function (XLA where it helps), only labels come back, and they land in one preallocated array.
Batches are balanced: N images make ceil(N / batch_size) batches of one size, the last padded by fewer
images than there are batches, so a single traced shape serves them all (XLA compiles once per shape) and
no batch is wasted on padding. On accelerators the next batch is dispatched before the previous one's labels
are copied back, so the device need not wait for the host between batches.

The compiled function is `tf.function` on TensorFlow and `jax.jit` on JAX (`helpers.runtime.backend.compile_function`).
Choices per device (`choose_inference_settings`; measured in `reports/bench.md`, docs/performance.md): XLA on,
except under op determinism (bit-identical reruns), for a bfloat16 model on a CPU (oneDNN's AMX kernels beat
XLA's CPU code) and in one-core oneDNN processes (the training workers: 1.07-1.27x faster without XLA); batch
32 on a CPU (batches of 16 to 128 ran alike there: the least memory and shortest compile), 512 on GPUs and TPUs
(large batches keep them busy; not measured). The rest of the gain over `model.predict` is the leaner loop: no
per-batch callbacks, no float32 probabilities copied out and concatenated.
"""
from __future__ import annotations

import math
import weakref

import keras
import numpy as np
from keras import ops

from helpers.configs.constants import IMAGE_SHAPE
from helpers.data.dataset import validate_images
from helpers.predict.decoding import check_classes, decode
from helpers.predict.ensemble import soft_vote
from helpers.predict.tta import flip_tta
from helpers.runtime import backend
from helpers.runtime.device import device_facts, onednn_beats_xla

BATCH_SIZES = {"cpu": 32, "gpu": 512, "tpu": 512}

_COMPILED = weakref.WeakKeyDictionary()  # first model -> {(members, choices): compiled labels function}


def choose_inference_settings(facts: dict, *, batch_size=None, jit_compile="auto") -> dict:
    """{"batch_size", "jit_compile"} for a device described by `facts` (`helpers.runtime.device.device_facts`).

    batch_size: None (per device: `BATCH_SIZES`) or a positive int. jit_compile: "auto" (on, except
    under op determinism, where XLA's fused kernels would break bit-identical reruns with Keras' own
    non-XLA path, for a bfloat16 model on a CPU, where oneDNN beats XLA (`facts["compute_dtype"]`), and in a
    one-core process with oneDNN on, where its kernels beat XLA's: `helpers.runtime.device.onednn_beats_xla`)
    | True | False.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"batch_size={batch_size!r} is not understood; pass None (per device) or a positive int")
    if not (jit_compile == "auto" or isinstance(jit_compile, bool)):
        raise ValueError(f"jit_compile={jit_compile!r} is not understood; pass 'auto', True or False")
    if jit_compile == "auto":
        bfloat16_on_cpu = facts["device_type"] == "cpu" and facts.get("compute_dtype") == "bfloat16"
        jit_compile = not (facts.get("op_determinism", False) or bfloat16_on_cpu or onednn_beats_xla(facts))
    return {"batch_size": int(batch_size or BATCH_SIZES[facts["device_type"]]), "jit_compile": jit_compile}


def balanced_batches(n: int, batch_size: int) -> tuple[int, int]:
    """(number of batches, images per batch): the fewest batches of at most `batch_size`, all of one size."""
    count = math.ceil(n / batch_size)
    return count, math.ceil(n / count)


def _labels_function(models: list, jit_compile: bool, run_eagerly: bool, decoding: dict):
    """x (B, 64, 128, 1) -> uint8 labels (K, B, 64, 128), one map per entry of `decoding["classes"]`: the members'
    soft vote (`helpers.predict.ensemble`), each with flip TTA if asked (`helpers.predict.tta`), decoded by
    `helpers.predict.decoding.decode`; compiled once per models and choices."""
    tta, classes, threshold = decoding["tta"], decoding["classes"], decoding["threshold"]

    def probabilities(members, x):
        calls = [lambda v, m=m: m(v, training=False) for m in members]
        if tta:
            calls = [lambda v, call=call: flip_tta(call, v) for call in calls]
        return calls[0](x) if len(calls) == 1 else soft_vote(calls, x)

    def decoded(probs):
        return ops.stack([decode(probs, choice, threshold) for choice in classes])

    if run_eagerly:
        return lambda x: decoded(probabilities(models, x))
    compiled = _COMPILED.setdefault(models[0], {})
    choice = (tuple(id(m) for m in models), jit_compile, tta, classes, threshold)
    if choice not in compiled:
        refs = [weakref.ref(m) for m in models]  # the cache must not keep the models alive

        def labels(x):
            return decoded(probabilities([ref() for ref in refs], x))

        variables = [variable for m in models for variable in m.variables]
        compiled[choice] = backend.compile_function(labels, jit_compile, variables)
    return compiled[choice]


def predict_labels(model, images, *, batch_size: int | None = None, jit_compile="auto", run_eagerly: bool = False,
                   tta: bool = False, classes: str | tuple = "all", threshold: float | None = None):
    """Argmax class ids (N, 64, 128) uint8 of `model` on float images in [0, 1], (N, 64, 128) or (N, 64, 128, 1).

    `model` is a Keras model or a list of them (a soft-vote ensemble); `tta` averages the four flips; `classes`
    "foreground" never predicts 0, and a tuple of choices (e.g. ("all", "foreground")) returns a tuple of label
    arrays, one per choice, from one forward pass; `threshold` turns pixels predicted with less probability into 0
    (pseudo-labels; `helpers.predict.decoding.decode`).

    batch_size: None chooses per device (`choose_inference_settings`); N need not be a multiple of it,
    and N = 0 gives an empty (0, 64, 128) array. jit_compile: "auto" | True | False (XLA). run_eagerly:
    call the model op by op, without tracing (faster for a handful of images, as in the smoke profile).
    Equals `argmax(model.predict(images), -1)` (up to float rounding near ties when XLA is on).
    """
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    if not models:
        raise ValueError("predict_labels needs a model or a non-empty list of models")
    choices = tuple(check_classes(c) for c in ((classes,) if isinstance(classes, str) else classes))
    if not choices:
        raise ValueError("classes=() names no decoding: pass 'all', 'foreground' or a tuple of them")
    facts = {**device_facts(), "compute_dtype": models[0].dtype_policy.compute_dtype}
    settings = choose_inference_settings(facts, batch_size=batch_size, jit_compile=jit_compile)
    if len(images) == 0:
        empty = np.zeros((0, *IMAGE_SHAPE), np.uint8)
        return empty if isinstance(classes, str) else tuple(empty for _ in choices)
    images = validate_images(images)[..., None]
    n = len(images)
    count, size = balanced_batches(n, settings["batch_size"])
    labels_of = _labels_function(models, settings["jit_compile"], run_eagerly,
                                 {"tta": bool(tta), "classes": choices, "threshold": threshold})
    out = np.empty((len(choices), n, *IMAGE_SHAPE), np.uint8)
    pending = None
    for start in range(0, count * size, size):
        batch = images[start:start + size]
        if len(batch) < size:
            batch = np.concatenate([batch, np.zeros((size - len(batch), *batch.shape[1:]), batch.dtype)])
        result = (start, labels_of(ops.convert_to_tensor(batch)))
        if pending is not None:
            out[:, pending[0]:pending[0] + size] = ops.convert_to_numpy(pending[1])[:, :n - pending[0]]
        pending = result
    out[:, pending[0]:] = ops.convert_to_numpy(pending[1])[:, :n - pending[0]]
    return out[0] if isinstance(classes, str) else tuple(out)
