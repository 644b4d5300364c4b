"""The Improved track's hand-written pieces against hand computations: flip TTA, soft vote, decoding and
pseudo-labels, and the ensemble path of `helpers.predict.inference.predict_labels`."""
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.configs import experiments
from helpers.predict.decoding import decode, pool
from helpers.predict.ensemble import soft_vote
from helpers.predict.inference import predict_labels
from helpers.predict.tta import flip_tta

RNG = np.random.default_rng(0)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _pixelwise_model(seed):
    """1x1 conv + softmax: its prediction of a flipped image is the flipped prediction (flip-equivariant)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64, 128, 1))
    return keras.Model(inputs, keras.layers.Conv2D(5, 1, activation="softmax")(inputs))


def _positional_model(seed):
    """Not flip-equivariant: a 3x3 conv, so the answer depends on where things are."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64, 128, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(5, 3, padding="same", activation="softmax")(x))


def test_tta_of_a_flip_equivariant_model_is_its_plain_prediction():
    model = _pixelwise_model(1)
    x = tf.constant(RNG.random((3, 64, 128, 1)), tf.float32)
    np.testing.assert_allclose(flip_tta(model, x), model(x), atol=1e-6)


def test_tta_is_the_mean_of_the_four_flipped_back_views():
    constant = _softmax(RNG.normal(size=(1, 64, 128, 5))).astype(np.float32)  # ignores its input
    predict = lambda x: tf.repeat(tf.constant(constant), tf.shape(x)[0], axis=0)  # noqa: E731
    by_hand = (constant + constant[:, ::-1] + constant[:, :, ::-1] + constant[:, ::-1, ::-1]) / 4
    np.testing.assert_allclose(flip_tta(predict, tf.zeros((2, 64, 128, 1))), np.repeat(by_hand, 2, 0), atol=1e-6)


def test_an_ensemble_of_identical_models_is_one_model_and_two_average():
    model = _positional_model(2)
    x = tf.constant(RNG.random((2, 64, 128, 1)), tf.float32)
    np.testing.assert_allclose(soft_vote([model, model, model], x), model(x), atol=1e-6)
    a, b = (np.full((1, 2, 2, 5), v, np.float32) for v in (0.1, 0.3))
    np.testing.assert_allclose(soft_vote([lambda _: a, lambda _: b], None), np.full((1, 2, 2, 5), 0.2), atol=1e-7)
    with pytest.raises(ValueError, match="at least one member"):
        soft_vote([], None)


def test_decode_foreground_never_predicts_background_and_threshold_blanks_the_unsure():
    probs = np.array([[[[0.60, 0.10, 0.20, 0.05, 0.05],    # 0 wins overall; 2 among 1-4
                        [0.00, 0.95, 0.05, 0.00, 0.00],    # a sure soil
                        [0.10, 0.30, 0.35, 0.25, 0.00]]]], np.float32)  # an unsure bedrock
    assert decode(probs).numpy().tolist() == [[[0, 1, 2]]]
    assert decode(probs, "foreground").numpy().tolist() == [[[2, 1, 2]]]
    assert decode(probs, "foreground", threshold=0.9).numpy().tolist() == [[[0, 1, 0]]]
    with pytest.raises(ValueError, match="'foreground'"):
        decode(probs, "labelled")


def test_pseudo_label_pool_is_a_seeded_draw_sized_by_the_training_split():
    chosen = pool(n_test=100, n_train=30, images=1.0, seed=3)
    assert len(chosen) == 30 == len(set(chosen)) and list(chosen) == sorted(chosen) and chosen.max() < 100
    assert np.array_equal(chosen, pool(100, 30, 1.0, 3)) and not np.array_equal(chosen, pool(100, 30, 1.0, 4))
    assert len(pool(100, 80, 2.0, 0)) == 100
    with pytest.raises(ValueError, match="positive multiple"):
        pool(100, 30, 0, 0)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_predict_labels_of_an_ensemble_with_tta_equals_numpy_by_hand(jit_compile):
    members = [_positional_model(3), _positional_model(4)]
    images = RNG.random((5, 64, 128)).astype(np.float32)
    x = images[..., None]
    views = []
    for m in members:
        for axes in ((), (1,), (2,), (1, 2)):
            flipped = np.flip(x, axes) if axes else x
            out = m.predict(flipped, verbose=0)
            views.append(np.flip(out, axes) if axes else out)
    mean = np.mean(views, axis=0)
    expected = (np.argmax(mean[..., 1:], -1) + 1).astype(np.uint8)
    got = predict_labels(members, images, batch_size=2, jit_compile=jit_compile, tta=True, classes="foreground")
    assert (got == expected).mean() > 0.999  # float rounding near ties only
    assert got.min() >= 1


def test_experiments_import_without_tensorflow():
    code = "import sys, helpers.configs.experiments, helpers.configs.profiles; assert 'tensorflow' not in sys.modules, 'tensorflow'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_improved_track_is_one_step_per_entry_ending_in_improved():
    track = [entry["name"] for entry in experiments.IMPROVED]
    assert track[-1] == "Improved" and experiments.parents(track[0]) == ["Baseline"]
    for previous, name in zip(track, track[1:]):
        assert experiments.parents(name) == [previous] and len(experiments.get_entry(name)["delta"]) == 1
    assert all(experiments.reported(name) is None for name in track)
    assert experiments.trainer("Improved (b) never class 0") == "Improved (a) focal, no background"
    assert experiments.trainer("Improved (f) ensemble") == "Improved (d) SE bottleneck"
    assert experiments.trainer("Improved") == "Improved"
    assert experiments.member_seeds(2, 3) == [2, 1002, 2002]
    final = experiments.resolve("Improved")
    assert final["inference"] == {"classes": "foreground", "tta": True, "members": 2}
    assert final["loss"]["ignore_class"] == 0 and final["model"]["se"] and final["self_training"]["threshold"] == 0.9
