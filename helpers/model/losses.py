"""Segmentation losses of the study, alone or as one weighted sum whose weights can change in training.

Every loss takes `y_true` integer labels (B, H, W) or (B, H, W, 1) and `y_pred` softmax
probabilities (B, H, W, 5), and is a registered Keras `Loss` (so `.keras` files reload after
`import helpers.model.losses`).

The terms are declared once, by name, in `TERMS`. Two kinds of term (each class's `per_image`), and how
per-pixel sample weights (the pipeline's `class_weights[y]`) apply:

- Pixel terms ("ce", "focal", "boundary") give one value per pixel and follow Keras's convention
  for weighted losses: `sum_i w_i * l_i / n`, where n counts the scored pixels (pixels whose true
  label is `ignore_class` are dropped) -- the division is by the pixel count, not by the sum of
  weights. A pixel of a class with weight 151 thus counts 151 times as much as a pixel of weight 1.
- Image terms ("dice", "class_limit", "low_pass") give one value per image and ignore per-pixel
  weights on purpose: dice already gives every class the same say by averaging per-class scores,
  class-limit and low-pass are priors on a whole map. A per-image weight of shape (B,) is applied
  (`sum_b w_b * l_b / B`); a per-pixel one (rank >= 2) is not used.

Only the default reduction ("sum_over_batch_size") exists. Everything is `keras.ops` (TensorFlow and JAX); the
replica arithmetic below is `helpers.runtime.backend`'s. Under a `tf.distribute` strategy with several
replicas each term returns its replica's share of the global batch value, as Keras's own losses do: image
terms are divided by the replicas in sync, pixel terms divide by the scored-pixel count summed over the
replicas. Equal replica batches then give the one-device loss and gradients (tests/test_distributed.py).

Everything is written here because Keras has no sparse focal loss, its `Dice` is one-hot only with no
smoothing, it has no boundary, class-limit or low-pass loss, and its sparse cross-entropy with
`ignore_class` divides by each replica's own pixel count (`SparseCrossEntropy` gives its numbers on one
device and the one-device value on several).
"""
import math

import keras
import numpy as np
from keras import ops

from helpers.configs.constants import BACKGROUND, LABELLED_CLASSES, NUM_CLASSES
from helpers.runtime import backend


def class_weights_from_masks(masks, cap: float | None = None) -> np.ndarray:
    """Per-class weights w_c = N / (5 * n_c) from the pixel counts of `masks` (any shape, ids 0..4).

    This is scikit-learn's `compute_class_weight("balanced")` over pixels (background included,
    as sklearn counts every label), computed with `np.bincount`. The report's "class weight
    refinement" is the optional `cap`: every weight is clipped to at most `cap` (peers used 10
    for big rock, whose uncapped weight is about 151 on the clean set and about 14 after blending).
    With a cap, a class absent from `masks` (small subsets) gets the cap; without one it is an error.
    Index the result with a mask (`weights[mask]`) to get the per-pixel sample weights.
    """
    masks = np.asarray(masks)
    if not np.issubdtype(masks.dtype, np.integer):
        if not np.all(np.mod(masks, 1) == 0):
            raise ValueError(f"masks of dtype {masks.dtype} hold non-integer values: pass class ids 0..4.")
        masks = masks.astype(np.int64)
    if masks.size == 0 or masks.min() < 0 or masks.max() >= NUM_CLASSES:
        raise ValueError(f"masks must be non-empty class ids in 0..{NUM_CLASSES - 1}.")
    if cap is not None and not cap > 0:
        raise ValueError(f"cap={cap} must be a positive number or None.")
    counts = np.bincount(masks.ravel(), minlength=NUM_CLASSES)
    if np.any(counts == 0) and cap is None:
        raise ValueError(
            f"classes {np.flatnonzero(counts == 0).tolist()} have no pixels in masks: "
            "balanced weights are undefined; compute them on a larger set or pass a cap."
        )
    with np.errstate(divide="ignore"):
        weights = masks.size / (NUM_CLASSES * counts.astype(np.float64))
    if cap is not None:
        weights = np.minimum(weights, cap)  # an absent class (infinitely rare) gets the cap
    return weights.astype(np.float32)


def _labels_and_probs(y_true, y_pred):
    """Integer labels (B, H, W) and float32 probabilities (B, H, W, C), shapes checked."""
    y_pred = ops.cast(y_pred, "float32")
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == 4 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    if len(y_pred.shape) != 4 or y_pred.shape[-1] != NUM_CLASSES or len(y_true.shape) != 3:
        raise ValueError(
            f"expected y_true (B, H, W) labels and y_pred (B, H, W, {NUM_CLASSES}) probabilities, "
            f"got {tuple(y_true.shape)} and {tuple(y_pred.shape)}."
        )
    return ops.cast(y_true, "int32"), y_pred


def _valid_pixels(labels, ignore_class):
    """1.0 where the pixel is scored, 0.0 where its true label is `ignore_class`."""
    if ignore_class is None:
        return ops.ones_like(labels, dtype="float32")
    return ops.cast(ops.not_equal(labels, ignore_class), "float32")


def _split_sample_weight(sample_weight):
    """(weight for pixel terms, weight for image terms): a (B,) weight reaches both, per-pixel ones pixel terms only."""
    if sample_weight is None:
        return None, None
    sample_weight = ops.cast(sample_weight, "float32")
    rank = len(sample_weight.shape)
    if rank == 0:
        return sample_weight, sample_weight
    if rank == 1:
        return ops.reshape(sample_weight, (-1, 1, 1)), sample_weight
    if rank == 4:
        sample_weight = ops.squeeze(sample_weight, axis=-1)
    return sample_weight, None


def _pixel_mean(values, valid, sample_weight):
    """Keras's weighted mean: sum over scored pixels of w_i * l_i, divided by their count.

    Under a strategy with several replicas the count is summed over the replicas, so each replica returns
    its share of the global mean (the replicas' shares add up to the one-device value, whatever number of
    scored pixels each replica's images hold)."""
    pixel_weight, _ = _split_sample_weight(sample_weight)
    weights = valid if pixel_weight is None else valid * pixel_weight
    count = backend.replica_sum(ops.sum(valid))
    return ops.divide_no_nan(ops.sum(values * weights), count)


def _image_mean(values, sample_weight):
    """Mean of per-image values; a (B,) sample weight applies, per-pixel weights do not."""
    _, image_weight = _split_sample_weight(sample_weight)
    return ops.mean(values if image_weight is None else values * image_weight)


def _per_replica(value):
    """Divide a per-image mean by the replicas in sync, as Keras's own losses do under `tf.distribute`:
    the strategy sums the replicas' gradients, so each replica must contribute mean / replicas."""
    replicas = backend.replicas_in_sync()
    return value if replicas == 1 else value / float(replicas)


def _check_reduction(reduction):
    if reduction != "sum_over_batch_size":
        raise ValueError(f"reduction={reduction!r} is not supported: use the default 'sum_over_batch_size'.")


def _check_classes(classes, ignore_class):
    classes = tuple(int(c) for c in classes)
    if not classes or any(c < 0 or c >= NUM_CLASSES for c in classes):
        raise ValueError(f"classes={classes} must be a non-empty subset of 0..{NUM_CLASSES - 1}.")
    if ignore_class in classes:
        raise ValueError(f"ignore_class={ignore_class} is also in classes={classes}: drop it from one of them.")
    return classes


class _SegmentationLoss(keras.losses.Loss):
    """Shared plumbing: label/probability checks and the pixel or image reduction."""

    per_image = False

    def __init__(self, *, ignore_class=BACKGROUND, name=None, reduction="sum_over_batch_size", dtype=None):
        _check_reduction(reduction)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.ignore_class = None if ignore_class is None else int(ignore_class)

    def __call__(self, y_true, y_pred, sample_weight=None):
        with backend.name_scope(self.name):
            labels, probs = _labels_and_probs(y_true, y_pred)
            values = self.call(labels, probs)
            if self.per_image:
                return _per_replica(_image_mean(values, sample_weight))
            return _pixel_mean(values, _valid_pixels(labels, self.ignore_class), sample_weight)

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}


def _true_class_probability(labels, probs):
    """p of the true class per pixel, after Keras's own renormalisation and clipping to [eps, 1 - eps]."""
    probs = probs / ops.sum(probs, axis=-1, keepdims=True)
    probs = ops.clip(probs, keras.backend.epsilon(), 1.0 - keras.backend.epsilon())
    return ops.squeeze(ops.take_along_axis(probs, ops.expand_dims(labels, -1), axis=-1), axis=-1)


@keras.saving.register_keras_serializable(package="helpers")
class SparseCrossEntropy(_SegmentationLoss):
    """Cross-entropy on integer labels, -log p_true per pixel: on one device the numbers of Keras's
    `SparseCategoricalCrossentropy(ignore_class=...)` (tests/test_losses.py checks it).

    Written here for one reason: with `ignore_class`, Keras's own divides by each replica's count of
    scored pixels, so under a multi-device strategy the mean drifts from the one-device value when the
    replicas' images hold different numbers of background pixels; this one divides by the global count.
    """

    def __init__(self, *, ignore_class=BACKGROUND, name="ce", **kwargs):
        super().__init__(ignore_class=ignore_class, name=name, **kwargs)

    def call(self, labels, probs):
        return -ops.log(_true_class_probability(labels, probs))


@keras.saving.register_keras_serializable(package="helpers")
class SparseFocalLoss(_SegmentationLoss):
    """Focal loss on integer labels: alpha * (1 - p_t)**gamma * -log(p_t) per pixel (Lin et al. 2017).

    Same numbers as `keras.losses.CategoricalFocalCrossentropy(alpha, gamma)` on one-hot targets
    (probabilities renormalised and clipped to [eps, 1 - eps] as Keras does), which Keras offers
    for one-hot targets only. Pixels labelled `ignore_class` are not scored.
    """

    def __init__(self, alpha=0.25, gamma=2.0, *, ignore_class=BACKGROUND, name="focal", **kwargs):
        super().__init__(ignore_class=ignore_class, name=name, **kwargs)
        self.alpha, self.gamma = float(alpha), float(gamma)

    def call(self, labels, probs):
        p_true = _true_class_probability(labels, probs)
        return self.alpha * ops.power(1.0 - p_true, self.gamma) * -ops.log(p_true)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="helpers")
class SoftDiceLoss(_SegmentationLoss):
    """Per-image soft dice over `classes`: 1 - mean_c (2 I_c + s) / (P_c + G_c + s).

    I_c, P_c, G_c are sums over the image's scored pixels of p_c * [y = c], p_c and [y = c];
    pixels labelled `ignore_class` are left out of all three. The smoothing s (in pixels) makes a
    class absent from both truth and prediction score 1 (loss 0) instead of the 0/0 that makes
    Keras's unsmoothed `Dice` give loss 1 for it.
    """

    per_image = True

    def __init__(self, classes=LABELLED_CLASSES, smooth=1.0, *, ignore_class=BACKGROUND, name="dice", **kwargs):
        super().__init__(ignore_class=ignore_class, name=name, **kwargs)
        self.classes = _check_classes(classes, self.ignore_class)
        self.smooth = float(smooth)
        if not self.smooth > 0:
            raise ValueError(f"smooth={smooth} must be positive, or absent classes divide 0 by 0.")

    def call(self, labels, probs):
        valid = ops.expand_dims(_valid_pixels(labels, self.ignore_class), -1)
        truth = ops.take(ops.one_hot(labels, NUM_CLASSES), self.classes, axis=-1) * valid
        probs = ops.take(probs, self.classes, axis=-1) * valid
        intersection = ops.sum(probs * truth, axis=(1, 2))
        total = ops.sum(probs, axis=(1, 2)) + ops.sum(truth, axis=(1, 2))
        dice = (2.0 * intersection + self.smooth) / (total + self.smooth)
        return 1.0 - ops.mean(dice, axis=-1)

    def get_config(self):
        return {**super().get_config(), "classes": list(self.classes), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="helpers")
class ClassLimitLoss(_SegmentationLoss):
    """Per image: 1 - (sum of the `keep` largest class means of the softmax over all pixels).

    The report's domain prior that a map rarely shows more than two classes: it is 0 when the
    predicted mass sits on at most `keep` classes. Uses all pixels and all five classes, no labels
    (`ignore_class` is accepted for a uniform signature and unused).
    """

    per_image = True

    def __init__(self, keep=2, *, ignore_class=BACKGROUND, name="class_limit", **kwargs):
        super().__init__(ignore_class=ignore_class, name=name, **kwargs)
        self.keep = int(keep)
        if not 1 <= self.keep <= NUM_CLASSES:
            raise ValueError(f"keep={keep} must lie in 1..{NUM_CLASSES}.")

    def call(self, labels, probs):
        class_means = ops.mean(probs, axis=(1, 2))
        largest, _ = ops.top_k(class_means, k=self.keep)
        return 1.0 - ops.sum(largest, axis=-1)

    def get_config(self):
        return {**super().get_config(), "keep": self.keep}


def _dilate(x):
    """3x3 max filter (chessboard dilation), as a 1x3 then a 3x1 pooling: same result, fewer comparisons."""
    x = ops.max_pool(x, pool_size=(1, 3), strides=1, padding="same")
    return ops.max_pool(x, pool_size=(3, 1), strides=1, padding="same")


def signed_distance_maps(labels, classes=LABELLED_CLASSES, max_distance=16):
    """Truncated signed chessboard distance of each class region, computed in-graph: (B, H, W, C).

    For pixel q and class region G: outside G, the distance to G (1, 2, ...); inside G, minus
    (the distance to the nearest pixel outside G, minus 1), so the inner rim is 0. Both are
    truncated at `max_distance`; a class absent from the image is `max_distance` everywhere.
    Distances come from repeated 3x3 max-pooling (a growing region reaches a pixel at chessboard
    distance k after k poolings); the distance out of a region is the smallest distance to any
    other class, as the classes tile the image. The image border counts as neither inside nor
    outside -- the same numbers as `scipy.ndimage.distance_transform_cdt(metric="chessboard")`.
    """
    region = ops.one_hot(ops.cast(labels, "int32"), NUM_CLASSES)
    grown = region
    outside = ops.zeros_like(region)
    for step in range(max_distance):
        outside = outside + (1.0 - grown)
        if step < max_distance - 1:
            grown = _dilate(grown)
    inside = ops.min(outside + max_distance * region, axis=-1, keepdims=True)
    signed = outside - (inside - 1.0) * region
    return ops.stop_gradient(ops.take(signed, list(classes), axis=-1))


@keras.saving.register_keras_serializable(package="helpers")
class BoundaryLoss(_SegmentationLoss):
    """Distance-map boundary loss (Kervadec et al. 2019): mean_c phi_c(q) * p_c(q) / max_distance.

    phi_c is `signed_distance_maps` of the true labels (negative inside class c, positive
    outside), so the gradient w.r.t. p_c is phi_c / max_distance: it pushes p_c down in proportion
    to the distance outside the true region and up inside it, most strongly far from the boundary.
    The value lies in [-1, 1] and can be negative (its minimum is reached by a perfect map).
    Pixels labelled `ignore_class` are not scored, though they shape the distances of the others.
    The original's boundary loss had a zero gradient; this one does not.
    """

    def __init__(
        self, classes=LABELLED_CLASSES, max_distance=16, *, ignore_class=BACKGROUND, name="boundary", **kwargs
    ):
        super().__init__(ignore_class=ignore_class, name=name, **kwargs)
        self.classes = _check_classes(classes, self.ignore_class)
        self.max_distance = int(max_distance)
        if self.max_distance < 1:
            raise ValueError(f"max_distance={max_distance} must be at least 1.")

    def call(self, labels, probs):
        distances = signed_distance_maps(labels, self.classes, self.max_distance) / self.max_distance
        return ops.mean(distances * ops.take(probs, self.classes, axis=-1), axis=-1)

    def get_config(self):
        return {**super().get_config(), "classes": list(self.classes), "max_distance": self.max_distance}


@keras.saving.register_keras_serializable(package="helpers")
class LowPassLoss(_SegmentationLoss):
    """High-frequency energy of the probability maps: mean over pixels and classes of (p - blur(p))**2.

    blur is a `size` x `size` box filter (average pooling, border pixels averaged over the part of
    the window inside the image), so maps that are constant over every window cost 0 and
    isolated pixels or ragged class borders cost most. One value per image; labels are not used
    (`ignore_class` is accepted for a uniform signature and unused).
    """

    per_image = True

    def __init__(self, size=3, *, ignore_class=BACKGROUND, name="low_pass", **kwargs):
        super().__init__(ignore_class=ignore_class, name=name, **kwargs)
        self.size = int(size)
        if self.size < 2:
            raise ValueError(f"size={size} must be at least 2 for the blur to remove anything.")

    def call(self, labels, probs):
        blurred = ops.average_pool(probs, pool_size=self.size, strides=1, padding="same")
        return ops.mean(ops.square(probs - blurred), axis=(1, 2, 3))

    def get_config(self):
        return {**super().get_config(), "size": self.size}


TERMS = {
    "ce": SparseCrossEntropy,
    "focal": SparseFocalLoss,
    "dice": SoftDiceLoss,
    "class_limit": ClassLimitLoss,
    "boundary": BoundaryLoss,
    "low_pass": LowPassLoss,
}
"""The loss terms by name: the one place a term is declared. A new term is a `_SegmentationLoss` subclass (its
`per_image` says which kind it is) and one entry here; the names, the two kinds and `make_term` follow."""
TERM_NAMES = tuple(TERMS)
PIXEL_TERMS = tuple(name for name, term in TERMS.items() if not term.per_image)
IMAGE_TERMS = tuple(name for name, term in TERMS.items() if term.per_image)


def make_term(name: str, *, ignore_class=BACKGROUND, **options) -> keras.losses.Loss:
    """One named loss term, e.g. `make_term("dice", smooth=1.0)`."""
    if name not in TERMS:
        raise ValueError(f"unknown loss term {name!r}: valid names are {', '.join(TERM_NAMES)}.")
    return TERMS[name](ignore_class=ignore_class, **options)


def _check_weights(weights) -> dict[str, float]:
    if not isinstance(weights, dict) or not weights:
        raise ValueError(f"weights must be a non-empty dict of term name -> weight, got {weights!r}.")
    unknown = [name for name in weights if name not in TERM_NAMES]
    if unknown:
        raise ValueError(f"unknown loss term(s) {unknown}: valid names are {', '.join(TERM_NAMES)}.")
    checked = {name: float(value) for name, value in weights.items()}
    bad = {name: value for name, value in checked.items() if not (math.isfinite(value) and value >= 0)}
    if bad:
        raise ValueError(f"loss weights must be finite and >= 0, got {bad}.")
    return checked


@keras.saving.register_keras_serializable(package="helpers")
class CombinedLoss(keras.losses.Loss):
    """Weighted sum of named terms; the weights are non-trainable `keras.Variable`s.

    A callback may change them between steps with `set_term_weights`. On TensorFlow the compiled (also
    XLA-compiled) train step reads the variables, so it uses the new values without retracing; on JAX the
    step bakes them in when traced (they are not model state), so whoever changes them must have the step
    traced again (`helpers.model.callbacks.DynamicLossWeights` does).
    Pixel terms receive the per-pixel sample weights, image terms do not (module docstring).
    `options` holds keyword arguments per term, e.g. `{"boundary": {"max_distance": 8}}`.
    """

    def __init__(
        self,
        weights,
        *,
        ignore_class=BACKGROUND,
        options=None,
        name="combined_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        _check_reduction(reduction)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        weights = _check_weights(weights)
        self.options = {key: dict(value) for key, value in (options or {}).items()}
        unused = [key for key in self.options if key not in weights]
        if unused:
            raise ValueError(f"options given for term(s) {unused} that are not in weights {list(weights)}.")
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.terms = {
            name: make_term(name, ignore_class=self.ignore_class, **self.options.get(name, {})) for name in weights
        }
        self.weight_variables = {
            name: keras.Variable(value, trainable=False, dtype="float32", name=f"w_{name}")
            for name, value in weights.items()
        }

    @property
    def term_weights(self) -> dict[str, float]:
        """The current weight of each term: the shortest decimal that rounds to the stored float32."""
        return {name: float(str(ops.convert_to_numpy(variable))) for name, variable in self.weight_variables.items()}

    def set_term_weights(self, weights: dict) -> None:
        """Assign new weights to some or all terms (names must already be in the loss)."""
        weights = _check_weights(weights)
        missing = [name for name in weights if name not in self.weight_variables]
        if missing:
            raise ValueError(f"term(s) {missing} are not in this loss ({', '.join(self.weight_variables)}).")
        for name, value in weights.items():
            self.weight_variables[name].assign(value)

    def term_values(self, y_true, y_pred, sample_weight=None) -> dict:
        """Each term's unweighted value, with sample weights applied as in the sum."""
        pixel_weight, image_weight = _split_sample_weight(sample_weight)
        return {
            name: term(y_true, y_pred, sample_weight=pixel_weight if name in PIXEL_TERMS else image_weight)
            for name, term in self.terms.items()
        }

    def __call__(self, y_true, y_pred, sample_weight=None):
        with backend.name_scope(self.name):
            values = self.term_values(y_true, y_pred, sample_weight)
            return ops.sum(
                ops.stack([self.weight_variables[name] * ops.cast(value, "float32") for name, value in values.items()])
            )

    def get_config(self):
        return {
            **super().get_config(),
            "weights": self.term_weights,
            "ignore_class": self.ignore_class,
            "options": self.options,
        }


def combined_loss(weights: dict, **kwargs) -> CombinedLoss:
    """`CombinedLoss(weights, **kwargs)`, e.g. `combined_loss({"ce": 3.0, "dice": 1.0})` (the study's mixes are
    entries of `helpers.configs.experiments`, e.g. `FINAL_MIX`); unknown names raise ValueError."""
    return CombinedLoss(weights, **kwargs)


@keras.saving.register_keras_serializable(package="helpers")
class LossTermMean(keras.metrics.Mean):
    """Batch mean of one loss term's value (before its weight in the sum), as a compile metric: the history then
    logs every term of a `CombinedLoss` per epoch (`term_<name>`, `val_term_<name>`), where Keras logs only the
    weighted sum. Pass it as `weighted_metrics`, so it sees the sample (class) weights the loss sees."""

    def __init__(self, term: str, *, ignore_class=BACKGROUND, options=None, name=None, dtype=None):
        super().__init__(name=name or f"term_{term}", dtype=dtype)
        self.term, self.ignore_class, self.options = term, ignore_class, dict(options or {})
        self._loss = make_term(term, ignore_class=ignore_class, **self.options)

    def update_state(self, y_true, y_pred, sample_weight=None):
        pixel_weight, image_weight = _split_sample_weight(sample_weight)
        value = self._loss(y_true, y_pred, sample_weight=pixel_weight if self.term in PIXEL_TERMS else image_weight)
        return super().update_state(ops.cast(value, "float32"))

    def get_config(self):
        return {"term": self.term, "ignore_class": self.ignore_class, "options": self.options, "name": self.name,
                "dtype": self.dtype}


def term_metrics(loss: keras.losses.Loss) -> list[LossTermMean]:
    """One `LossTermMean` per term of a `CombinedLoss` of two or more terms (a single term is the logged loss)."""
    if not isinstance(loss, CombinedLoss) or len(loss.terms) < 2:
        return []
    return [LossTermMean(name, ignore_class=loss.ignore_class, options=loss.options.get(name)) for name in loss.terms]
