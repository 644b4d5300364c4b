"""helpers.data.augment: geometric augmentation against np.flip and hand-built images, blending against
hand-built reference masks and plain copies."""
import json

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers.configs.constants import BIG_ROCK
from helpers.data.augment import blend_big_rocks, geometric_augmenter

H, W = 64, 128


def block_masks(n, classes=(0, 1, 2, 3, 4), block=8, seed=0):
    """Masks made of constant 8x8 blocks of random classes, so most pixels sit inside a region."""
    rng = np.random.default_rng(seed)
    blocks = rng.choice(classes, size=(n, H // block, W // block))
    return np.kron(blocks, np.ones((block, block), dtype=int)).astype(np.uint8)


def run_augmenter(augment, images, masks):
    """Apply `augment` through a batched tf.data map, as training does."""
    dataset = tf.data.Dataset.from_tensor_slices((images[..., None], masks)).batch(len(images))
    x, y = next(iter(dataset.map(augment)))
    return x.numpy()[..., 0], y.numpy()


# ---------------------------------------------------------------- geometric augmentation

def test_horizontal_flip_matches_np_flip_for_image_and_mask():
    rng = np.random.default_rng(1)
    images = rng.random((16, H, W), dtype=np.float32)
    masks = rng.integers(0, 5, (16, H, W)).astype(np.uint8)
    x, y = run_augmenter(geometric_augmenter("horizontal", translate=0, zoom=0, seed=3), images, masks)
    flipped = []
    for i in range(16):
        if np.array_equal(x[i], images[i]):
            assert np.array_equal(y[i], masks[i])
            flipped.append(False)
        else:
            assert np.array_equal(x[i], np.flip(images[i], axis=1))
            assert np.array_equal(y[i], np.flip(masks[i], axis=1))
            flipped.append(True)
    assert 0 < sum(flipped) < 16


def test_horizontal_and_vertical_flips_are_independent():
    rng = np.random.default_rng(2)
    images = rng.random((32, H, W), dtype=np.float32)
    masks = rng.integers(0, 5, (32, H, W)).astype(np.uint8)
    x, y = run_augmenter(geometric_augmenter(translate=0, zoom=0, seed=5), images, masks)
    kinds = set()
    for i in range(32):
        options = {
            "none": (images[i], masks[i]),
            "horizontal": (np.flip(images[i], 1), np.flip(masks[i], 1)),
            "vertical": (np.flip(images[i], 0), np.flip(masks[i], 0)),
            "both": (np.flip(images[i], (0, 1)), np.flip(masks[i], (0, 1))),
        }
        matches = [k for k, (a, b) in options.items() if np.array_equal(x[i], a) and np.array_equal(y[i], b)]
        assert len(matches) == 1
        kinds.add(matches[0])
    assert kinds == {"none", "horizontal", "vertical", "both"}


def test_masks_stay_integers_in_class_range_and_change():
    masks = block_masks(12, seed=3)
    images = masks / 4.0
    x, y = run_augmenter(geometric_augmenter(seed=1), images.astype(np.float32), masks)
    assert y.dtype == np.uint8
    assert set(np.unique(y)) <= {0, 1, 2, 3, 4}
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    changed = [not np.array_equal(y[i], masks[i]) for i in range(12)]
    assert sum(changed) >= 10


def test_image_and_mask_move_together():
    masks = block_masks(12, seed=4)
    images = (masks / 4.0).astype(np.float32)  # the grey level encodes the class

    augment = geometric_augmenter(translate=0.2, zoom=0.2, seed=2, interpolation="nearest")
    x, y = run_augmenter(augment, images, masks)
    assert np.array_equal(np.rint(x * 4).astype(np.uint8), y)

    # bilinear images blur class edges that the nearest-sampled mask keeps sharp, so compare
    # away from edges: pixels whose 5x5 neighbourhood holds one class (the image border counts)
    x, y = run_augmenter(geometric_augmenter(translate=0.2, zoom=0.2, seed=2), images, masks)
    agree = np.rint(x * 4).astype(np.uint8) == y
    box = np.ones((5, 5), np.uint8)
    interior = np.stack([
        cv2.erode(m, box, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        == cv2.dilate(m, box, borderType=cv2.BORDER_CONSTANT, borderValue=255)
        for m in y
    ])
    assert interior.mean() > 0.25
    assert agree[interior].mean() > 0.99
    assert agree.mean() > 0.85


def test_no_constant_zero_fill_in_masks():
    masks = block_masks(16, classes=(1, 2, 3, 4), seed=5)  # no background anywhere
    images = (masks / 4.0).astype(np.float32)
    for fill_mode in ("reflect", "nearest"):
        augment = geometric_augmenter(translate=0.3, zoom=0.3, seed=6, fill_mode=fill_mode)
        _, y = run_augmenter(augment, images, masks)
        assert not np.any(y == 0)
    # control: a constant fill does write label 0, so the check above can fail
    constant = keras.layers.RandomTranslation(0.3, 0.3, fill_mode="constant", seed=6)
    out = constant({"images": images[..., None], "segmentation_masks": masks[..., None]}, training=True)
    assert np.any(out["segmentation_masks"].numpy() == 0)


def test_augmenter_is_seeded_and_draws_anew_each_call():
    rng = np.random.default_rng(7)
    images = rng.random((8, H, W), dtype=np.float32)
    masks = rng.integers(0, 5, (8, H, W)).astype(np.uint8)
    first, second = geometric_augmenter(seed=11), geometric_augmenter(seed=11)
    a1, b1 = first(images[..., None], masks)
    a2, b2 = second(images[..., None], masks)
    assert np.array_equal(a1.numpy(), a2.numpy()) and np.array_equal(b1.numpy(), b2.numpy())
    a3, _ = first(images[..., None], masks)
    assert not np.array_equal(a1.numpy(), a3.numpy())
    a4, _ = geometric_augmenter(seed=12)(images[..., None], masks)
    assert not np.array_equal(a1.numpy(), a4.numpy())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"flip": "diagonal"},
        {"translate": -0.1},
        {"zoom": 1.5},
        {"fill_mode": "constant"},
        {"interpolation": "bicubic"},
        {"seed": -1},
    ],
)
def test_augmenter_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        geometric_augmenter(**kwargs)


def test_augmenter_rejects_unbatched_or_channelless_inputs():
    augment = geometric_augmenter()
    with pytest.raises(ValueError, match="batched"):
        augment(np.zeros((2, H, W), np.float32), np.zeros((2, H, W), np.uint8))


# ---------------------------------------------------------------- big-rock blending

def blending_data():
    """Six smooth dark images; images 0 and 3 hold bright textured big rock (0 at two borders)."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:H, 0:W]
    images = np.stack([0.2 + 0.1 * np.sin(cols / 9.0 + i) + 0.05 * rows / H for i in range(6)])
    masks = block_masks(6, classes=(0, 1, 2, 3), seed=9)
    masks[0, 0:10, 118:128] = BIG_ROCK  # touches the top and right borders
    masks[3, 20:30, 40:52] = BIG_ROCK
    masks[3, 33:36, 60:64] = BIG_ROCK  # a second rock: one box spans both
    rock = masks == BIG_ROCK
    images[rock] = 0.6 + 0.3 * rng.random(rock.sum())
    images = (np.rint(images * 255) / 255).astype(np.float32)
    return images, masks


def rock_box(mask):
    rows, cols = np.nonzero(mask == BIG_ROCK)
    return rows.min(), cols.min(), rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def test_blend_counts_order_and_inputs_untouched():
    images, masks = blending_data()
    images_before, masks_before = images.copy(), masks.copy()
    out_images, out_masks, info = blend_big_rocks(images, masks, attempts_per_source=3, seed=0)
    assert np.array_equal(images, images_before) and np.array_equal(masks, masks_before)
    assert info["n_sources"] == 2 and info["n_per_image"] == 6 and info["n_per_source"] == 6
    assert info["n_new"] == 12 and out_images.shape == (18, H, W) and out_masks.shape == (18, H, W)
    assert out_images.dtype == np.float32 and out_masks.dtype == np.uint8
    assert np.array_equal(out_images[:6], images) and np.array_equal(out_masks[:6], masks)
    assert np.array_equal(info["destination"][:6], np.arange(6))
    assert np.array_equal(info["source"][6:], [0, 0, 0, 3, 3, 3])
    assert np.all(np.asarray(info["source"]) != np.asarray(info["destination"]))
    assert json.loads(json.dumps(info)) == info  # plain data, fit for a JSON record


def test_blend_is_deterministic_under_its_seed():
    images, masks = blending_data()
    a = blend_big_rocks(images, masks, attempts_per_source=2, seed=4)
    b = blend_big_rocks(images, masks, attempts_per_source=2, seed=4)
    c = blend_big_rocks(images, masks, attempts_per_source=2, seed=5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("method", ["poisson", "paste"])
def test_blended_masks_match_a_hand_built_reference(method):
    images, masks = blending_data()
    _, out_masks, info = blend_big_rocks(images, masks, attempts_per_source=3, seed=1, method=method)
    assert set(np.unique(out_masks)) <= {0, 1, 2, 3, 4}
    expected_new_rock = 0
    for k, (source, destination, (top, left)) in enumerate(
        zip(info["source"], info["destination"], info["offset"])
    ):
        r0, c0, h, w = rock_box(masks[source])
        expected = masks[destination].copy()
        region = expected[top:top + h, left:left + w]
        expected_new_rock += np.sum((masks[source, r0:r0 + h, c0:c0 + w] == BIG_ROCK) & (region != BIG_ROCK))
        region[masks[source, r0:r0 + h, c0:c0 + w] == BIG_ROCK] = BIG_ROCK
        assert 1 <= top and top + h <= H - 1 and 1 <= left and left + w <= W - 1
        assert np.array_equal(out_masks[6 + k], expected)
    gained = np.sum(out_masks[6:] == BIG_ROCK) - np.sum(masks[info["destination"]] == BIG_ROCK)
    assert gained == expected_new_rock > 0


def test_paste_copies_source_pixels_and_poisson_blends_them():
    images, masks = blending_data()
    pasted, _, info = blend_big_rocks(images, masks, attempts_per_source=3, seed=2, method="paste")
    blended, _, info_p = blend_big_rocks(images, masks, attempts_per_source=3, seed=2, method="poisson")
    assert np.array_equal(info["offset"], info_p["offset"])  # same draws, only the pixels differ
    for k, (source, destination, (top, left)) in enumerate(
        zip(info["source"], info["destination"], info["offset"])
    ):
        r0, c0, h, w = rock_box(masks[source])
        rock = masks[source, r0:r0 + h, c0:c0 + w] == BIG_ROCK
        source_patch = images[source, r0:r0 + h, c0:c0 + w]
        outside = np.ones((H, W), bool)
        outside[top:top + h, left:left + w] = False
        for result in (pasted, blended):
            assert np.array_equal(result[6 + k][outside], images[destination][outside])
        assert np.array_equal(pasted[6 + k, top:top + h, left:left + w][rock], source_patch[rock])

        region = blended[6 + k, top:top + h, left:left + w]
        before = images[destination, top:top + h, left:left + w]
        assert np.mean(region[rock] != before[rock]) > 0.5  # the blended region really changed
        assert not np.array_equal(region[rock], source_patch[rock])  # and is not a plain copy
        # the source's texture came along: horizontal gradients inside the rock follow the source's
        pairs = rock[:, 1:] & rock[:, :-1]
        gradient = {name: np.diff(a, axis=1)[pairs] for name, a in
                    (("source", source_patch), ("blended", region), ("before", before))}
        assert np.corrcoef(gradient["source"], gradient["blended"])[0, 1] > 0.3
        assert np.abs(gradient["blended"]).mean() > 2 * np.abs(gradient["before"]).mean()


def test_no_big_rock_returns_input_unchanged_with_note():
    images, masks = blending_data()
    masks[masks == BIG_ROCK] = 1
    out_images, out_masks, info = blend_big_rocks(images, masks)
    assert np.array_equal(out_images, images) and np.array_equal(out_masks, masks)
    assert info["n_new"] == 0 and info["n_sources"] == 0 and info["note"]


def test_blend_handles_a_rock_taller_than_the_margins_allow():
    images, masks = blending_data()
    masks[3][masks[3] == BIG_ROCK] = 1
    masks[3, :, 10:14] = BIG_ROCK  # full height: cropped to 62 rows to leave OpenCV its margin
    out_images, out_masks, info = blend_big_rocks(images, masks, attempts_per_source=2, seed=3)
    assert info["n_new"] == 6 + 2 * 2
    from_tall = np.flatnonzero(np.asarray(info["source"]) == 3)
    for k in from_tall:
        added = (out_masks[6 + k] == BIG_ROCK) & (masks[info["destination"][k]] != BIG_ROCK)
        assert added.any(axis=1).sum() <= H - 2
        assert np.all(out_masks[6 + k, 0] == masks[info["destination"][k], 0])


@pytest.mark.parametrize(
    "change, kwargs",
    [
        ("float_masks", {}),
        ("bright_images", {}),
        ("none", {"method": "copy"}),
        ("none", {"attempts_per_source": -1}),
        ("none", {"seed": 1.5}),
    ],
)
def test_blend_rejects_bad_input(change, kwargs):
    images, masks = blending_data()
    if change == "float_masks":
        masks = masks.astype(np.float64)
    if change == "bright_images":
        images = images * 255
    with pytest.raises(ValueError):
        blend_big_rocks(images, masks, **kwargs)
