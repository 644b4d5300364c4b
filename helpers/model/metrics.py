"""Segmentation scores: Keras metrics for training and numpy functions for the same quantities.

Four scores are reported, each under its own name (docs/study.md, "The metric and the submission"):

- `miou_fg`, the study's PRIMARY score (`PRIMARY`): the starter-kit metric after a foreground argmax, i.e.
  mean IoU over classes 1-4 on labelled pixels (true label != 0), the prediction being the argmax over
  classes 1-4 only. No model can move it by how it treats background: the starter-kit metric below averages
  over 5 classes as soon as one labelled pixel is predicted 0 and over 4 otherwise, which pays x5/4 to a
  model that never predicts 0 (docs/study.md). Rows are ranked, flagged and compared on this score.
- `competition_miou`: the course starter kit's `keras.metrics.MeanIoU(5, ignore_class=0)`. Pixels
  whose *true* label is 0 are dropped; the mean runs over every class with TP+FP+FN > 0, so
  predicting 0 on a labelled pixel brings class 0 into the mean with IoU 0.
- `miou_1_4`: mean IoU over classes 1-4 on all pixels (`keras.metrics.IoU(5, [1, 2, 3, 4])`).
- `per_class_iou`: the five IoUs behind both means. `scores` returns all three as a JSON-ready dict.
- `best_constant_score`: the best `competition_miou` of a model that predicts one class everywhere, the
  floor a trained model has to beat to have learned anything.

Absent classes: a class with TP+FP+FN = 0 (in neither truth nor prediction) is left out of the
mean, as Keras does. scikit-learn's `jaccard_score(labels=[1, 2, 3, 4], average="macro")` instead
counts such a class as 0 (with a warning); the two agree whenever every class 1-4 occurs in the
truth or the prediction, which is always the case on a full test set. When no class at all is
left to score (e.g. only background pixels under `competition_miou`), the mean is 0.0, Keras's
value; score a whole set at once, not image by image, to avoid that case.

The numpy functions take integer label arrays of any matching shape (argmax probabilities
first) and count with `np.bincount` in chunks, so 10k x 64 x 128 pixels fit in little memory.
The Keras metrics are unweighted when passed through `compile(metrics=...)`: per-pixel class
weights reach the loss only, never the scores.
"""
import keras
import numpy as np

from helpers.configs.constants import BACKGROUND, CLASS_NAMES, LABELLED_CLASSES, MONITOR, NUM_CLASSES, PRIMARY  # noqa: F401
from helpers.model.argmax import argmax_labels

_CHUNK = 1 << 23  # pixels counted per bincount call


def _check_labels(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape: pass integer label "
            "maps of the same shape (take y_pred.argmax(-1) of probabilities first)."
        )
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
            raise ValueError(f"{name} has dtype {labels.dtype}: pass integer class ids (e.g. .astype(np.int64)).")
        if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise ValueError(
                f"{name} holds values in [{labels.min()}, {labels.max()}]: class ids must lie in 0..{NUM_CLASSES - 1}."
            )
    return y_true.ravel(), y_pred.ravel()


def confusion_matrix(y_true, y_pred, *, ignore_class: int | None = None) -> np.ndarray:
    """Pixel confusion matrix (NUM_CLASSES, NUM_CLASSES), rows = true class, columns = predicted.

    Same layout as `sklearn.metrics.confusion_matrix(labels=range(5))`. With `ignore_class`,
    pixels whose true label equals it are dropped first (Keras's `ignore_class`).
    """
    y_true, y_pred = _check_labels(y_true, y_pred)
    counts = np.zeros(NUM_CLASSES * NUM_CLASSES, dtype=np.int64)
    for start in range(0, y_true.size, _CHUNK):
        true, predicted = y_true[start:start + _CHUNK], y_pred[start:start + _CHUNK]
        if ignore_class is not None:
            keep = true != ignore_class
            true, predicted = true[keep], predicted[keep]
        index = true.astype(np.uint16) * NUM_CLASSES + predicted.astype(np.uint16)  # 16 bits: 2x faster than int64
        counts += np.bincount(index, minlength=NUM_CLASSES * NUM_CLASSES)
    return counts.reshape(NUM_CLASSES, NUM_CLASSES)


def iou_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU TP / (TP + FP + FN) from a confusion matrix; NaN where TP+FP+FN = 0."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    denominator = cm.sum(axis=0) + cm.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, tp / denominator, np.nan)


def per_class_iou(y_true, y_pred, *, ignore_class: int | None = None) -> np.ndarray:
    """IoU of each of the five classes (NaN for a class in neither truth nor prediction)."""
    return iou_from_confusion(confusion_matrix(y_true, y_pred, ignore_class=ignore_class))


def _mean_present(ious: np.ndarray) -> float:
    present = ious[~np.isnan(ious)]
    return float(present.mean()) if present.size else 0.0


def competition_miou(y_true, y_pred) -> float:
    """Starter-kit score: `keras.metrics.MeanIoU(num_classes=5, ignore_class=0)` on label maps."""
    return _mean_present(per_class_iou(y_true, y_pred, ignore_class=BACKGROUND))


def miou_1_4(y_true, y_pred) -> float:
    """Mean IoU over classes 1-4 on all pixels, absent classes left out (see module docstring)."""
    return _mean_present(per_class_iou(y_true, y_pred)[list(LABELLED_CLASSES)])


def best_constant_score(y_true) -> dict:
    """Best `competition_miou` of predicting one class everywhere on the label maps `y_true`.

    {"score": float, "class_id": int (the best constant; lowest id on ties), "per_class": [score of the
    constant 0, 1, 2, 3, 4]}. Exact, from the class counts: predicting c gives IoU_c = n_c / n_labelled
    and 0 for every other labelled class present.
    """
    counts = np.diag(confusion_matrix(y_true, y_true))  # pixels per true class, counted in chunks
    per_class = []
    for c in range(NUM_CLASSES):
        cm = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
        cm[:, c] = counts
        cm[BACKGROUND] = 0  # the metric drops pixels whose true label is background
        per_class.append(_mean_present(iou_from_confusion(cm)))
    best = int(np.argmax(per_class))
    return {"score": per_class[best], "class_id": best, "per_class": per_class}


def scores(y_true, y_pred) -> dict:
    """The reported scores as a JSON-ready dict, from one pass over the pixels.

    {"competition_miou": float, "miou_1_4": float, "per_class_iou": {class name: IoU on all pixels,
    None for a class in neither truth nor prediction}, "confusion_matrix": 5×5 nested list of pixel counts
    (rows = true class)}. Dropping the pixels whose true label is 0
    is the same as zeroing row 0 of the confusion matrix.
    """
    cm = confusion_matrix(y_true, y_pred)
    labelled_only = cm.copy()
    labelled_only[BACKGROUND] = 0
    ious = iou_from_confusion(cm)
    return {
        "competition_miou": _mean_present(iou_from_confusion(labelled_only)),
        "miou_1_4": _mean_present(ious[list(LABELLED_CLASSES)]),
        "per_class_iou": {name: None if np.isnan(iou) else float(iou) for name, iou in zip(CLASS_NAMES, ious)},
        "confusion_matrix": cm.tolist(),
    }


def foreground_labels(probabilities) -> np.ndarray:
    """Argmax over classes 1-4 only (never 0) of probabilities (..., 5), as uint8 class ids."""
    return (np.argmax(np.asarray(probabilities)[..., 1:], axis=-1) + 1).astype(np.uint8)


def miou_fg(y_true, y_pred_foreground) -> float:
    """The primary score: `competition_miou` of a foreground-argmax prediction (no predicted 0 allowed)."""
    y_pred_foreground = np.asarray(y_pred_foreground)
    if y_pred_foreground.size and y_pred_foreground.min() == BACKGROUND:
        raise ValueError("miou_fg takes a foreground argmax (classes 1-4 only): predictions hold class 0; "
                         "decode with classes='foreground'")
    return competition_miou(y_true, y_pred_foreground)


@keras.saving.register_keras_serializable(package="helpers")
class ConfusionIoU(keras.metrics.Metric):
    """Mean IoU of softmax outputs (..., 5) from one 5 × 5 confusion matrix, as Keras's `MeanIoU` and `IoU` give
    it: classes with TP+FP+FN = 0 left out of the mean, 0.0 when none is left.

    Written by hand for speed, not for a different number: Keras's generic update (bounds and ignore masks, a
    scatter, its own argmax) costs ~9.5 ms a batch of 32 × 64 × 128 pixels on one CPU core, three such metrics
    ~8 % of a Baseline training step; here the class ids come from `helpers.model.argmax` and the pairs are counted
    by `segment_sum` (~1.5 ms; docs/performance.md, 2026-12-05). tests/test_metrics.py holds it to Keras's
    metrics. Counts are int32, exact (Keras accumulates float32), for the ≤ 2^31 pixels of an epoch.

    start: 0, argmax over all classes; 1, over classes 1-4 only (the foreground argmax, never 0).
    ignore_background: drop the pixels whose true label is 0 (Keras's `ignore_class=0`). classes: the classes
    averaged. Unweighted (training metrics never see class weights): a sample_weight is refused.
    """

    def __init__(self, name: str = "confusion_iou", start: int = 0, ignore_background: bool = True,
                 classes=tuple(range(NUM_CLASSES)), **kwargs):
        super().__init__(name=name, **kwargs)
        self.start, self.ignore_background, self.classes = int(start), bool(ignore_background), tuple(classes)
        self.counts = self.add_variable(shape=(NUM_CLASSES * NUM_CLASSES,), initializer="zeros", dtype="int32",
                                        name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(f"{self.name} counts pixels unweighted: pass it in compile(metrics=...), "
                             "not weighted_metrics")
        truth = keras.ops.reshape(keras.ops.cast(y_true, "int32"), [-1])
        labels = keras.ops.reshape(argmax_labels(y_pred, start=self.start), [-1])
        kept = (truth >= 0) & (truth < NUM_CLASSES)
        if self.ignore_background:
            kept = kept & (truth != BACKGROUND)
        pairs = keras.ops.where(kept, truth * NUM_CLASSES + labels, NUM_CLASSES * NUM_CLASSES)  # dropped: last bin
        counted = keras.ops.segment_sum(keras.ops.ones_like(pairs), pairs, num_segments=NUM_CLASSES ** 2 + 1)
        self.counts.assign_add(counted[:NUM_CLASSES ** 2])

    def result(self):
        matrix = keras.ops.reshape(keras.ops.cast(self.counts, "float32"), (NUM_CLASSES, NUM_CLASSES))
        hits = keras.ops.diagonal(matrix)
        union = keras.ops.sum(matrix, axis=0) + keras.ops.sum(matrix, axis=1) - hits
        hits, union = (keras.ops.take(values, list(self.classes)) for values in (hits, union))
        present = keras.ops.sum(keras.ops.cast(union > 0, "float32"))
        return keras.ops.divide_no_nan(keras.ops.sum(keras.ops.divide_no_nan(hits, union)), present)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "ignore_background": self.ignore_background,
                "classes": list(self.classes)}


@keras.saving.register_keras_serializable(package="helpers")
class ForegroundMeanIoU(ConfusionIoU):
    """`miou_fg`, the primary score, as a Keras metric: `MeanIoU(5, ignore_class=0)` on the argmax over classes
    1-4 of softmax outputs (Keras has no foreground argmax)."""

    def __init__(self, name: str = PRIMARY, **kwargs):
        # fixed here; the MeanIoU keys are those of models saved before 2026-12-05, when this subclassed MeanIoU
        for fixed in ("start", "ignore_background", "classes", "num_classes", "ignore_class", "sparse_y_true",
                      "sparse_y_pred", "axis"):
            kwargs.pop(fixed, None)
        super().__init__(name=name, start=1, **kwargs)


@keras.saving.register_keras_serializable(package="helpers")
class PixelAccuracy(keras.metrics.Accuracy):
    """`accuracy`: the share of pixels (background included) whose argmax is the true class, as Keras's
    `SparseCategoricalAccuracy` gives it, with the argmax of `helpers.model.argmax` (a tenth of its CPU cost)."""

    def __init__(self, name: str = "accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(keras.ops.cast(y_true, "int32"), argmax_labels(y_pred), sample_weight)


def training_metrics() -> list[keras.metrics.Metric]:
    """Fresh Keras metrics for `compile(metrics=...)`, named like the numpy functions above.

    `miou_fg` (the primary score, monitored: `MONITOR`), `competition_miou`, `miou_1_4` (on softmax outputs)
    and pixel `accuracy` (all pixels, background included). Validation logs read `val_miou_fg` etc.
    """
    return [ForegroundMeanIoU(), ConfusionIoU("competition_miou"),
            ConfusionIoU("miou_1_4", ignore_background=False, classes=LABELLED_CLASSES), PixelAccuracy()]
