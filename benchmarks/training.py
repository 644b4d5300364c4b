"""Training throughput of one Table 1 entry: the project's pipeline against the plain way peers train.

Both ways train the same model (full width), loss, optimizer, metrics and batch size on the same images, so
only the way of feeding and running the steps differs:
- ours: the model built inside `helpers.device.strategy()`'s scope (the default strategy on one device,
  MirroredStrategy over several GPUs), compiled with the per-device XLA choice of `helpers.device.configure`,
  fed by `helpers.dataset.make_dataset` (tf.data: cache, shuffle, batched map, prefetch);
- peer: `model.fit` on numpy arrays, `jit_compile=False`, Keras' defaults otherwise.
Throughput is images per second of an epoch, the median over the epochs after the first (the warm-up, which
pays for tracing and XLA compilation).
"""
import numpy as np

from benchmarks.timing import EpochTimer, rate
from helpers.dataset import make_dataset
from helpers.device import strategy
from helpers.experiments import resolve
from helpers.losses import class_weights_from_masks, combined_loss
from helpers.metrics import training_metrics
from helpers.models import build_model
from helpers.optim import make_optimizer
from helpers.train import schedule_lengths


def _compiled_model(name: str, masks: np.ndarray, *, steps_per_epoch: int, epochs: int, jit_compile: bool):
    """Entry `name`'s model, compiled with its loss, optimizer and the training metrics; and its class weights."""
    settings = resolve(name)
    loss_settings = settings["loss"]
    class_weights = None
    if loss_settings["class_weights"] is not None:
        class_weights = class_weights_from_masks(masks, cap=loss_settings["class_weights"].get("cap"))
    model = build_model(**settings["model"])
    optimizer, _ = make_optimizer(settings["optimizer"]["name"], lr=settings["optimizer"]["lr"],
                                  steps_per_epoch=steps_per_epoch, epochs=epochs, **schedule_lengths(epochs))
    loss = combined_loss(loss_settings["terms"], ignore_class=loss_settings["ignore_class"])
    model.compile(optimizer=optimizer, loss=loss, metrics=training_metrics(), jit_compile=jit_compile)
    return model, class_weights


def ours(name: str, images: np.ndarray, masks: np.ndarray, *, batch_size: int, repeats: int,
         jit_compile: bool) -> dict:
    """Images/s of the project's way: strategy scope, per-device XLA choice, tf.data input."""
    epochs = 1 + repeats
    steps = -(-len(images) // batch_size)
    with strategy().scope():
        model, class_weights = _compiled_model(name, masks, steps_per_epoch=steps, epochs=epochs,
                                               jit_compile=jit_compile)
    dataset = make_dataset(images, masks, batch_size=batch_size, class_weights=class_weights, shuffle=True)
    timer = EpochTimer()
    model.fit(dataset, epochs=epochs, callbacks=[timer], verbose=0, shuffle=False)
    return {**rate(len(images), timer.seconds), "jit_compile": jit_compile, "batch_size": batch_size}


def peer(name: str, images: np.ndarray, masks: np.ndarray, *, batch_size: int, repeats: int) -> dict:
    """Images/s of the plain way: numpy arrays into `model.fit`, no XLA."""
    epochs = 1 + repeats
    steps = -(-len(images) // batch_size)
    model, class_weights = _compiled_model(name, masks, steps_per_epoch=steps, epochs=epochs, jit_compile=False)
    sample_weight = None if class_weights is None else class_weights[masks]
    timer = EpochTimer()
    model.fit(images[..., None], masks.astype(np.int32), sample_weight=sample_weight, batch_size=batch_size,
              epochs=epochs, callbacks=[timer], verbose=0)
    return {**rate(len(images), timer.seconds), "jit_compile": False, "batch_size": batch_size}
