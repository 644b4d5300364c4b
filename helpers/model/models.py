"""The model zoo: Functional builders of the study's UNet and dual UNets, and one dispatcher.

Every builder returns an UNCOMPILED `keras.Model` from grey images (B, 64, 128, 1) in [0, 1] to a
per-pixel softmax over the 5 classes (B, 64, 128, 5). Options are plain data, so an experiment
config such as `{"arch": "dual_unet", "kind": "global_local", "fusion": "concat", "channels": [...],
"norm": "batch", "initializer": "he_normal", "se": True, "dilated_bottleneck": True}` becomes a model
through `build_model(**config)`.

Shapes of the report: Baseline = `unet()` (2 down / 2 up, 32-64, bottleneck 128 at 16x32, nearest
upsampling + skip concat, 1x1 softmax head, BN + ReLU: 473,669 parameters); Net 2 adds
`channels`; Net 6 = `dual_unet(kind="twin")`; Net 7 adds norm="group"; Net 8 =
`dual_unet(kind="global_local")`; Net 10 adds se=True and dilated_bottleneck=True; Final adds
initializer="he_normal".
"""
import inspect
import math
from collections.abc import Sequence

import keras

from helpers.configs.constants import INPUT_SHAPE, NUM_CLASSES
from helpers.model.layers import AdaptiveNormalization, FeatureChannels, GatedBlend
from helpers.runtime import backend

ARCHITECTURES = ("unet", "dual_unet")
NORMALIZATIONS = ("batch", "group", "adaptive")
DUAL_KINDS = ("twin", "global_local")
FUSIONS = ("concat", "add", "continue_add", "gated")

GROUP_NORM_GROUPS = 8
"""GroupNorm's groups at full width (the original's 8). A narrower model keeps the channels per group instead
(`group_norm_groups`): 8 groups over a quarter-width level of 8 channels would be InstanceNorm, another layer."""
SE_REDUCTION = 16
DILATION_RATES = (1, 2, 4, 8)
MIN_FILTERS = 4
BN_MOMENTUM = 0.9
"""Moving-statistics momentum of every BatchNorm (Keras's default is 0.99). The moving variance starts at 1
while these nets' activations have variances far below 1; at 0.99 the start value still dominates for
hundreds of steps, so inference-mode predictions lag training by several epochs in short runs (often
constant at first, so early stopping keeps epoch 1). At 0.9 it fades within one epoch (docs/training.md)."""

BASELINE_BRANCH = {"depth": 2, "filters": 32, "bottleneck": 128}
"""The report's baseline UNet, also the Local branch and each branch of the twin dual UNet."""
GLOBAL_BRANCH = {"depth": 4, "filters": 32, "bottleneck": 512}
"""The Global branch of Net 8: levels 32/64/128/256, bottleneck 512 at 4x8."""


def _choice(value: str, valid: Sequence[str], what: str) -> str:
    """`value` if it is one of `valid`, else a one-line ValueError listing them."""
    if value not in valid:
        raise ValueError(f"Unknown {what} {value!r}; valid values are {list(valid)}.")
    return value


def _check_initializer(initializer: str) -> str:
    """`initializer` if Keras knows the name (e.g. "glorot_uniform", "he_normal"), else ValueError."""
    try:
        keras.initializers.get(initializer)
    except (ValueError, TypeError):
        raise ValueError(
            f"Unknown kernel initializer {initializer!r}; use a Keras name such as 'glorot_uniform' or 'he_normal'."
        ) from None
    return initializer


def scaled_filters(filters: int, width: float = 1.0, multiple: int = 1) -> int:
    """round(filters * width), at least `MIN_FILTERS`, then rounded to the nearest multiple of
    `multiple` (at least `multiple`), so GroupNorm's groups and the dilated branches divide it."""
    if width <= 0:
        raise ValueError(f"width must be a positive multiplier of every filter count, got {width}.")
    count = max(MIN_FILTERS, math.floor(filters * width + 0.5))
    return max(multiple, multiple * math.floor(count / multiple + 0.5))


def group_norm_groups(width: float = 1.0) -> int:
    """GroupNorm's groups in a model of `width`: round(8 * width), at least 1, so every level has the same
    channels per group as the full-width model (4 in the first level of 32)."""
    return max(1, math.floor(GROUP_NORM_GROUPS * width + 0.5))


def normalization(norm: str, name: str, groups: int = GROUP_NORM_GROUPS) -> keras.layers.Layer:
    """A fresh normalization layer: "batch" = BatchNormalization (synchronized across replicas under a
    multi-device `tf.distribute` strategy: build the model inside its scope; on JAX a `keras.distribution`
    computes the statistics over the global batch by itself); "group" = GroupNormalization with `groups`
    groups (what the original notebooks called "adaptive normalization"); "adaptive" = the
    lambda x + mu BN(x) layer of Chen et al. 2017 (`helpers.model.layers.AdaptiveNormalization`)."""
    _choice(norm, NORMALIZATIONS, "norm")
    if norm == "batch":
        # Synchronized over the replicas of a multi-device strategy, so a run's numbers do not depend on the
        # number of GPUs it ran on (docs/performance.md); plain per-device statistics on one device.
        synchronized = backend.replicas_in_sync() > 1
        return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, synchronized=synchronized, name=name)
    if norm == "group":
        return keras.layers.GroupNormalization(groups=groups, name=name)
    return AdaptiveNormalization(momentum=BN_MOMENTUM, name=name)


def unet_block(x, filters: int, *, norm: str = "batch", initializer: str = "glorot_uniform", activation: str = "relu",
               groups: int = GROUP_NORM_GROUPS, name: str = "block"):
    """2 x (3x3 same Conv2D with bias -> normalization -> activation), the report's UNet block."""
    for i in (1, 2):
        x = keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer=initializer, name=f"{name}_conv{i}")(x)
        x = normalization(norm, f"{name}_norm{i}", groups)(x)
        x = keras.layers.Activation(activation, name=f"{name}_act{i}")(x)
    return x


def dilated_bottleneck_block(x, filters: int, *, norm: str = "batch", initializer: str = "glorot_uniform",
                             activation: str = "relu", groups: int = GROUP_NORM_GROUPS, name: str = "bottleneck"):
    """Net 10's bottleneck: the block's first conv becomes four parallel 3x3 convs with dilation
    rates 1, 2, 4, 8, each `filters / 4` wide and concatenated (-> `filters` channels) -> norm ->
    activation; then the block's second 3x3 conv -> norm -> activation mixes the rates.

    Same width and exactly the same parameter count as the plain bottleneck block, so the ablation
    isolates the dilation itself. `filters` must be divisible by 4.
    """
    if filters % len(DILATION_RATES):
        raise ValueError(f"dilated_bottleneck needs filters divisible by {len(DILATION_RATES)}, got {filters}.")
    branches = [
        keras.layers.Conv2D(filters // len(DILATION_RATES), 3, padding="same", dilation_rate=rate,
                            kernel_initializer=initializer, name=f"{name}_dil{rate}")(x)
        for rate in DILATION_RATES
    ]
    x = keras.layers.Concatenate(name=f"{name}_rates")(branches)
    x = normalization(norm, f"{name}_norm1", groups)(x)
    x = keras.layers.Activation(activation, name=f"{name}_act1")(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer=initializer, name=f"{name}_conv2")(x)
    x = normalization(norm, f"{name}_norm2", groups)(x)
    return keras.layers.Activation(activation, name=f"{name}_act2")(x)


def squeeze_excitation(x, reduction: int = SE_REDUCTION, name: str = "se"):
    """Squeeze-Excitation (Hu et al. 2018): GAP -> Dense(C / reduction, ReLU) -> Dense(C, sigmoid)
    -> rescale each channel of `x`. The hidden width is at least 1."""
    channels = x.shape[-1]
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = keras.layers.Dense(max(1, channels // reduction), activation="relu", name=f"{name}_reduce")(s)
    s = keras.layers.Dense(channels, activation="sigmoid", name=f"{name}_expand")(s)
    return keras.layers.Multiply(name=f"{name}_rescale")([x, s])


def unet_features(x, *, depth: int = 2, filters: int = 32, bottleneck: int | None = None, norm: str = "batch",
                  initializer: str = "glorot_uniform", activation: str = "relu", se: bool = False,
                  dilated_bottleneck: bool = False, width: float = 1.0, name: str = "unet"):
    """The UNet body up to its last decoder block, (B, H, W, C) -> (B, H, W, filters * width).

    Encoder level i (0-based) has `filters * 2**i` filters and ends in 2x2 max pooling; the
    bottleneck (`bottleneck`, default `filters * 2**depth`) sits at (H / 2**depth, W / 2**depth),
    plain, dilated (`dilated_bottleneck`) and/or followed by Squeeze-Excitation (`se`); each decoder
    level upsamples by 2 (nearest), concatenates the skip and runs a block of the skip's width. Every
    count is scaled by `width` (`scaled_filters`), to a multiple of GroupNorm's groups (`group_norm_groups`)
    and of 4 (and the groups) for the dilated bottleneck.
    """
    _choice(norm, NORMALIZATIONS, "norm")
    _check_initializer(initializer)
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer (number of poolings), got {depth!r}.")
    size = 2**depth
    if any(dim is not None and dim % size for dim in x.shape[1:3]):
        raise ValueError(f"Input size {tuple(x.shape[1:3])} is not divisible by 2**depth = {size}; lower depth.")
    groups = group_norm_groups(width)
    multiple = groups if norm == "group" else 1
    widths = [scaled_filters(filters * 2**i, width, multiple) for i in range(depth)]
    bottleneck_multiple = math.lcm(multiple, len(DILATION_RATES)) if dilated_bottleneck else multiple
    bottleneck = filters * size if bottleneck is None else bottleneck
    bottleneck_width = scaled_filters(bottleneck, width, bottleneck_multiple)
    block = {"norm": norm, "initializer": initializer, "activation": activation, "groups": groups}

    skips = []
    for i, level_width in enumerate(widths, start=1):
        x = unet_block(x, level_width, name=f"{name}_down{i}", **block)
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"{name}_pool{i}")(x)
    if dilated_bottleneck:
        x = dilated_bottleneck_block(x, bottleneck_width, name=f"{name}_bottleneck", **block)
    else:
        x = unet_block(x, bottleneck_width, name=f"{name}_bottleneck", **block)
    if se:
        x = squeeze_excitation(x, name=f"{name}_se")
    for i in reversed(range(1, depth + 1)):
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up{i}")(x)
        x = keras.layers.Concatenate(name=f"{name}_skip{i}")([x, skips[i - 1]])
        x = unet_block(x, widths[i - 1], name=f"{name}_dec{i}", **block)
    return x


def _softmax_head(x, num_classes: int, name: str):
    """1x1 Conv2D to per-pixel class probabilities (float32 even under a mixed-precision policy)."""
    return keras.layers.Conv2D(num_classes, 1, activation="softmax", dtype="float32", name=name)(x)


def _model_inputs(input_shape, channels: Sequence[str]):
    """The image input and what the networks see: the image itself, or `FeatureChannels(channels)` of it."""
    image = keras.Input(shape=tuple(input_shape), name="image")
    channels = tuple(channels)
    seen = FeatureChannels(channels, name="feature_channels")(image) if channels else image
    return image, seen


def unet(input_shape=INPUT_SHAPE, num_classes: int = NUM_CLASSES, *, depth: int = 2, filters: int = 32,
         bottleneck: int | None = None, channels: Sequence[str] = (), norm: str = "batch",
         initializer: str = "glorot_uniform", activation: str = "relu", se: bool = False,
         dilated_bottleneck: bool = False, width: float = 1.0, name: str = "unet") -> keras.Model:
    """A UNet (defaults: the report's Baseline, 473,669 parameters) from grey images in [0, 1] to
    per-pixel softmax (B, H, W, num_classes); `channels` puts `FeatureChannels` first; the other
    options are those of `unet_features`. `GLOBAL_BRANCH` as options gives Net 8's Global net alone."""
    image, seen = _model_inputs(input_shape, channels)
    features = unet_features(seen, depth=depth, filters=filters, bottleneck=bottleneck, norm=norm,
                             initializer=initializer, activation=activation, se=se,
                             dilated_bottleneck=dilated_bottleneck, width=width, name=name)
    return keras.Model(image, _softmax_head(features, num_classes, "probabilities"), name=name)


def dual_unet(input_shape=INPUT_SHAPE, num_classes: int = NUM_CLASSES, *, kind: str = "twin", fusion: str = "concat",
              channels: Sequence[str] = (), norm: str = "batch", initializer: str = "glorot_uniform",
              activation: str = "relu", se: bool = False, dilated_bottleneck: bool = False, width: float = 1.0,
              name: str | None = None) -> keras.Model:
    """Two UNet branches A and B, each ending in its own 1x1 softmax head, fused into one softmax.

    Branches (`kind`):
      - "twin" (Net 6): A and B are both the Baseline UNet, both on the same input (the image
        and `channels`, computed once).
      - "global_local" (Net 8): A = Global (`GLOBAL_BRANCH`: 4 levels 32/64/128/256, bottleneck 512
        at 4x8) on the image and `channels`; B = Local (the Baseline) on the raw image alone.
    `norm`, `initializer`, `activation`, `se`, `dilated_bottleneck` and `width` apply to both branches
    (SE and dilation at each branch's bottleneck); `initializer` also sets the fusion conv's kernel.

    Fusion (`fusion`), with p_A, p_B the branch softmaxes and F_A, F_B their last decoder features:
      - "concat" (the original's): concatenate p_A and p_B -> 1x1 Conv2D softmax.
      - "add": the average (p_A + p_B) / 2 of the two softmaxes (a distribution; no weights).
      - "continue_add" ("continuation then addition"): B continues from A, its input being its own
        input concatenated with F_A (in global_local, Local refines on top of Global's features);
        the output is (p_A + p_B) / 2.
      - "gated" (the learned "fusion mechanism"): a per-pixel gate g = sigmoid(1x1 Conv2D of
        [F_A, F_B]) and output g p_A + (1 - g) p_B, a per-pixel convex mix (`GatedBlend`).
    """
    _choice(kind, DUAL_KINDS, "dual_unet kind")
    _choice(fusion, FUSIONS, "fusion")
    _check_initializer(initializer)
    image, seen = _model_inputs(input_shape, channels)
    common = {"norm": norm, "initializer": initializer, "activation": activation, "se": se,
              "dilated_bottleneck": dilated_bottleneck, "width": width}
    if kind == "twin":
        (name_a, spec_a, input_a) = ("a", BASELINE_BRANCH, seen)
        (name_b, spec_b, input_b) = ("b", BASELINE_BRANCH, seen)
    else:
        (name_a, spec_a, input_a) = ("global", GLOBAL_BRANCH, seen)
        (name_b, spec_b, input_b) = ("local", BASELINE_BRANCH, image)

    features_a = unet_features(input_a, name=name_a, **spec_a, **common)
    if fusion == "continue_add":
        input_b = keras.layers.Concatenate(name=f"{name_b}_continues_{name_a}")([input_b, features_a])
    features_b = unet_features(input_b, name=name_b, **spec_b, **common)
    p_a = _softmax_head(features_a, num_classes, f"{name_a}_probabilities")
    p_b = _softmax_head(features_b, num_classes, f"{name_b}_probabilities")

    if fusion == "concat":
        both = keras.layers.Concatenate(name="fusion_concat")([p_a, p_b])
        output = keras.layers.Conv2D(num_classes, 1, activation="softmax", kernel_initializer=initializer,
                                     dtype="float32", name="probabilities")(both)
    elif fusion in ("add", "continue_add"):
        output = keras.layers.Average(dtype="float32", name="probabilities")([p_a, p_b])
    else:
        both = keras.layers.Concatenate(name="fusion_gate_input")([features_a, features_b])
        gate = keras.layers.Conv2D(1, 1, activation="sigmoid", kernel_initializer=initializer, dtype="float32",
                                   name="fusion_gate")(both)
        output = GatedBlend(dtype="float32", name="probabilities")([gate, p_a, p_b])
    return keras.Model(image, output, name=name or f"dual_unet_{kind}_{fusion}")


_BUILDERS = {"unet": unet, "dual_unet": dual_unet}


def build_model(arch: str, **kwargs) -> keras.Model:
    """Build `arch` ("unet" or "dual_unet") from plain-data options (the builder's keyword
    arguments); unknown architectures or option names raise a one-line ValueError listing valid ones."""
    builder = _BUILDERS[_choice(arch, ARCHITECTURES, "arch")]
    valid = list(inspect.signature(builder).parameters)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} for arch {arch!r}; valid options are {valid}.")
    return builder(**kwargs)


def count_params(model: keras.Model) -> int:
    """All weights of `model`, trainable or not (BatchNorm moving statistics included): the count
    the report's 473,669 for the Baseline refers to."""
    return int(model.count_params())


def load_model(path) -> keras.Model:
    """Reload a saved `.keras` model of this project: the custom layers (`helpers.model.layers`, imported here) and
    losses (`helpers.model.losses`) are registered before Keras reads the file."""
    import helpers.model.losses  # noqa: F401  (registers the losses and metrics)

    return keras.saving.load_model(path)
