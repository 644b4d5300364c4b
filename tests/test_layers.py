"""helpers.model.layers against independent references: OpenCV (Otsu, Sobel, Laplacian), PyWavelets (Haar
DWT), Keras's BatchNormalization and numpy hand computations."""
import cv2
import keras
import numpy as np
import pytest
import pywt
import tensorflow as tf

from helpers.model.layers import (
    FEATURE_CHANNELS,
    AdaptiveNormalization,
    FeatureChannels,
    GatedBlend,
    HaarWavelet,
    Laplacian,
    SobelEdges,
    Threshold,
    feature_channel_count,
)

TOLERANCE = 1e-4


def _synthetic_like(rng, n):
    """Terrain-like uint8 images: smooth shading, blurred blobs (rocks), a sharp ridge, sensor noise."""
    rows, cols = np.mgrid[0:64, 0:128]
    images = []
    for _ in range(n):
        shade = 90 + 60 * np.sin(cols / rng.uniform(10, 30) + rng.uniform(0, 6)) * np.cos(rows / rng.uniform(8, 20))
        blobs = np.zeros((64, 128))
        for _ in range(4):
            r, c, s = rng.uniform(0, 64), rng.uniform(0, 128), rng.uniform(3, 9)
            blobs += rng.uniform(-80, 80) * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * s**2))
        ridge = np.where(rows > 20 + 0.2 * cols, 35, 0)
        images.append(np.clip(shade + blobs + ridge + rng.normal(0, 6, (64, 128)), 0, 255))
    return np.round(np.stack(images)).astype(np.uint8)


@pytest.fixture(scope="module")
def uint8_images():
    """A batch mixing uniform noise, terrain-like images, a constant and a two-level image."""
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (3, 64, 128), dtype=np.uint8)
    constant = np.full((1, 64, 128), 77, np.uint8)
    two_level = np.where(np.arange(128) < 40, 30, 200).astype(np.uint8)[None, None, :].repeat(64, axis=1)
    return np.concatenate([noise, _synthetic_like(rng, 4), constant, two_level])


@pytest.fixture(scope="module")
def images(uint8_images):
    """The uint8 batch as the models see it: float32 in [0, 1], plus continuous random floats."""
    rng = np.random.default_rng(8)
    return np.concatenate([uint8_images / 255.0, rng.random((2, 64, 128))]).astype("float32")


def test_threshold_equals_opencv_otsu(uint8_images):
    ours = Threshold()((uint8_images / 255.0).astype("float32")[..., None]).numpy()[..., 0]
    reference = np.stack([cv2.threshold(im, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1] for im in uint8_images])
    np.testing.assert_array_equal(ours, reference)
    assert 0 < ours[:-2].mean() < 1, "Otsu should split the non-constant images"


def test_sobel_edges_equal_cv2_sobel_magnitude(images):
    ours = SobelEdges()(images[..., None]).numpy()[..., 0]
    reference = np.stack([np.hypot(cv2.Sobel(im, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(im, cv2.CV_32F, 0, 1, ksize=3))
                          for im in images])
    assert np.abs(ours - reference).max() <= TOLERANCE


def test_laplacian_equals_cv2_laplacian(images):
    ours = Laplacian()(images[..., None]).numpy()[..., 0]
    reference = np.stack([cv2.Laplacian(im, cv2.CV_32F) for im in images])
    assert np.abs(ours - reference).max() <= TOLERANCE


def test_borders_follow_reflect101_not_zero_padding(images):
    """At the borders a zero-padded conv (padding="same") differs from OpenCV; ours must not."""
    edge_row = Laplacian()(images[..., None]).numpy()[:, 0, :, 0]
    kernel = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], "float32")[:, :, None, None]
    zero_padded = keras.ops.conv(images[..., None], kernel, padding="same").numpy()[:, 0, :, 0]
    reference = np.stack([cv2.Laplacian(im, cv2.CV_32F) for im in images])[:, 0, :]
    assert np.abs(edge_row - reference).max() <= TOLERANCE
    assert np.abs(zero_padded - reference).max() > 0.1


def test_haar_wavelet_equals_pywt_dwt2_in_order_and_sign(images):
    ours = HaarWavelet()(images[..., None]).numpy()
    assert ours.shape == (len(images), 64, 128, 4)
    for image, bands in zip(images, ours):
        c_a, (c_h, c_v, c_d) = pywt.dwt2(image, "haar")
        reference = np.stack([c_a, c_h, c_v, c_d], axis=-1)
        for dr in (0, 1):
            for dc in (0, 1):
                assert np.abs(bands[dr::2, dc::2] - reference).max() <= TOLERANCE


def test_feature_channels_stack_image_then_features_in_fixed_order(images):
    x = images[..., None]
    stacked = FeatureChannels(["wavelet", "threshold", "edges"])(x).numpy()
    expected = np.concatenate([x, Threshold()(x), SobelEdges()(x), HaarWavelet()(x)], axis=-1)
    np.testing.assert_array_equal(stacked, expected)
    assert stacked.shape[-1] == feature_channel_count(["edges", "wavelet", "threshold"]) == 7


@pytest.mark.parametrize(("channels", "count"),
                         [((), 1), (("threshold",), 2), (("laplacian", "edges"), 3), (("wavelet",), 5), (FEATURE_CHANNELS, 8)])
def test_feature_channel_count_matches_output(channels, count):
    assert feature_channel_count(channels) == count
    assert FeatureChannels(channels)(np.zeros((1, 8, 8, 1), "float32")).shape == (1, 8, 8, count)


def test_feature_channels_compile_with_xla_and_agree_with_eager(images):
    layer = FeatureChannels(FEATURE_CHANNELS)
    compiled = tf.function(layer, jit_compile=True)(tf.constant(images[..., None]))
    np.testing.assert_allclose(compiled.numpy(), layer(images[..., None]).numpy(), atol=TOLERANCE)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FeatureChannels(["edge"]), "Unknown feature channel"),
        (lambda: FeatureChannels(["edges", "edges"]), "repeat"),
        (lambda: FeatureChannels("edges"), "list of names"),
        (lambda: feature_channel_count(["dct"]), "valid names"),
        (lambda: FeatureChannels(["edges"])(np.zeros((1, 8, 8, 3), "float32")), "grey images"),
        (lambda: SobelEdges()(np.zeros((1, 8, 8), "float32")), "grey images"),
        (lambda: HaarWavelet()(np.zeros((1, 7, 8, 1), "float32")), "even height and width"),
    ],
)
def test_bad_input_raises_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_adaptive_normalization_starts_as_identity_and_mixes_batch_norm():
    x = np.random.default_rng(0).normal(2.0, 3.0, (4, 6, 6, 3)).astype("float32")
    layer = AdaptiveNormalization(momentum=0.9, epsilon=1e-3)
    np.testing.assert_allclose(layer(x, training=True).numpy(), x, atol=1e-6)
    layer.lambda_.assign(0.5)
    layer.mu.assign(2.0)
    reference_bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    expected = 0.5 * x + 2.0 * reference_bn(x, training=True).numpy()
    np.testing.assert_allclose(layer(x, training=True).numpy(), expected, atol=1e-5)
    assert len(layer.trainable_weights) == 4  # lambda, mu, gamma, beta


def test_gated_blend_is_a_per_pixel_convex_mix():
    rng = np.random.default_rng(1)
    gate = rng.random((2, 4, 4, 1)).astype("float32")
    p_a, p_b = (rng.dirichlet(np.ones(5), (2, 4, 4)).astype("float32") for _ in range(2))
    blended = GatedBlend()([gate, p_a, p_b]).numpy()
    np.testing.assert_allclose(blended, gate * p_a + (1 - gate) * p_b, atol=1e-6)
    np.testing.assert_allclose(blended.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("layer", [FeatureChannels(["laplacian", "threshold"]), HaarWavelet(), GatedBlend(),
                                   AdaptiveNormalization(momentum=0.8, lambda_init=0.5)])
def test_layers_serialize_round_trip_by_registered_name(layer):
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == f"helpers>{type(layer).__name__}"
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()


def test_feature_channel_names_are_the_documented_ones():
    assert FEATURE_CHANNELS == ("threshold", "edges", "laplacian", "wavelet")
