"""Training-split augmentation: on-the-fly geometric transforms and offline big-rock blending.

`geometric_augmenter` wraps Keras augmentation layers (flip, translation, zoom) called on
`{"images": x, "segmentation_masks": m}`, so each mask moves with its image (nearest interpolation)
and comes back as integers. Fill modes are "reflect" or "nearest" only: a constant fill would write
its value into the mask, and 0 is a real class (background).

`blend_big_rocks` is the report's image/mask blending, an offline expansion of the training split:
the bounding box of one image's big-rock pixels is Poisson-blended (`cv2.seamlessClone`,
`MIXED_CLONE`) into another training image and those pixels are labelled big rock there.
No library ships this mask-aware expansion, so it is written here around OpenCV's solver.
"""
import cv2
import keras
import numpy as np

from helpers.configs.constants import BIG_ROCK, IMAGE_SHAPE
from helpers.data.dataset import validate_images_and_masks

FLIP_MODES = ("horizontal_and_vertical", "horizontal", "vertical", None)
FILL_MODES = ("reflect", "nearest")
INTERPOLATIONS = ("bilinear", "nearest")
BLEND_METHODS = ("poisson", "paste")


def _check_factor(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1), got {value!r}")
    return float(value)


def geometric_augmenter(
    flip="horizontal_and_vertical",
    translate=0.1,
    zoom=0.1,
    *,
    seed=0,
    interpolation="bilinear",
    fill_mode="reflect",
):
    """Function `(images, masks) -> (images, masks)` applying random flips, shifts and zooms.

    Works on batched tensors or numpy arrays, images (B, 64, 128, 1) float32 and masks (B, 64, 128) integer,
    eagerly, inside `tf.data.Dataset.map` (TensorFlow) or in `helpers.data.batches.ArrayBatches` (JAX); every sample
    draws its own transform. `flip` picks the axes
    ("horizontal_and_vertical" flips each axis independently: Keras' own mode of that name flips
    both axes or neither); `translate` is the largest shift and `zoom` the largest zoom in or out,
    as fractions of the image size (0 turns a transform off). The image uses `interpolation`, the
    mask always nearest. The layers compute in float32 whatever the global precision policy: under
    `mixed_bfloat16` they would otherwise hand the model bfloat16 images (and interpolate in bfloat16). The Keras
    layers used are exposed as `augment.pipeline`.
    """
    if flip not in FLIP_MODES:
        raise ValueError(f"flip must be one of {FLIP_MODES}, got {flip!r}")
    translate = _check_factor("translate", translate)
    zoom = _check_factor("zoom", zoom)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if fill_mode not in FILL_MODES:
        raise ValueError(
            f"fill_mode must be one of {FILL_MODES} (a constant fill writes a fake class into masks), "
            f"got {fill_mode!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")

    layer_seeds = iter(int(s) for s in np.random.SeedSequence(int(seed)).generate_state(4) >> 1)
    layers = []
    if flip in ("horizontal", "horizontal_and_vertical"):
        layers.append(keras.layers.RandomFlip("horizontal", seed=next(layer_seeds), dtype="float32"))
    if flip in ("vertical", "horizontal_and_vertical"):
        layers.append(keras.layers.RandomFlip("vertical", seed=next(layer_seeds), dtype="float32"))
    if translate > 0:
        layers.append(
            keras.layers.RandomTranslation(
                translate, translate, fill_mode=fill_mode, interpolation=interpolation,
                seed=next(layer_seeds), dtype="float32",
            )
        )
    if zoom > 0:
        layers.append(
            keras.layers.RandomZoom(
                zoom, fill_mode=fill_mode, interpolation=interpolation, seed=next(layer_seeds), dtype="float32"
            )
        )
    pipeline = keras.layers.Pipeline(layers, name="geometric_augmentation")

    def augment(images, masks):
        images = keras.ops.convert_to_tensor(images)
        masks = keras.ops.convert_to_tensor(masks)
        if len(images.shape) != 4 or len(masks.shape) != 3:
            raise ValueError(
                "augment expects batched images (B, 64, 128, 1) and masks (B, 64, 128), got "
                f"{tuple(images.shape)} and {tuple(masks.shape)}; batch the dataset before mapping"
            )
        if not layers:
            return images, masks
        outputs = pipeline(
            {"images": images, "segmentation_masks": masks[..., None]}, training=True
        )
        moved_masks = keras.ops.cast(keras.ops.round(outputs["segmentation_masks"][..., 0]), masks.dtype)
        return outputs["images"], moved_masks

    augment.pipeline = pipeline
    return augment


def _big_rock_box(mask, max_height, max_width):
    """(top, left, height, width) of the mask's big-rock pixels, centred-cropped to fit the limits."""
    rows, cols = np.nonzero(mask == BIG_ROCK)
    top, left = rows.min(), cols.min()
    height, width = rows.max() - top + 1, cols.max() - left + 1
    if height > max_height:
        top, height = top + (height - max_height) // 2, max_height
    if width > max_width:
        left, width = left + (width - max_width) // 2, max_width
    return int(top), int(left), int(height), int(width)


def _poisson_blend(destination, patch, rock, top, left):
    """Blend `patch` (uint8) into `destination` (uint8) with its top-left at (top, left).

    OpenCV solves inside the bounding box of the mask it is given, keeps that box's outer ring
    fixed to the destination, and clears the outer ring of the source. So the source gets a 2-pixel
    reflected border and the mask a 1-pixel ring around the patch: the solved region is then exactly
    the patch box, guided by the source gradients on big-rock pixels, and the destination must leave
    one pixel of room on every side of the box. OpenCV erodes the mask 3 times (3x3) before using
    the source gradients, so rock pixels within 3 pixels of non-rock pixels follow the destination's
    gradients: thin rocks bring little of their texture (as in the original, which used the same call).
    """
    height, width = rock.shape
    source = cv2.copyMakeBorder(patch, 2, 2, 2, 2, cv2.BORDER_REFLECT)
    clone_mask = np.zeros((height + 4, width + 4), np.uint8)
    clone_mask[1:-1, 1:-1] = 255
    clone_mask[2:-2, 2:-2] = np.where(rock, 255, 0)
    centre = (left - 1 + (width + 2) // 2, top - 1 + (height + 2) // 2)
    blended = cv2.seamlessClone(
        cv2.merge([source] * 3), cv2.merge([destination] * 3), clone_mask, centre, cv2.MIXED_CLONE
    )
    return blended[..., 0]


def blend_big_rocks(
    images,
    masks,
    *,
    attempts_per_image=1,
    attempts_per_source=25,
    seed=0,
    method="poisson",
):
    """Expand a training split with big-rock blends: returns (images, masks, info).

    Sources are the images holding big rock (class 4). Every image receives `attempts_per_image`
    blends from a random source other than itself, and every source is blended
    `attempts_per_source` times into random images other than itself, so exactly
    N * attempts_per_image + S * attempts_per_source new images follow the N originals (with the
    report's 1 and 25: 2 * 2028 + 25 * 47 = 5231 when the 2028 training images hold 47 sources).
    A blend crops the bounding box of the source's big-rock pixels (centre-cropped to 62 x 126 if
    larger, so OpenCV's one-pixel margin fits), places it at a uniformly random position that
    leaves one pixel to every border, blends it ("poisson": `cv2.seamlessClone` with `MIXED_CLONE`
    on 8-bit copies; "paste": plain copy of the big-rock pixels, for comparison) and sets the
    source's big-rock pixels to 4 in the mask. Pixels outside the box keep their exact values.
    Seeded and deterministic; the inputs are never modified. `info` is plain JSON-ready data: the
    counts and, per new image, its `source`, `destination` and `offset` [top, left] (lists in
    output order); with no big rock anywhere the input comes back unchanged with a `note`.
    """
    images, masks = validate_images_and_masks(images, masks)
    if method not in BLEND_METHODS:
        raise ValueError(f"method must be one of {BLEND_METHODS}, got {method!r}")
    for name, value in (("attempts_per_image", attempts_per_image), ("attempts_per_source", attempts_per_source)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")

    n_images = len(images)
    sources = np.flatnonzero((masks == BIG_ROCK).any(axis=(1, 2)))
    info = {
        "method": method,
        "n_original": int(n_images),
        "n_sources": int(len(sources)),
        "n_per_image": 0,
        "n_per_source": 0,
        "n_new": 0,
        "source": [],
        "destination": [],
        "offset": [],
        "note": "",
    }
    if len(sources) == 0:
        info["note"] = "no big-rock pixels in the masks: nothing to blend, input returned unchanged"
        return images.copy(), masks.copy(), info

    rng = np.random.default_rng(seed)
    everyone = np.arange(n_images)
    pairs = []
    for destination in everyone:
        others = sources[sources != destination]
        candidates = others if len(others) else sources
        pairs += [(int(rng.choice(candidates)), int(destination)) for _ in range(attempts_per_image)]
    for source in sources:
        others = everyone[everyone != source]
        candidates = others if len(others) else everyone
        pairs += [(int(source), int(rng.choice(candidates))) for _ in range(attempts_per_source)]

    height_limit, width_limit = IMAGE_SHAPE[0] - 2, IMAGE_SHAPE[1] - 2
    boxes = {int(s): _big_rock_box(masks[s], height_limit, width_limit) for s in sources}
    grey_levels = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    new_images = np.empty((len(pairs),) + IMAGE_SHAPE, np.float32)
    new_masks = np.empty((len(pairs),) + IMAGE_SHAPE, np.uint8)
    offsets = np.empty((len(pairs), 2), np.int64)
    for k, (source, destination) in enumerate(pairs):
        top, left, height, width = boxes[source]
        rock = masks[source, top:top + height, left:left + width] == BIG_ROCK
        to_top = int(rng.integers(1, IMAGE_SHAPE[0] - height))
        to_left = int(rng.integers(1, IMAGE_SHAPE[1] - width))
        box = (slice(to_top, to_top + height), slice(to_left, to_left + width))
        image = images[destination].copy()
        if method == "poisson":
            patch = grey_levels[source, top:top + height, left:left + width]
            blended = _poisson_blend(grey_levels[destination], patch, rock, to_top, to_left)
            image[box] = blended[box].astype(np.float32) / 255.0
        else:
            image[box][rock] = images[source, top:top + height, left:left + width][rock]
        mask = masks[destination].copy()
        mask[box][rock] = BIG_ROCK
        new_images[k], new_masks[k], offsets[k] = image, mask, (to_top, to_left)

    info.update(
        n_per_image=int(n_images * attempts_per_image),
        n_per_source=int(len(sources) * attempts_per_source),
        n_new=len(pairs),
        source=[s for s, _ in pairs],
        destination=[d for _, d in pairs],
        offset=offsets.tolist(),
    )
    return np.concatenate([images, new_images]), np.concatenate([masks, new_masks]), info
