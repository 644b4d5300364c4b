"""The input pipeline every training run feeds to `model.fit`: arrays in, `tf.data.Dataset` out.

Built the keras.io way: `from_tensor_slices` → cache → shuffle (seeded, reshuffled every epoch) →
batch → one batched `map` (augmentation, then per-pixel sample weights) → prefetch, but with tf.data's
autotuner off (`TF_DATA_AUTOTUNE`): on these small pipelines it left the training step waiting for input
for up to half of some epochs, on one core and on two (docs/performance.md); with it off, the parallel
map and prefetch keep tf.data's fixed start-up values.
Keras cannot take `class_weight` for (B, H, W) targets, so class weights become a per-pixel
`sample_weight = class_weights[y]`, computed after augmentation so the weights follow the moved mask.

Augmented batches are bit-identical across runs only under `helpers.runtime.determinism.set_determinism`
(the Keras augmentation layers draw from a stateful seed, which `tf.data` then runs serially).

TensorFlow is imported by the dataset builder only: the checks (`validate_images`...) serve every backend,
and under JAX `make_dataset` gives numpy batches instead (`helpers.data.batches`).
"""
from __future__ import annotations

import numpy as np

from helpers.configs.constants import IMAGE_SHAPE, NUM_CLASSES
from helpers.data.batches import ArrayBatches
from helpers.runtime import backend

TF_DATA_AUTOTUNE = False
"""Default for the `autotune` argument of the dataset builders; `benchmarks.run` measures both ways."""


def _with_autotune(dataset: tf.data.Dataset, autotune: bool | None) -> tf.data.Dataset:
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = TF_DATA_AUTOTUNE if autotune is None else bool(autotune)
    return dataset.with_options(options)


def validate_images(images) -> np.ndarray:
    """Check images follow the data convention and return them as float32 (N, 64, 128).

    Accepts (N, 64, 128) or (N, 64, 128, 1) floating arrays with finite values in [0, 1].
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(
            f"images must have shape (N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]}) or (N, ..., 1), "
            f"got {images.shape}"
        )
    if len(images) == 0:
        raise ValueError("images is empty; pass at least one image")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"images must be floating point in [0, 1], got dtype {images.dtype}; "
            "convert with images.astype(np.float32) / 255"
        )
    if not np.all(np.isfinite(images)):
        raise ValueError("images contain NaN or infinity; clean the data first")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"images must lie in [0, 1], got values in [{low:g}, {high:g}]; "
            "scale grey levels 0..255 by dividing by 255"
        )
    return images.astype(np.float32, copy=False)


def validate_images_and_masks(images, masks) -> tuple[np.ndarray, np.ndarray]:
    """Check an image/mask pair of arrays and return (float32 (N, 64, 128), uint8 (N, 64, 128)).

    Masks must be an integer array of class ids 0..NUM_CLASSES-1 with one mask per image.
    """
    images = validate_images(images)
    masks = np.asarray(masks)
    if masks.shape != images.shape:
        raise ValueError(
            f"masks must have the images' shape {images.shape} (one (64, 128) mask per image), "
            f"got {masks.shape}"
        )
    if not np.issubdtype(masks.dtype, np.integer):
        raise ValueError(
            f"masks must be integer class ids, got dtype {masks.dtype}; "
            "convert with masks.astype(np.uint8)"
        )
    low, high = int(masks.min()), int(masks.max())
    if low < 0 or high >= NUM_CLASSES:
        raise ValueError(
            f"mask values must lie in 0..{NUM_CLASSES - 1}, got values in [{low}, {high}]"
        )
    return images, masks.astype(np.uint8, copy=False)


def _validate_class_weights(class_weights) -> np.ndarray:
    weights = np.asarray(class_weights, dtype=np.float64)
    if weights.shape != (NUM_CLASSES,):
        raise ValueError(
            f"class_weights must hold one weight per class ({NUM_CLASSES}), got shape {weights.shape}"
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(f"class_weights must be finite and non-negative, got {weights.tolist()}")
    return weights.astype(np.float32)


def _validate_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def make_dataset(
    images,
    masks,
    *,
    batch_size: int,
    class_weights=None,
    shuffle: bool = False,
    augment=None,
    seed: int = 0,
    cache: bool = True,
    drop_remainder: bool = False,
    repeat: bool = False,
    autotune: bool | None = None,
) -> tf.data.Dataset | ArrayBatches:
    """Training/evaluation dataset yielding `(x, y, sample_weight)` batches.

    x: (B, 64, 128, 1) float32; y: (B, 64, 128) int32; sample_weight: (B, 64, 128) float32 equal to
    `class_weights[y]` after augmentation (all ones when `class_weights` is None).
    `shuffle` reshuffles every epoch in a sequence fixed by `seed`. `augment` is a function
    `(x, y) -> (x, y)` on batched tensors, e.g. `helpers.data.augment.geometric_augmenter(...)`; give it
    to the training split only. `repeat` makes the stream endless (each pass reshuffled), so a fixed number of
    optimizer steps can be taken whatever the split's size (`fit(steps_per_epoch=...)`: the same budget for
    every run, `helpers.run.train.budget`). `autotune` turns tf.data's autotuner on or off (None: `TF_DATA_AUTOTUNE`).

    When Keras runs on JAX the same batches come from numpy, without TensorFlow: a `helpers.data.batches.ArrayBatches`
    (`cache` and `autotune` are tf.data's and do nothing there; a shuffled order is numpy's, not tf.data's).
    """
    images, masks = validate_images_and_masks(images, masks)
    batch_size = _validate_batch_size(batch_size)
    weights = None if class_weights is None else _validate_class_weights(class_weights)
    if augment is not None and not callable(augment):
        raise ValueError(f"augment must be a function (x, y) -> (x, y) or None, got {type(augment).__name__}")
    if not backend.is_tensorflow():
        return ArrayBatches(images, masks, batch_size=batch_size, class_weights=weights, shuffle=shuffle,
                            augment=augment, seed=seed, drop_remainder=drop_remainder, repeat=repeat)
    import tensorflow as tf

    def prepare(x, y):
        if augment is not None:
            x, y = augment(x, y)
        y = tf.cast(y, tf.int32)
        if weights is None:
            sample_weight = tf.ones_like(y, dtype=tf.float32)
        else:
            sample_weight = tf.gather(tf.constant(weights), y)
        return x, y, sample_weight

    dataset = tf.data.Dataset.from_tensor_slices((images[..., None], masks))
    if cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return _with_autotune(dataset.prefetch(tf.data.AUTOTUNE), autotune)

