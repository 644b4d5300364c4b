"""Custom Keras layers of the study: image feature channels computed inside the model, adaptive
normalization, and the weightless blend of the gated dual-UNet fusion.

The feature layers (`Threshold`, `SobelEdges`, `Laplacian`, `HaarWavelet`, `FeatureChannels`) have no
weights and take the raw grey image in [0, 1], shaped (B, H, W, 1), so a saved model needs no
preprocessing outside it (a Kaggle kernel feeds it images / 255). Borders follow OpenCV's default
(reflect-101, `cv2.BORDER_DEFAULT`), so each layer matches `cv2.Sobel`, `cv2.Laplacian`,
`cv2.threshold(..., THRESH_OTSU)` and `pywt.dwt2(x, "haar")` to float32 rounding; Keras's
`padding="same"` zero-pads and would differ at the borders. Keras ships none of these filters, so
they are written here, each a fixed stencil or a small in-graph computation in `keras.ops`, so they run on
TensorFlow and JAX alike (tests/test_backends.py checks that both give the same channels).

Every layer is registered, so a `.keras` file holding them reloads after `import helpers`.
"""
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from helpers.runtime import backend

FEATURE_CHANNELS = ("threshold", "edges", "laplacian", "wavelet")
"""Names of the feature channels, in the fixed order `FeatureChannels` stacks them after the image."""

_CHANNELS_PER_FEATURE = {"threshold": 1, "edges": 1, "laplacian": 1, "wavelet": 4}

_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype="float32")
_LAPLACIAN_4 = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype="float32")
_HAAR_2X2 = 0.5 * np.array(
    [
        [[1, 1], [1, 1]],  # cA: low-pass along height and width
        [[1, 1], [-1, -1]],  # cH: high-pass along height (horizontal edges), low-pass along width
        [[1, -1], [1, -1]],  # cV: low-pass along height, high-pass along width (vertical edges)
        [[1, -1], [-1, 1]],  # cD: high-pass along both (diagonal detail)
    ],
    dtype="float32",
)


def _check_grey(input_shape, layer_name: str) -> None:
    """Raise ValueError unless `input_shape` is (B, H, W, 1) with H, W >= 2."""
    if len(input_shape) != 4 or input_shape[-1] != 1:
        raise ValueError(
            f"{layer_name} expects grey images shaped (batch, height, width, 1), got {tuple(input_shape)}; "
            "add the channel axis with x[..., None]."
        )
    if any(size is not None and size < 2 for size in input_shape[1:3]):
        raise ValueError(f"{layer_name} needs images at least 2x2, got {tuple(input_shape[1:3])}.")


def _reflect101_stencil(images, kernel: np.ndarray):
    """Correlate (B, H, W, 1) images with a fixed 3x3 `kernel` after reflect-101 padding, like
    `cv2.filter2D` with `cv2.BORDER_DEFAULT` (numpy/TF "reflect" does not repeat the edge pixel).

    A weighted sum of shifted copies rather than a convolution: exact float32 on every device (a
    GPU's TF32 convolution mode would round the inputs to 10 mantissa bits).
    """
    height, width = ops.shape(images)[1], ops.shape(images)[2]
    padded = ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
    terms = [float(kernel[i, j]) * padded[:, i : i + height, j : j + width, :]
             for i in range(3) for j in range(3) if kernel[i, j]]
    return sum(terms[1:], terms[0])


def feature_channel_count(channels: Sequence[str] = ()) -> int:
    """Channels `FeatureChannels(channels)` outputs: 1 (the image) + 1 per threshold/edges/laplacian
    + 4 for wavelet."""
    return 1 + sum(_CHANNELS_PER_FEATURE[name] for name in _validated_channels(channels))


def _validated_channels(channels: Sequence[str]) -> tuple[str, ...]:
    """`channels` in `FEATURE_CHANNELS` order; ValueError on unknown names, duplicates or a bare string."""
    if isinstance(channels, str):
        raise ValueError(f"channels must be a list of names, got the string {channels!r}; write [{channels!r}].")
    unknown = [name for name in channels if name not in FEATURE_CHANNELS]
    if unknown:
        raise ValueError(f"Unknown feature channel(s) {unknown}; valid names are {list(FEATURE_CHANNELS)}.")
    if len(set(channels)) != len(channels):
        raise ValueError(f"Feature channels {list(channels)} repeat a name; list each at most once.")
    return tuple(name for name in FEATURE_CHANNELS if name in channels)


@keras.saving.register_keras_serializable(package="helpers")
class Threshold(keras.layers.Layer):
    """Per-image Otsu threshold: 1.0 where the pixel is brighter than the image's Otsu level, else 0.0.

    The image is quantised to 256 grey levels (round(255 x)), its 256-bin histogram is built in the
    graph, and the level t maximising the between-class variance q0 q1 (mu0 - mu1)^2 (first maximum;
    t = 0 for a constant image) splits it, exactly as `cv2.threshold(u8, 0, 1, THRESH_BINARY +
    THRESH_OTSU)` does on the uint8 image. Computed in float64 so near-equal variances rank as in
    OpenCV. Replaces the original's rule, which compared [0, 1] inputs with 2 and was always 0.
    """

    def build(self, input_shape):
        _check_grey(input_shape, "Threshold")

    def call(self, images):
        batch = ops.shape(images)[0]
        levels = ops.cast(ops.round(ops.clip(ops.cast(images, "float32"), 0.0, 1.0) * 255.0), "int32")
        flat = ops.reshape(levels, (batch, -1))
        segment_ids = ops.reshape(flat + 256 * ops.expand_dims(ops.arange(batch, dtype="int32"), 1), (-1,))
        with backend.float64_scope():  # JAX has no float64 outside it
            ones = ops.ones_like(flat, dtype="float64")
            counts = ops.segment_sum(ops.reshape(ones, (-1,)), segment_ids, num_segments=batch * 256)
            prob = ops.reshape(counts, (batch, 256)) / ops.cast(ops.shape(flat)[1], "float64")
            omega = ops.cumsum(prob, axis=1)
            mu = ops.cumsum(prob * ops.arange(256, dtype="float64"), axis=1)
            mu_total = mu[:, -1:]
            eps = float(np.finfo(np.float32).eps)
            valid = ops.logical_and(ops.minimum(omega, 1.0 - omega) >= eps,
                                    ops.maximum(omega, 1.0 - omega) <= 1.0 - eps)
            between = ops.where(valid, ops.square(mu_total * omega - mu) / ops.where(valid, omega * (1.0 - omega), 1.0),
                                0.0)
            # The first maximum, as argmax, written out: JAX's compiled argmax breaks under a float64 scope in jit.
            best = ops.max(between, axis=1, keepdims=True)
            level = ops.min(ops.where(between == best, ops.arange(256, dtype="int32"), 256), axis=1)
        above = flat > ops.expand_dims(level, 1)
        return ops.reshape(ops.cast(above, self.compute_dtype), ops.shape(images))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package="helpers")
class SobelEdges(keras.layers.Layer):
    """Sobel gradient magnitude sqrt(gx^2 + gy^2) of a grey image, not rescaled (range [0, 4 sqrt 2]
    for inputs in [0, 1]); gx, gy equal `cv2.Sobel(x, cv2.CV_32F, 1, 0)` and `(..., 0, 1)`."""

    def build(self, input_shape):
        _check_grey(input_shape, "SobelEdges")

    def call(self, images):
        gx, gy = _reflect101_stencil(images, _SOBEL_X), _reflect101_stencil(images, _SOBEL_X.T)
        return ops.sqrt(ops.square(gx) + ops.square(gy))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package="helpers")
class Laplacian(keras.layers.Layer):
    """4-neighbour Laplacian (kernel [[0,1,0],[1,-4,1],[0,1,0]]) of a grey image, equal to
    `cv2.Laplacian(x, cv2.CV_32F)` (ksize=1)."""

    def build(self, input_shape):
        _check_grey(input_shape, "Laplacian")

    def call(self, images):
        return _reflect101_stencil(images, _LAPLACIAN_4)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


@keras.saving.register_keras_serializable(package="helpers")
class HaarWavelet(keras.layers.Layer):
    """One-level 2-D Haar DWT, four channels in `pywt.dwt2(x, "haar")` order: cA (LL), cH (high-pass
    along height: horizontal edges), cV (high-pass along width: vertical edges), cD (diagonal).

    Each sub-band applies a half-scaled 2x2 Haar kernel to every non-overlapping 2x2 block (a stride-2
    correlation, written as a weighted sum of the block's four corners so it is exact float32 on any
    device); at (H/2, W/2) it equals pywt's coefficients, signs included (detail = top/left minus
    bottom/right). Each coefficient is then repeated over the 2x2 block it summarises (nearest-neighbour
    upsampling), which brings the bands back to (H, W): out[2i:2i+2, 2j:2j+2, k] = band_k[i, j].
    H and W must be even.
    """

    def build(self, input_shape):
        _check_grey(input_shape, "HaarWavelet")
        if any(size is not None and size % 2 for size in input_shape[1:3]):
            raise ValueError(f"HaarWavelet needs even height and width, got {tuple(input_shape[1:3])}; crop one pixel.")

    def call(self, images):
        corners = [images[:, r::2, c::2, :] for r in (0, 1) for c in (0, 1)]
        bands = [sum(float(w) * corner for w, corner in zip(kernel.ravel(), corners)) for kernel in _HAAR_2X2]
        bands = ops.concatenate(bands, axis=-1)
        return ops.repeat(ops.repeat(bands, 2, axis=1), 2, axis=2)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], 4)


_FEATURE_LAYERS = {"threshold": Threshold, "edges": SobelEdges, "laplacian": Laplacian, "wavelet": HaarWavelet}


@keras.saving.register_keras_serializable(package="helpers")
class FeatureChannels(keras.layers.Layer):
    """Stack the raw grey image with the chosen feature channels, always in `FEATURE_CHANNELS` order
    whatever order `channels` lists them: [image, threshold, edges, laplacian, wavelet cA/cH/cV/cD].

    (B, H, W, 1) -> (B, H, W, feature_channel_count(channels)). Weightless; the first layer of a model
    that should see the report's "thresholding, edge detection, laplacian, wavelet" channels.
    """

    def __init__(self, channels: Sequence[str] = (), **kwargs):
        super().__init__(**kwargs)
        self.channels = _validated_channels(channels)
        self.feature_layers = [_FEATURE_LAYERS[name](name=name) for name in self.channels]

    def build(self, input_shape):
        _check_grey(input_shape, "FeatureChannels")
        for layer in self.feature_layers:
            layer.build(input_shape)

    def call(self, images):
        return ops.concatenate([images] + [layer(images) for layer in self.feature_layers], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], feature_channel_count(self.channels))

    def get_config(self):
        return {**super().get_config(), "channels": list(self.channels)}


@keras.saving.register_keras_serializable(package="helpers")
class AdaptiveNormalization(keras.layers.Layer):
    """Adaptive batch normalization of Chen, Xu & Koltun, "Fast Image Processing with
    Fully-Convolutional Networks", ICCV 2017: y = lambda * x + mu * BN(x), with lambda and mu two
    learned scalars per layer.

    Defaults follow the authors' released code: lambda starts at 1 and mu at 0, so the layer starts
    as the identity and learns how much batch normalization to mix in. `momentum` and `epsilon` go
    to the inner `keras.layers.BatchNormalization`. (The original notebooks' "adaptive
    normalization" was GroupNorm with 8 groups; see `helpers.model.models`, norm="group".)
    """

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, lambda_init: float = 1.0, mu_init: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.momentum, self.epsilon = momentum, epsilon
        self.lambda_init, self.mu_init = lambda_init, mu_init
        self.batch_norm = keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name="batch_norm")

    def build(self, input_shape):
        self.batch_norm.build(input_shape)
        constant = keras.initializers.Constant
        self.lambda_ = self.add_weight(shape=(), initializer=constant(self.lambda_init), name="lambda")
        self.mu = self.add_weight(shape=(), initializer=constant(self.mu_init), name="mu")

    def call(self, inputs, training=None):
        normalized = self.batch_norm(inputs, training=training)
        return ops.cast(self.lambda_, inputs.dtype) * inputs + ops.cast(self.mu, inputs.dtype) * normalized

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "lambda_init": self.lambda_init,
            "mu_init": self.mu_init,
        }


@keras.saving.register_keras_serializable(package="helpers")
class GatedBlend(keras.layers.Layer):
    """Per-pixel convex blend of two probability maps: [gate, p_a, p_b] -> gate * p_a + (1 - gate) * p_b.

    `gate` is (B, H, W, 1) in [0, 1] (a sigmoid), p_a and p_b are (B, H, W, C) softmaxes, so the
    result is again a distribution per pixel. Weightless: the learned part is the gate's convolution.
    """

    def call(self, inputs):
        gate, p_a, p_b = inputs
        return gate * p_a + (1.0 - gate) * p_b

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1])
