"""Fast inference: the same labels as `argmax(model.predict)`, for any N, with one compiled shape per model."""
import gc
import weakref

import keras
import numpy as np
import pytest

from helpers.model.models import build_model
from helpers.predict import inference
from helpers.predict.inference import balanced_batches, choose_inference_settings, predict_labels

CPU = {"device_type": "cpu", "gpus": [], "tpu_cores": 0, "cores": 2, "cpu_model": "Test CPU", "replicas": 1,
       "op_determinism": False}


@pytest.fixture(scope="module")
def model():
    """A tiny UNet whose head is scaled up, so its softmax is decisive (an untrained one is nearly uniform)."""
    keras.utils.set_random_seed(0)
    model = build_model("unet", width=0.125)
    head = model.get_layer("probabilities")
    head.kernel.assign(head.kernel * 100.0)
    return model


def _images(n, seed=0):
    return np.random.default_rng(seed).random((n, 64, 128), dtype=np.float32)


def _reference(model, images, batch_size=32):
    probabilities = model.predict(images[..., None], batch_size=batch_size, verbose=0)
    return probabilities, np.argmax(probabilities, axis=-1).astype(np.uint8)


def test_equals_argmax_of_model_predict_for_n_not_a_multiple_of_the_batch(model):
    images = _images(13)
    _, expected = _reference(model, images)
    for run_eagerly in (False, True):
        labels = predict_labels(model, images, batch_size=4, jit_compile=False, run_eagerly=run_eagerly)
        assert labels.dtype == np.uint8 and labels.shape == (13, 64, 128)
        np.testing.assert_array_equal(labels, expected)
    assert len(np.unique(expected)) > 1  # a model that predicts one class everywhere would prove little


def test_xla_agrees_with_model_predict_except_at_float_ties(model):
    images = _images(13, seed=1)
    probabilities, expected = _reference(model, images)
    labels = predict_labels(model, images, batch_size=4, jit_compile=True)
    top_two = np.sort(probabilities, axis=-1)[..., -2:]
    clear = (top_two[..., 1] - top_two[..., 0]) > 1e-5
    np.testing.assert_array_equal(labels[clear], expected[clear])
    assert (labels == expected).mean() > 0.999


def test_one_image_no_image_and_a_channel_axis(model):
    images = _images(1, seed=2)
    np.testing.assert_array_equal(predict_labels(model, images, jit_compile=False), _reference(model, images)[1])
    np.testing.assert_array_equal(predict_labels(model, images[..., None], jit_compile=False),
                                  _reference(model, images)[1])
    empty = predict_labels(model, np.zeros((0, 64, 128), np.float32))
    assert empty.shape == (0, 64, 128) and empty.dtype == np.uint8


def test_one_trace_serves_every_batch_and_later_calls():
    keras.utils.set_random_seed(1)
    model = build_model("unet", width=0.125, depth=1)
    predict_labels(model, _images(7), batch_size=4, jit_compile=False)  # 2 batches of 4, the last padded by 1
    predict_labels(model, _images(8), batch_size=4, jit_compile=False)
    [function] = inference._COMPILED[model].values()  # one function for this model and these choices
    assert function.experimental_get_tracing_count() == 1
    alive = weakref.ref(model)
    del model, function
    gc.collect()
    assert alive() is None  # the cache does not keep models alive (other tests' models may go too)


@pytest.mark.parametrize("n, batch_size, expected", [(10022, 64, (157, 64)), (10022, 512, (20, 502)),
                                                     (13, 4, (4, 4)), (5, 64, (1, 5)), (64, 64, (1, 64)),
                                                     (65, 64, (2, 33))])
def test_balanced_batches_by_hand(n, batch_size, expected):
    assert balanced_batches(n, batch_size) == expected


def test_balanced_batches_cover_n_with_less_padding_than_batches():
    for n in range(1, 300):
        for batch_size in (1, 3, 8, 64, 100):
            count, size = balanced_batches(n, batch_size)
            assert size <= batch_size and count == -(-n // batch_size)
            assert (count - 1) * size < n <= count * size and count * size - n < count


def test_settings_per_device_and_flags():
    assert choose_inference_settings(CPU) == {"batch_size": inference.BATCH_SIZES["cpu"], "jit_compile": True}
    assert choose_inference_settings({**CPU, "device_type": "gpu"})["batch_size"] == inference.BATCH_SIZES["gpu"]
    assert choose_inference_settings({**CPU, "op_determinism": True})["jit_compile"] is False
    assert choose_inference_settings({**CPU, "compute_dtype": "bfloat16"})["jit_compile"] is False
    one_core_onednn = {**CPU, "cores": 1, "onednn": True}  # a training worker: oneDNN beats XLA there
    assert choose_inference_settings(one_core_onednn)["jit_compile"] is False
    assert choose_inference_settings({**one_core_onednn, "cores": 2})["jit_compile"] is True
    assert choose_inference_settings({**one_core_onednn, "onednn": False})["jit_compile"] is True
    assert choose_inference_settings({**CPU, "device_type": "gpu", "compute_dtype": "bfloat16"})["jit_compile"] is True
    assert choose_inference_settings(CPU, batch_size=7, jit_compile=False) == {"batch_size": 7, "jit_compile": False}


@pytest.mark.parametrize("kwargs, message", [({"batch_size": 0}, "batch_size"), ({"batch_size": 2.5}, "batch_size"),
                                             ({"jit_compile": "yes"}, "jit_compile")])
def test_bad_settings_raise(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        predict_labels(model, _images(2), **kwargs)


@pytest.mark.parametrize("images, message", [(np.full((2, 64, 128), 255.0, np.float32), r"\[0, 1\]"),
                                             (np.zeros((2, 32, 32), np.float32), "shape"),
                                             (np.zeros((2, 64, 128), np.uint8), "floating")])
def test_bad_images_raise(model, images, message):
    with pytest.raises(ValueError, match=message):
        predict_labels(model, images)


def test_two_decodings_from_one_pass_equal_two_calls(model):
    images = _images(9, seed=3)
    both = predict_labels(model, images, classes=("all", "foreground"), batch_size=4, jit_compile=False)
    assert isinstance(both, tuple) and len(both) == 2
    np.testing.assert_array_equal(both[0], predict_labels(model, images, batch_size=4, jit_compile=False))
    np.testing.assert_array_equal(both[1], predict_labels(model, images, classes="foreground", batch_size=4,
                                                          jit_compile=False))
    assert both[1].min() >= 1
    empty = predict_labels(model, images[:0], classes=("all", "foreground"))
    assert [e.shape for e in empty] == [(0, 64, 128)] * 2
