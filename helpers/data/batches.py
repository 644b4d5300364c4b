"""The input pipeline without TensorFlow: numpy batches as a `keras.utils.PyDataset`, for Keras on JAX.

`ArrayBatches` yields the `(x, y, sample_weight)` batches `helpers.data.dataset.make_dataset` yields through `tf.data`:
x (B, 64, 128, 1) float32, y (B, 64, 128) int32, sample_weight = class_weights[y] float32 (ones without class
weights), in the input order unless shuffled. Unshuffled and unaugmented, the batches are the same arrays as
tf.data's (tests/test_backends.py). Shuffling draws a numpy permutation per pass over the data (seeded by `seed`
and the pass), so a shuffled order differs from tf.data's: the same kind of stream, not the same sequence.
`repeat` makes the stream endless, each pass reshuffled, for `fit(steps_per_epoch=...)`.
Augmentation here is any function `(x, y) -> (x, y)` on numpy batches; `helpers.data.augment.geometric_augmenter`
runs on TensorFlow only.
"""
from __future__ import annotations

import math

import keras
import numpy as np


class ArrayBatches(keras.utils.PyDataset):
    """Batches of validated arrays (`helpers.data.dataset.make_dataset` checks them and builds this on JAX)."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, *, batch_size: int, class_weights=None,
                 shuffle: bool = False, augment=None, seed: int = 0, drop_remainder: bool = False,
                 repeat: bool = False):
        super().__init__()
        if len(images) < (batch_size if drop_remainder else 1):
            raise ValueError(f"{len(images)} images make no batch of {batch_size} (drop_remainder={drop_remainder})")
        self.x, self.y = images[..., None].astype(np.float32), masks.astype(np.int32)
        self.weights = None if class_weights is None else np.asarray(class_weights, np.float32)
        self.batch_size, self.shuffle, self.augment, self.seed = batch_size, shuffle, augment, seed
        self.repeat = repeat
        self.per_pass = (len(self.x) // batch_size) if drop_remainder else math.ceil(len(self.x) / batch_size)
        self._epoch = 0

    def __len__(self) -> int:
        return self.per_pass

    @property
    def num_batches(self) -> int | None:
        """Batches of one pass, or None (endless) with `repeat`."""
        return None if self.repeat else self.per_pass

    def _order(self, data_pass: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.x))
        return np.random.default_rng((self.seed, data_pass)).permutation(len(self.x))

    def __getitem__(self, index: int):
        data_pass, position = (divmod(index, self.per_pass) if self.repeat else (self._epoch, index))
        if not 0 <= position < self.per_pass:
            raise IndexError(f"batch {index} is out of range: a pass holds {self.per_pass} batches")
        chosen = self._order(data_pass)[position * self.batch_size:(position + 1) * self.batch_size]
        x, y = self.x[chosen], self.y[chosen]
        if self.augment is not None:
            x, y = self.augment(x, y)
            y = np.asarray(y).astype(np.int32)
        sample_weight = np.ones(y.shape, np.float32) if self.weights is None else self.weights[y]
        return np.asarray(x, np.float32), y, sample_weight

    def on_epoch_end(self):
        """A finite stream's next epoch is the next pass (reshuffled when `shuffle`)."""
        self._epoch += 1
