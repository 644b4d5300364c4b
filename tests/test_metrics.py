"""helpers.model.metrics against Keras's MeanIoU / IoU / accuracy and scikit-learn, on random and edge cases."""
import warnings

import keras
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import jaccard_score

from helpers.configs.constants import NUM_CLASSES
from helpers.model import metrics
from helpers.model.argmax import argmax_and_max, argmax_labels

LABELS = list(range(NUM_CLASSES))


def keras_miou(y_true, y_pred):
    metric = keras.metrics.MeanIoU(num_classes=5, ignore_class=0)
    metric.update_state(y_true, y_pred)
    return float(metric.result())


def keras_iou_1_4(y_true, y_pred):
    metric = keras.metrics.IoU(num_classes=5, target_class_ids=[1, 2, 3, 4])
    metric.update_state(y_true, y_pred)
    return float(metric.result())


def random_pair(seed, shape=(3, 8, 16), high=5):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, high, shape)
    y_pred = np.where(rng.random(shape) < 0.6, y_true, rng.integers(0, high, shape))
    return y_true, y_pred


def edge_cases():
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 4, (2, 8, 16))  # no big rock anywhere
    all_background = np.zeros((2, 8, 16), dtype=int)
    return {
        "random": random_pair(0),
        "perfect": (y_true, y_true.copy()),
        "class 4 absent": (y_true, np.where(rng.random(y_true.shape) < 0.7, y_true, rng.integers(0, 4, y_true.shape))),
        "all background truth": (all_background, rng.integers(0, 5, all_background.shape)),
        "all background both": (all_background, all_background.copy()),
        "predicts 0 on labels": (y_true, np.where(y_true > 0, 0, 1)),
    }


def test_confusion_matrix_matches_sklearn_with_and_without_ignored_class():
    y_true, y_pred = random_pair(1)
    np.testing.assert_array_equal(
        metrics.confusion_matrix(y_true, y_pred), sk_confusion_matrix(y_true.ravel(), y_pred.ravel(), labels=LABELS)
    )
    keep = y_true.ravel() != 0
    np.testing.assert_array_equal(
        metrics.confusion_matrix(y_true, y_pred, ignore_class=0),
        sk_confusion_matrix(y_true.ravel()[keep], y_pred.ravel()[keep], labels=LABELS),
    )


@pytest.mark.parametrize("case", list(edge_cases()))
def test_competition_miou_equals_keras_meaniou_ignore_class_0(case):
    y_true, y_pred = edge_cases()[case]
    assert metrics.competition_miou(y_true, y_pred) == pytest.approx(keras_miou(y_true, y_pred), abs=1e-6)


@pytest.mark.parametrize("case", list(edge_cases()))
def test_miou_1_4_equals_keras_iou_on_classes_1_to_4(case):
    y_true, y_pred = edge_cases()[case]
    assert metrics.miou_1_4(y_true, y_pred) == pytest.approx(keras_iou_1_4(y_true, y_pred), abs=1e-6)


def test_edge_case_values_by_hand():
    cases = edge_cases()
    assert metrics.competition_miou(*cases["perfect"]) == 1.0
    assert metrics.miou_1_4(*cases["perfect"]) == 1.0
    assert metrics.competition_miou(*cases["all background both"]) == 0.0  # nothing to score: Keras's 0
    # predicting 0 on every labelled pixel: classes 0..3 have TP = 0, so every IoU is 0
    assert metrics.competition_miou(*cases["predicts 0 on labels"]) == 0.0
    y_true = np.array([[0, 1, 1, 2]])
    y_pred = np.array([[2, 1, 0, 2]])  # class 0 enters with IoU 0; the background pixel is dropped
    assert metrics.competition_miou(y_true, y_pred) == pytest.approx((0 + 1 / 2 + 1) / 3)


def test_miou_1_4_equals_sklearn_jaccard_macro_when_all_classes_occur():
    y_true, y_pred = random_pair(2)
    expected = jaccard_score(y_true.ravel(), y_pred.ravel(), labels=[1, 2, 3, 4], average="macro")
    assert metrics.miou_1_4(y_true, y_pred) == pytest.approx(expected)


def test_absent_class_is_left_out_where_sklearn_counts_it_as_zero():
    y_true, y_pred = edge_cases()["class 4 absent"]
    present = jaccard_score(y_true.ravel(), y_pred.ravel(), labels=[1, 2, 3], average="macro")
    assert metrics.miou_1_4(y_true, y_pred) == pytest.approx(present)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sklearn_default = jaccard_score(y_true.ravel(), y_pred.ravel(), labels=[1, 2, 3, 4], average="macro")
    assert sklearn_default == pytest.approx(present * 3 / 4)


def test_per_class_iou_matches_sklearn_and_marks_absent_classes_nan():
    y_true, y_pred = edge_cases()["class 4 absent"]
    ious = metrics.per_class_iou(y_true, y_pred)
    expected = jaccard_score(y_true.ravel(), y_pred.ravel(), labels=[0, 1, 2, 3], average=None)
    np.testing.assert_allclose(ious[:4], expected)
    assert np.isnan(ious[4])


@pytest.mark.parametrize("case", list(edge_cases()))
def test_scores_agree_with_the_single_functions(case):
    y_true, y_pred = edge_cases()[case]
    result = metrics.scores(y_true, y_pred)
    assert result["competition_miou"] == metrics.competition_miou(y_true, y_pred)
    assert result["miou_1_4"] == metrics.miou_1_4(y_true, y_pred)
    ious = metrics.per_class_iou(y_true, y_pred)
    assert list(result["per_class_iou"].values()) == [None if np.isnan(v) else v for v in ious]


def test_training_metrics_on_softmax_outputs_equal_numpy_scores():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 5, (2, 8, 16))
    probs = rng.dirichlet(np.ones(5), size=y_true.shape).astype("float32")
    y_pred = probs.argmax(-1)
    results = {}
    for metric in metrics.training_metrics():
        metric.update_state(y_true, probs)
        results[metric.name] = float(metric.result())
    assert results["competition_miou"] == pytest.approx(metrics.competition_miou(y_true, y_pred), abs=1e-6)
    assert results["miou_1_4"] == pytest.approx(metrics.miou_1_4(y_true, y_pred), abs=1e-6)
    assert results["accuracy"] == pytest.approx(np.mean(y_true == y_pred), abs=1e-6)


def test_full_test_set_size_counts_every_pixel():
    n_images = 10022
    image_class = np.arange(n_images) % 5
    y_true = np.broadcast_to(image_class[:, None, None], (n_images, 64, 128)).astype(np.uint8)
    y_pred = np.broadcast_to(((2 * image_class) % 5)[:, None, None], (n_images, 64, 128)).astype(np.uint8)
    expected = np.zeros((5, 5), dtype=np.int64)
    np.add.at(expected, (image_class, (2 * image_class) % 5), 64 * 128)
    np.testing.assert_array_equal(metrics.confusion_matrix(y_true, y_pred), expected)


@pytest.mark.parametrize(
    "y_true, y_pred, message",
    [
        (np.zeros((2, 4), int), np.zeros((2, 4, 5), int), "argmax"),
        (np.zeros((2, 4)), np.zeros((2, 4), int), "dtype"),
        (np.full((2, 4), 5), np.zeros((2, 4), int), "0..4"),
        (np.zeros((2, 4), int), np.full((2, 4), -1), "0..4"),
    ],
)
def test_bad_inputs_raise_value_error(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        metrics.competition_miou(y_true, y_pred)


def test_best_constant_score_by_hand_and_against_constant_predictions():
    # labelled pixels: soil 3, bedrock 1 (background is ignored). Constant soil: IoU_soil = 3/4, IoU_bedrock = 0
    # -> 0.375; constant bedrock: 1/4 and 0 -> 0.125; constant sand: 0, 0, 0 -> 0; constant background: 0.
    y = np.array([[[0, 1, 1, 1, 2, 0]]])
    best = metrics.best_constant_score(y)
    assert best["class_id"] == 1 and best["score"] == pytest.approx(0.375)
    assert best["per_class"] == pytest.approx([0.0, 0.375, 0.125, 0.0, 0.0])
    y_true, _ = random_pair(4, shape=(4, 64, 128))
    best = metrics.best_constant_score(y_true)
    expected = [metrics.competition_miou(y_true, np.full_like(y_true, c)) for c in range(NUM_CLASSES)]
    assert best["per_class"] == pytest.approx(expected, abs=1e-12)
    assert best["score"] == max(expected) and best["class_id"] == int(np.argmax(expected))
    assert metrics.best_constant_score(np.zeros((2, 4, 4), dtype=int))["score"] == 0.0  # nothing labelled


def test_best_constant_score_equals_keras_meaniou_of_the_constant():
    y_true, _ = random_pair(5, high=4)  # big rock absent
    best = metrics.best_constant_score(y_true)
    assert best["score"] == pytest.approx(keras_miou(y_true, np.full_like(y_true, best["class_id"])), abs=1e-6)


def test_miou_fg_by_hand_and_unmoved_by_the_background_convention():
    # Labelled pixels: 2 soil, 2 bedrock; 4 background pixels never count.
    y_true = np.array([[1, 1, 2, 2, 0, 0, 0, 0]])
    probs = np.zeros((1, 8, 5))
    probs[0, :, 0] = 0.9  # background is every pixel's argmax ...
    probs[0, [0, 1, 2], 1] = 0.1  # ... but soil leads the foreground on 3 pixels, bedrock on the rest
    probs[0, [3, 4, 5, 6, 7], 2] = 0.1
    foreground = metrics.foreground_labels(probs)
    np.testing.assert_array_equal(foreground, [[1, 1, 1, 2, 2, 2, 2, 2]])
    # soil: TP 2, FP 1 (a bedrock pixel) -> 2/3; bedrock: TP 1, FN 1 -> 1/2 (background pixels dropped).
    assert metrics.miou_fg(y_true, foreground) == pytest.approx((2 / 3 + 1 / 2) / 2)
    # The starter-kit metric of the plain argmax (all background) is 0, and x5/4 of the 4-class mean appears as
    # soon as a model stops predicting 0 on labelled pixels: the artefact the primary score removes.
    assert metrics.competition_miou(y_true, probs.argmax(-1)) == 0.0
    with pytest.raises(ValueError, match="foreground argmax"):
        metrics.miou_fg(y_true, probs.argmax(-1))


@pytest.mark.parametrize("seed", [0, 1])
def test_foreground_keras_metric_equals_the_numpy_score(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 5, (3, 8, 16))
    probs = rng.dirichlet(np.ones(5), size=(3, 8, 16)).astype("float32")
    metric = metrics.ForegroundMeanIoU()
    metric.update_state(y_true, probs)
    expected = metrics.miou_fg(y_true, metrics.foreground_labels(probs))
    assert float(metric.result()) == pytest.approx(expected, rel=1e-5)
    assert metrics.ForegroundMeanIoU.from_config(metric.get_config()).name == metrics.PRIMARY
    saved_before = {"name": "miou_fg", "dtype": "float32", "num_classes": 5, "ignore_class": 0,
                    "sparse_y_true": True, "sparse_y_pred": True, "axis": -1}  # its MeanIoU config until 2026-12-05
    assert metrics.ForegroundMeanIoU.from_config(saved_before).get_config() == metric.get_config()


def _tied_probabilities(rng, shape):
    """Probabilities on a coarse grid (many exact ties between classes), the case where argmax order matters."""
    return (rng.integers(0, 4, (*shape, 5)) / 4.0).astype("float32")


@pytest.mark.parametrize("start", [0, 1])
def test_argmax_by_comparisons_equals_numpy_argmax_with_ties(start):
    rng = np.random.default_rng(start)
    probs = _tied_probabilities(rng, (4, 8, 16))
    labels, best = argmax_and_max(probs, start=start)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(labels), probs[..., start:].argmax(-1) + start)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(best), probs[..., start:].max(-1))
    assert keras.ops.convert_to_numpy(argmax_labels(probs, start)).dtype == np.int32
    with pytest.raises(ValueError, match="outside the 5 classes"):
        argmax_labels(probs, start=5)


def test_training_metrics_equal_keras_stock_metrics_with_ties():
    """The metrics fed `helpers.model.argmax` class ids give Keras's own metrics' values (which argmax inside)."""
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 5, (3, 8, 16))
    probs = _tied_probabilities(rng, (3, 8, 16))
    stock = {"competition_miou": keras.metrics.MeanIoU(5, ignore_class=0, sparse_y_pred=False),
             "miou_1_4": keras.metrics.IoU(5, [1, 2, 3, 4], sparse_y_pred=False),
             "accuracy": keras.metrics.SparseCategoricalAccuracy()}
    ours = {metric.name: metric for metric in metrics.training_metrics()}
    for name, reference in stock.items():
        reference.update_state(y_true, probs)
        ours[name].update_state(y_true, probs)
        assert float(ours[name].result()) == pytest.approx(float(reference.result()), abs=1e-7), name
        assert type(ours[name]).from_config(ours[name].get_config()).name == name
