"""helpers.model.models: parameter counts against hand formulas and the report, shapes, options, errors,
training steps, and `.keras` round trips (one in a fresh process with `helpers.model.models.load_model`)."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from helpers.model.layers import FEATURE_CHANNELS, AdaptiveNormalization, feature_channel_count
from helpers.model.models import (
    DUAL_KINDS,
    FUSIONS,
    GLOBAL_BRANCH,
    NORMALIZATIONS,
    build_model,
    count_params,
    dual_unet,
    scaled_filters,
    unet,
)

TINY = 0.125  # filters 4/8, bottleneck 16: builds and trains in well under a second per step


def _hand_count_unet(in_channels, widths, bottleneck, num_classes=5):
    """Weights of a UNet with BN blocks, counted by hand: 3x3 convs with bias, 4 BN weights per channel."""
    def block(c_in, c_out):
        return (9 * c_in * c_out + c_out + 4 * c_out) + (9 * c_out * c_out + c_out + 4 * c_out)

    total, c_in = 0, in_channels
    for w in widths:
        total += block(c_in, w)
        c_in = w
    total += block(c_in, bottleneck)
    c_in = bottleneck
    for w in reversed(widths):
        total += block(c_in + w, w)
        c_in = w
    return total + c_in * num_classes + num_classes


def _terrain_batch(n=4, seed=0):
    """Smooth images whose mask is a banding of their brightness: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:64, 0:128]
    images = np.stack([0.5 + 0.4 * np.sin(cols / rng.uniform(8, 20) + rng.uniform(0, 6)) * np.cos(rows / rng.uniform(6, 15))
                       for _ in range(n)])
    masks = np.digitize(images, [0.2, 0.4, 0.6, 0.8]).astype("int32")
    return images[..., None].astype("float32"), masks


def _predict(model, x):
    """Inference-mode probabilities by a direct call (no `predict` tracing: fast for tiny batches)."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def test_baseline_has_the_reports_473669_parameters():
    model = unet()
    assert count_params(model) == 473_669 == _hand_count_unet(1, [32, 64], 128)


def test_global_net_parameters_match_hand_count():
    assert count_params(unet(**GLOBAL_BRANCH)) == _hand_count_unet(1, [32, 64, 128, 256], 512) == 7_857_989
    with_channels = count_params(unet(**GLOBAL_BRANCH, channels=FEATURE_CHANNELS))
    assert with_channels == _hand_count_unet(feature_channel_count(FEATURE_CHANNELS), [32, 64, 128, 256], 512)


def test_dual_global_local_is_its_two_branches_plus_the_fusion_conv():
    dual = count_params(dual_unet(kind="global_local", fusion="concat", channels=FEATURE_CHANNELS))
    branches = _hand_count_unet(8, [32, 64, 128, 256], 512) + _hand_count_unet(1, [32, 64], 128)
    assert dual == branches + (2 * 5 * 5 + 5)


def test_dilated_bottleneck_keeps_the_parameter_count_and_uses_four_rates():
    model = unet(dilated_bottleneck=True)
    assert count_params(model) == 473_669
    rates = sorted(layer.dilation_rate[0] for layer in model.layers if "_dil" in layer.name)
    assert rates == [1, 2, 4, 8]


def test_squeeze_excitation_reduces_by_16():
    model = unet(se=True)
    denses = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in denses] == [128 // 16, 128]
    assert count_params(model) == 473_669 + (128 * 8 + 8) + (8 * 128 + 128)


@pytest.mark.parametrize("options", [
    {"arch": "unet"},
    {"arch": "unet", "channels": list(FEATURE_CHANNELS), "se": True, "dilated_bottleneck": True},
    *[{"arch": "unet", "norm": norm} for norm in NORMALIZATIONS],
    *[{"arch": "dual_unet", "kind": kind, "fusion": fusion, "channels": ["edges", "wavelet"]}
      for kind in DUAL_KINDS for fusion in FUSIONS],
])
def test_every_model_maps_images_to_a_per_pixel_softmax(options):
    model = build_model(**options, width=TINY)
    probabilities = _predict(model, _terrain_batch(2)[0])
    assert probabilities.shape == (2, 64, 128, 5) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    assert probabilities.min() >= 0


def _block_conv_filters(model):
    return [layer.filters for layer in model.layers if layer.name.endswith("_conv1")]


def test_width_scales_every_filter_count():
    assert _block_conv_filters(unet(width=0.25)) == [8, 16, 32, 16, 8]
    assert _block_conv_filters(unet(width=0.05)) == [4, 4, 6, 4, 4]  # at least 4; 128 * 0.05 = 6.4 -> 6
    assert _block_conv_filters(unet(width=0.3, norm="group")) == [10, 20, 38, 20, 10]  # multiples of 2 groups
    assert scaled_filters(512, 0.3) == 154 and scaled_filters(20, 0.3, multiple=4) == 8


@pytest.mark.parametrize("width", [1.0, 0.5, 0.25])
def test_group_norm_keeps_the_full_width_channels_per_group_at_every_width(width):
    model = unet(width=width, norm="group")
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.GroupNormalization)]
    assert {layer.groups for layer in norms} == {round(8 * width)}
    first = next(layer for layer in norms if layer.name == "unet_down1_norm1")
    assert first.input.shape[-1] // first.groups == 4  # 32 channels in 8 groups at full width


def test_he_initializer_on_block_and_fusion_convs_only():
    model = dual_unet(kind="twin", fusion="concat", initializer="he_normal", width=TINY)
    convs = {layer.name: layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)}
    initializers = {name: type(conv.kernel_initializer).__name__ for name, conv in convs.items()}
    assert all(init == "HeNormal" for name, init in initializers.items() if "_conv" in name or name == "probabilities")
    assert initializers["a_probabilities"] == initializers["b_probabilities"] == "GlorotUniform"


def test_global_local_branches_see_features_and_raw_image():
    model = dual_unet(kind="global_local", channels=FEATURE_CHANNELS, width=TINY)
    assert model.get_layer("global_down1_conv1").kernel.shape[2] == 8
    assert model.get_layer("local_down1_conv1").kernel.shape[2] == 1
    continued = dual_unet(kind="global_local", fusion="continue_add", channels=FEATURE_CHANNELS, width=TINY)
    assert continued.get_layer("local_down1_conv1").kernel.shape[2] == 1 + 4  # image + Global's last features


def test_add_fusion_is_the_mean_of_the_branch_softmaxes():
    model = dual_unet(kind="twin", fusion="add", width=TINY)
    branches = keras.Model(model.input, [model.get_layer(f"{b}_probabilities").output for b in ("a", "b")])
    x = _terrain_batch(2)[0]
    p_a, p_b = (p.numpy() for p in branches(x, training=False))
    np.testing.assert_allclose(_predict(model, x), (p_a + p_b) / 2, atol=1e-6)


def test_adaptive_norm_uses_the_chen_layer():
    norms = [layer for layer in unet(norm="adaptive", width=TINY).layers if isinstance(layer, AdaptiveNormalization)]
    assert len(norms) == 10


@pytest.mark.parametrize(("call", "message"), [
    (lambda: build_model("resnet"), "Unknown arch 'resnet'; valid values are \\['unet', 'dual_unet'\\]"),
    (lambda: build_model("unet", kind="twin"), "Unknown option\\(s\\) \\['kind'\\]"),
    (lambda: build_model("dual_unet", fusion="mean"), "Unknown fusion 'mean'"),
    (lambda: build_model("dual_unet", kind="triple"), "Unknown dual_unet kind"),
    (lambda: build_model("unet", norm="layer"), "Unknown norm 'layer'"),
    (lambda: build_model("unet", channels=["dct"]), "Unknown feature channel"),
    (lambda: build_model("unet", width=0), "width must be a positive"),
    (lambda: build_model("unet", initializer="he_magic"), "Unknown kernel initializer"),
    (lambda: build_model("unet", depth=7), "not divisible by 2\\*\\*depth"),
])
def test_bad_options_raise_one_line_value_errors(call, message):
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


def _loss_history(model, steps=3):
    """Training-mode losses of `steps` Adam steps on one batch; eager, since tracing costs more here."""
    images, masks = _terrain_batch(4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", run_eagerly=True)
    return [float(model.train_on_batch(images, masks)) for _ in range(steps)]


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    {"arch": "unet", "norm": "batch"},
    {"arch": "unet", "norm": "group"},
    {"arch": "unet", "norm": "adaptive"},
    {"arch": "unet", "se": True},
    {"arch": "unet", "dilated_bottleneck": True, "channels": list(FEATURE_CHANNELS)},
    *[{"arch": "dual_unet", "kind": "twin", "fusion": fusion} for fusion in FUSIONS],
    {"arch": "dual_unet", "kind": "global_local", "fusion": "concat", "channels": ["threshold"]},
])
def test_a_few_training_steps_lower_the_loss(options):
    keras.utils.set_random_seed(0)
    losses = _loss_history(build_model(**options, width=TINY))
    print(options, [round(loss, 4) for loss in losses])
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]


def test_keras_file_round_trip_gives_identical_predictions(tmp_path):
    model = dual_unet(kind="global_local", fusion="gated", channels=FEATURE_CHANNELS, norm="adaptive", se=True,
                      dilated_bottleneck=True, width=TINY)
    x = _terrain_batch(2)[0]
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(_predict(reloaded, x), _predict(model, x))


_NET6 = {"arch": "dual_unet", "kind": "twin", "fusion": "concat", "channels": list(FEATURE_CHANNELS)}
_NET8 = {**_NET6, "kind": "global_local"}
REPORT_ARCHITECTURES = {  # the distinct shapes of Table 1
    "baseline": {"arch": "unet"},  # also Networks 1 and 4 (same shape, other data)
    "net2": {"arch": "unet", "channels": list(FEATURE_CHANNELS)},  # also Networks 3 and 5
    "net6": _NET6,
    "net7": {**_NET6, "norm": "group"},
    "net8": _NET8,  # also Network 9
    "net10": {**_NET8, "se": True, "dilated_bottleneck": True},
    "final": {**_NET8, "initializer": "he_normal"},
}

_RELOAD_SCRIPT = """
import json, sys
import numpy as np
from helpers.model.models import load_model
folder = sys.argv[1]
x = np.load(f"{folder}/x.npy")
for name in json.loads(sys.argv[2]):
    model = load_model(f"{folder}/{name}.keras")
    np.save(f"{folder}/{name}_reloaded.npy", model(x, training=False).numpy())
"""


@pytest.mark.slow
def test_report_architectures_train_save_and_reload_in_a_fresh_process(tmp_path):
    """Every architecture of Table 1: one training step, save, reload in a fresh process with `helpers.model.models.load_model`."""
    x, masks = _terrain_batch(2)
    np.save(tmp_path / "x.npy", x)
    for name, options in REPORT_ARCHITECTURES.items():
        keras.utils.set_random_seed(0)
        model = build_model(**options, width=0.25)
        model.compile(optimizer="adamw", loss="sparse_categorical_crossentropy", run_eagerly=True)
        model.train_on_batch(x, masks)
        model.save(tmp_path / f"{name}.keras")
        np.save(tmp_path / f"{name}.npy", _predict(model, x))
    command = [sys.executable, "-c", _RELOAD_SCRIPT, str(tmp_path), json.dumps(list(REPORT_ARCHITECTURES))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in REPORT_ARCHITECTURES:
        reloaded, original = np.load(tmp_path / f"{name}_reloaded.npy"), np.load(tmp_path / f"{name}.npy")
        np.testing.assert_array_equal(reloaded, original, err_msg=name)
