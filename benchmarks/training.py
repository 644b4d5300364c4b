"""Training throughput of Table 1 entries: the project's own training path against the plain way peers train.

- ours: exactly what `helpers.run.train.run` does — `train.plan` → `train.build` (tf.data input, the model built
  and compiled inside `helpers.runtime.device.strategy()`, the per-device dtype and XLA choice of
  `helpers.runtime.device.configure`, the run's callbacks) → `train.fit` — on the profile's width and batch;
- peer: the same model, loss, optimizer and metrics at the same width and batch, in float32 without XLA,
  with numpy arrays into `model.fit` (Keras's defaults otherwise).
Throughput is images per second of an epoch, the median over the epochs after the first (the warm-up, which
pays for tracing and compilation). The run folders go to a temporary directory.
"""
from __future__ import annotations

import math
import os
import tempfile

import keras
import numpy as np

from benchmarks.timing import EpochTimer, rate
from helpers.configs.profiles import get_profile
from helpers.data.loading import DataSource, MarsData
from helpers.model.losses import class_weights_from_masks, combined_loss
from helpers.model.metrics import training_metrics
from helpers.model.models import build_model
from helpers.model.optim import make_optimizer, schedule_lengths
from helpers.run import train
from helpers.run.steps import Prepared


def bench_profile(batch_size: int, epochs: int) -> dict:
    """The default profile (its width) with the benchmark's batch and epoch count."""
    return {**get_profile("default"), "name": "bench", "batch_size": batch_size, "epochs": epochs,
            "patience": epochs}


def ours(name: str, images: np.ndarray, masks: np.ndarray, *, batch_size: int, repeats: int, device: dict) -> dict:
    """Images/s of `helpers.run.train`'s own path for entry `name` (plan → build → fit), `device` from `configure`."""
    profile = bench_profile(batch_size, 1 + repeats)
    data = MarsData(train_images=images, train_masks=masks, test_images=images[:1],
                    source=DataSource(kind="benchmark", path="", fingerprint="bench", labels_path=None,
                                      found_by="benchmark"))
    prepared = Prepared(arrays={"train": (images, masks), "val": (images[:batch_size], masks[:batch_size])},
                        indices={}, info={"budget": train.budget(len(images), batch_size)})
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as folder:
        previous = os.environ.get("MARS_REPORTS")
        os.environ["MARS_REPORTS"] = folder
        try:
            run_plan = train.plan(name, data, profile, seed=0)
            built = train.build(run_plan, prepared, callbacks=[timer], device=device)
            train.fit(built, verbose=0)
        finally:
            os.environ.pop("MARS_REPORTS") if previous is None else os.environ.__setitem__("MARS_REPORTS", previous)
    return {**rate(len(images), timer.seconds), "jit_compile": device["jit_compile"],
            "mixed_precision": device["mixed_precision"], "batch_size": batch_size, "width": profile["width"]}


def peer(name: str, images: np.ndarray, masks: np.ndarray, *, batch_size: int, repeats: int) -> dict:
    """Images/s of the plain way at the same width and batch: float32, numpy arrays into `model.fit`, no XLA."""
    settings, width = train.experiments.resolve(name), get_profile("default")["width"]
    loss_settings, epochs = settings["loss"], 1 + repeats
    policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("float32")
    try:
        model = build_model(**settings["model"], width=width)
        optimizer, _ = make_optimizer(settings["optimizer"]["name"], lr=settings["optimizer"]["lr"],
                                      steps_per_epoch=math.ceil(len(images) / batch_size), epochs=epochs,
                                      **schedule_lengths(epochs))
        loss = combined_loss(loss_settings["terms"], ignore_class=loss_settings["ignore_class"])
        model.compile(optimizer=optimizer, loss=loss, metrics=training_metrics(), jit_compile=False)
        weights = None
        if loss_settings["class_weights"] is not None:
            weights = class_weights_from_masks(masks, cap=loss_settings["class_weights"].get("cap"))[masks]
        timer = EpochTimer()
        model.fit(images[..., None], masks.astype(np.int32), sample_weight=weights, batch_size=batch_size,
                  epochs=epochs, callbacks=[timer], verbose=0)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    return {**rate(len(images), timer.seconds), "jit_compile": False, "mixed_precision": "float32",
            "batch_size": batch_size, "width": width}
