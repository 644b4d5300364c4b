"""helpers.model.losses against Keras built-ins, scikit-learn, SciPy and numpy hand computations on tiny arrays."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import distance_transform_cdt
from sklearn.utils.class_weight import compute_class_weight

from helpers.configs.experiments import FINAL_MIX
from helpers.model import losses
from helpers.model.losses import TERM_NAMES, combined_loss


def batch(seed=0, shape=(2, 6, 8)):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 5, shape)
    probs = rng.dirichlet(np.ones(5), size=shape).astype("float32")
    return y_true, probs


def one_hot(y_true):
    return np.eye(5, dtype="float32")[y_true]


def test_class_weights_match_sklearn_balanced_and_cap():
    masks = np.random.default_rng(0).choice(5, size=(4, 8, 16), p=[0.3, 0.3, 0.2, 0.18, 0.02])
    expected = compute_class_weight("balanced", classes=np.arange(5), y=masks.ravel())
    np.testing.assert_allclose(losses.class_weights_from_masks(masks), expected, rtol=1e-6)
    np.testing.assert_allclose(losses.class_weights_from_masks(masks, cap=2.0), np.minimum(expected, 2.0), rtol=1e-6)
    np.testing.assert_allclose(losses.class_weights_from_masks(masks.astype(np.float64)), expected, rtol=1e-6)


def test_class_weights_reject_absent_class_and_bad_cap():
    with pytest.raises(ValueError, match=r"classes \[4\]"):
        losses.class_weights_from_masks(np.array([[0, 1, 2, 3]]))
    with pytest.raises(ValueError, match="cap"):
        losses.class_weights_from_masks(np.arange(5), cap=0)


def test_capped_class_weights_give_an_absent_class_the_cap():
    masks = np.array([[0, 0, 1, 2, 3, 3, 3, 3]])  # 8 pixels, no big rock
    expected = [8 / (5 * 2), 8 / 5, 8 / 5, 8 / (5 * 4), 7.0]
    np.testing.assert_allclose(losses.class_weights_from_masks(masks, cap=7.0), expected, rtol=1e-6)


def test_ce_weights_pixels_not_batches_by_hand():
    y_true, probs = batch(1)
    weights = losses.class_weights_from_masks(np.arange(5).repeat([1, 1, 2, 4, 1]))  # arbitrary, unequal
    pixel_weight = weights[y_true]
    value = float(losses.make_term("ce")(y_true, probs, sample_weight=pixel_weight))
    labelled = y_true != 0
    per_pixel = -np.log(np.take_along_axis(probs, y_true[..., None], -1)[..., 0])
    by_hand = np.sum(pixel_weight[labelled] * per_pixel[labelled]) / labelled.sum()  # Keras: divide by pixel count
    assert value == pytest.approx(by_hand, rel=1e-5)
    by_weight_sum = np.sum(pixel_weight[labelled] * per_pixel[labelled]) / pixel_weight[labelled].sum()
    per_image_mean = np.mean([per_pixel[b][labelled[b]].mean() * pixel_weight[b][labelled[b]].mean() for b in range(2)])
    assert abs(value - by_weight_sum) > 1e-3 and abs(value - per_image_mean) > 1e-3


@pytest.mark.parametrize("ignore_class", [None, 0])
def test_ce_equals_keras_sparse_categorical_crossentropy(ignore_class):
    y_true, probs = batch(4)
    pixel_weight = np.random.default_rng(1).random(y_true.shape).astype("float32")
    reference = keras.losses.SparseCategoricalCrossentropy(ignore_class=ignore_class)
    ours = losses.make_term("ce", ignore_class=ignore_class)
    assert float(ours(y_true, probs)) == pytest.approx(float(reference(y_true, probs)), rel=1e-5)
    assert float(ours(y_true, probs, pixel_weight)) == pytest.approx(
        float(reference(y_true, probs, pixel_weight)), rel=1e-5)


def test_focal_equals_keras_categorical_focal_on_one_hot():
    y_true, probs = batch(2)
    reference = keras.losses.CategoricalFocalCrossentropy(alpha=0.25, gamma=2.0)
    ours = losses.SparseFocalLoss(ignore_class=None)
    assert float(ours(y_true, probs)) == pytest.approx(float(reference(one_hot(y_true), probs)), rel=1e-5)
    pixel_weight = np.random.default_rng(0).random(y_true.shape).astype("float32")
    assert float(ours(y_true, probs, pixel_weight)) == pytest.approx(
        float(reference(one_hot(y_true), probs, pixel_weight)), rel=1e-5
    )


def test_focal_ignoring_background_averages_over_labelled_pixels():
    y_true, probs = batch(3)
    labelled = (y_true != 0).astype("float32")
    keras_sum = float(keras.losses.CategoricalFocalCrossentropy(reduction="sum")(one_hot(y_true), probs, labelled))
    assert float(losses.SparseFocalLoss()(y_true, probs)) == pytest.approx(keras_sum / labelled.sum(), rel=1e-5)


def test_one_registry_declares_every_term_and_its_kind():
    assert TERM_NAMES == ("ce", "focal", "dice", "class_limit", "boundary", "low_pass") == tuple(losses.TERMS)
    assert losses.PIXEL_TERMS == ("ce", "focal", "boundary")
    assert losses.IMAGE_TERMS == ("dice", "class_limit", "low_pass")
    for name, term_class in losses.TERMS.items():
        term = losses.make_term(name)
        assert type(term) is term_class and term.name == name and term.per_image == (name in losses.IMAGE_TERMS)
        assert keras.saving.get_registered_object(keras.saving.get_registered_name(term_class)) is term_class


@pytest.mark.parametrize("name", TERM_NAMES)
def test_every_term_accepts_trailing_channel_labels(name):
    y_true, probs = batch(4)
    term = losses.make_term(name)
    assert float(term(y_true[..., None], probs)) == pytest.approx(float(term(y_true, probs)), rel=1e-6)


def dice_by_hand(y_true, probs, smooth=1.0):
    values = []
    for b in range(len(y_true)):
        labelled = y_true[b] != 0
        scores = []
        for c in (1, 2, 3, 4):
            p = probs[b][..., c][labelled]
            g = (y_true[b] == c)[labelled]
            scores.append((2 * np.sum(p * g) + smooth) / (np.sum(p) + np.sum(g) + smooth))
        values.append(1 - np.mean(scores))
    return np.mean(values)


def test_dice_matches_hand_computation_and_ignores_pixel_weights():
    y_true, probs = batch(5)
    dice = losses.SoftDiceLoss()
    assert float(dice(y_true, probs)) == pytest.approx(dice_by_hand(y_true, probs), rel=1e-5)
    pixel_weight = np.random.default_rng(1).random(y_true.shape).astype("float32") * 10
    assert float(dice(y_true, probs, pixel_weight)) == pytest.approx(float(dice(y_true, probs)), rel=1e-6)
    image_weight = np.array([2.0, 0.0], dtype="float32")
    assert float(dice(y_true, probs, image_weight)) == pytest.approx(
        float(dice(y_true[:1], probs[:1])), rel=1e-5  # (2 * l_0 + 0 * l_1) / 2
    )


def test_dice_of_perfect_map_is_zero_even_with_absent_classes():
    y_true = np.ones((1, 6, 8), dtype=int)  # soil only: bedrock, sand, big rock absent
    y_true[0, :2] = 0
    assert float(losses.SoftDiceLoss()(y_true, one_hot(y_true))) == pytest.approx(0.0, abs=1e-6)
    unsmoothed = keras.losses.Dice(axis=(1, 2))(one_hot(y_true)[..., 1:], one_hot(y_true)[..., 1:])
    assert float(unsmoothed) > 0.5  # Keras's Dice gives the absent classes loss 1


def test_class_limit_by_hand_and_zero_on_two_classes():
    y_true, probs = batch(6)
    class_means = probs.mean(axis=(1, 2))
    by_hand = np.mean(1 - np.sort(class_means, axis=-1)[:, -2:].sum(-1))
    assert float(losses.ClassLimitLoss()(y_true, probs)) == pytest.approx(by_hand, rel=1e-5)
    two_classes = np.zeros_like(probs)
    two_classes[..., 1], two_classes[..., 3] = 0.3, 0.7
    assert float(losses.ClassLimitLoss()(y_true, two_classes)) == pytest.approx(0.0, abs=1e-6)
    probs_tensor = tf.constant(probs)
    with tf.GradientTape() as tape:
        tape.watch(probs_tensor)
        value = losses.ClassLimitLoss()(y_true, probs_tensor)
    gradient = tape.gradient(value, probs_tensor).numpy()
    top_two = np.argsort(class_means, axis=-1)[:, -2:]
    expected = np.zeros_like(probs)
    for b in range(len(probs)):
        expected[b][..., top_two[b]] = -1 / (len(probs) * probs[b].shape[0] * probs[b].shape[1])
    np.testing.assert_allclose(gradient, expected, rtol=1e-5)


def scipy_signed_distance(region, max_distance):
    if not region.any():
        return np.full(region.shape, max_distance)
    outside = np.minimum(distance_transform_cdt(~region, metric="chessboard"), max_distance)
    if region.all():  # scipy marks "no pixel outside" with -1
        return np.full(region.shape, -(max_distance - 1))
    inside = np.minimum(distance_transform_cdt(region, metric="chessboard"), max_distance)
    return np.where(region, -(inside - 1), outside)


def test_signed_distance_maps_match_scipy_chessboard_transform():
    y_true = np.zeros((3, 12, 20), dtype=int)
    y_true[0, 2:9, 3:15] = 2
    y_true[0, 5:7, 16:19] = 4
    y_true[1, :, 10:] = 1
    y_true[1, 4:8, 2:6] = 3
    y_true[2] = 3  # one class fills the image
    distances = losses.signed_distance_maps(y_true, max_distance=5).numpy()
    for b in range(3):
        for i, c in enumerate((1, 2, 3, 4)):
            np.testing.assert_array_equal(distances[b, ..., i], scipy_signed_distance(y_true[b] == c, 5))


def test_boundary_gradient_is_nonzero_and_points_towards_the_truth():
    y_true = np.ones((1, 12, 20), dtype=int)
    y_true[0, 3:10, 5:15] = 2
    logits = tf.Variable(np.zeros((1, 12, 20, 5), dtype="float32"))
    boundary = losses.BoundaryLoss(max_distance=8)
    with tf.GradientTape(persistent=True) as tape:
        probs = tf.nn.softmax(logits)
        value = boundary(y_true, probs)
    grad_probs = tape.gradient(value, probs).numpy()[0]
    assert np.abs(grad_probs).max() > 0
    assert grad_probs[6, 10, 2] < 0  # deep inside bedrock: raise p(bedrock)
    assert grad_probs[0, 0, 2] > 0  # far outside bedrock: lower it
    assert grad_probs[6, 10, 1] > 0 and grad_probs[0, 0, 1] < 0
    before = float(value)
    logits.assign_sub(50.0 * tape.gradient(value, logits))
    probs_after = tf.nn.softmax(logits).numpy()[0]
    assert float(boundary(y_true, probs_after[None])) < before
    assert probs_after[6, 10, 2] > 0.2 > probs_after[0, 0, 2]


def blur_by_hand(probs, size=3):
    half = size // 2
    padded = np.pad(probs, ((0, 0), (half, half), (half, half), (0, 0)), constant_values=np.nan)
    windows = sliding_window_view(padded, (size, size), axis=(1, 2))
    return np.nanmean(windows, axis=(-2, -1))


def test_low_pass_matches_blur_by_hand_and_is_zero_on_constant_maps():
    y_true, probs = batch(7)
    by_hand = np.mean((probs - blur_by_hand(probs)) ** 2)
    assert float(losses.LowPassLoss()(y_true, probs)) == pytest.approx(by_hand, rel=1e-5)
    constant = np.broadcast_to(probs[:, :1, :1], probs.shape)
    assert float(losses.LowPassLoss()(y_true, constant)) == pytest.approx(0.0, abs=1e-7)


def test_combined_loss_is_weighted_sum_with_pixel_weights_on_pixel_terms_only():
    y_true, probs = batch(8)
    pixel_weight = losses.class_weights_from_masks(np.arange(5).repeat([3, 1, 2, 1, 1]))[y_true]
    weights = dict(zip(TERM_NAMES, (3.0, 0.1, 1.0, 0.1, 0.1, 0.5)))
    loss = combined_loss(weights)
    expected = 0.0
    for name in TERM_NAMES:
        sample_weight = pixel_weight if name in losses.PIXEL_TERMS else None
        expected += weights[name] * float(losses.make_term(name)(y_true, probs, sample_weight))
    assert float(loss(y_true, probs, pixel_weight)) == pytest.approx(expected, rel=1e-5)


def test_new_weights_change_the_value_of_the_same_batch():
    y_true, probs = batch(9)
    loss = combined_loss(FINAL_MIX)
    before = float(loss(y_true, probs))
    loss.set_term_weights({"dice": 2.0})
    dice = float(losses.SoftDiceLoss()(y_true, probs))
    assert float(loss(y_true, probs)) == pytest.approx(before + dice, rel=1e-5)
    assert loss.term_weights == {**FINAL_MIX, "dice": 2.0}


def test_unknown_terms_and_bad_weights_raise_one_line_value_errors():
    with pytest.raises(ValueError, match="valid names are ce, focal, dice, class_limit, boundary, low_pass"):
        combined_loss({"ce": 1.0, "tversky": 1.0})
    with pytest.raises(ValueError, match="finite and >= 0"):
        combined_loss({"ce": -1.0})
    with pytest.raises(ValueError, match="not in this loss"):
        combined_loss({"ce": 1.0}).set_term_weights({"dice": 1.0})
    with pytest.raises(ValueError, match="y_pred"):
        losses.SoftDiceLoss()(np.zeros((2, 4, 4), int), np.zeros((2, 4, 4, 3), "float32"))


def test_final_mix_is_the_originals_and_a_valid_loss():
    assert FINAL_MIX == {"dice": 1.0, "focal": 0.1, "ce": 3.0, "class_limit": 0.1, "boundary": 0.1}
    assert combined_loss(FINAL_MIX).term_weights == FINAL_MIX


def tiny_model():
    inputs = keras.Input((12, 16, 1))
    hidden = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(5, 1, activation="softmax")(hidden))


def test_model_with_combined_loss_saves_and_reloads_with_current_weights(tmp_path):
    rng = np.random.default_rng(10)
    x = rng.random((4, 12, 16, 1)).astype("float32")
    y = rng.integers(0, 5, (4, 12, 16))
    loss = combined_loss({name: 0.5 for name in TERM_NAMES}, options={"boundary": {"max_distance": 4}})
    model = tiny_model()
    model.compile(optimizer="adam", loss=loss, jit_compile=True)
    model.optimizer.build(model.trainable_variables)
    loss.set_term_weights({"ce": 2.0})
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)  # registered by importing helpers.model.losses
    assert isinstance(reloaded.loss, losses.CombinedLoss)
    assert reloaded.loss.term_weights == loss.term_weights
    assert reloaded.loss.terms["boundary"].max_distance == 4
    probs = model.predict(x, verbose=0)
    assert float(reloaded.loss(y, probs)) == pytest.approx(float(loss(y, probs)), rel=1e-6)
    assert reloaded.evaluate(x, y, verbose=0) == pytest.approx(float(loss(y, probs)), rel=1e-4)


def test_term_metrics_log_each_term_of_the_weighted_sum_and_survive_saving(tmp_path):
    rng = np.random.default_rng(11)
    x = rng.random((4, 12, 16, 1)).astype("float32")
    y = rng.integers(0, 5, (4, 12, 16))
    pixel_weight = rng.choice([1.0, 3.0], size=(4, 12, 16)).astype("float32")  # like class weights per pixel
    weights = {"ce": 3.0, "dice": 1.0, "focal": 0.1, "boundary": 0.1}
    loss = combined_loss(weights, ignore_class=0, options={"boundary": {"max_distance": 4}})
    assert losses.term_metrics(combined_loss({"ce": 1.0})) == []  # one term: the logged loss is that term
    model = tiny_model()
    model.compile(optimizer="adam", loss=loss, weighted_metrics=losses.term_metrics(loss))
    logs = model.evaluate(x, y, sample_weight=pixel_weight, batch_size=4, verbose=0, return_dict=True)
    probs = model.predict(x, verbose=0)
    direct = {name: float(term(y, probs, sample_weight=pixel_weight if name in losses.PIXEL_TERMS else None))
              for name, term in loss.terms.items()}
    for name, value in direct.items():
        assert logs[f"term_{name}"] == pytest.approx(value, rel=1e-5), name
    assert logs["loss"] == pytest.approx(sum(weights[n] * v for n, v in direct.items()), rel=1e-5)
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    again = reloaded.evaluate(x, y, sample_weight=pixel_weight, batch_size=4, verbose=0, return_dict=True)
    assert again["term_boundary"] == pytest.approx(logs["term_boundary"], rel=1e-5)
