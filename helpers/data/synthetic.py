"""Procedural stand-in for the competition file: synthetic Mars rover terrain in the same layout.

The real `mars_for_students.npz` is not redistributable, so the project's default data comes from here.
It is meant to be a believable, hard task, never tuned for any one experiment. Written by hand because
no library renders labelled planetary terrain.

What it imitates (docs/study.md, shared/data/README.md, the reference navcam figure):
- rover-camera views: ground in perspective, horizon and sky in some images, close-range terrain in
  the rest; per-class textures rendered as shaded height fields — soil smooth with pebbles, bedrock
  layered and cracked, sand rippled — whose grey levels overlap strongly (per-image tones are drawn
  from overlapping ranges), so texture (edges, Laplacian, wavelet energy) separates classes better than
  grey level; shaded rocks with hard shadows; rover parts; brightness/contrast/gamma changes,
  vignetting, sensor noise;
- crowd-sourced labels: terrain regions have smooth boundaries, labels are coarse polygons of them,
  often with unlabelled (background) gaps between regions; sky, distant terrain and rover parts are
  unlabelled; some regions and patches are skipped, a few images barely labelled, a few not at all;
- a few legitimately repeated masks (the same labelled scene imaged again), none ten or more times;
- aliens: 110 per 2615 training images (`N_ALIENS_REAL / N_TRAIN_REAL`, rounded down) at scattered
  indices carry two UFO drawings (saucer + dome + beam) varied in offset, scale, brightness, noise,
  style and transparency; all share exactly the mask `assets/alien_mask.npy`; the test set has none;
- test images come from the same distribution as clean training images.

Measured on the full default (seed 0; 2505 clean training images), real figures (docs/study.md) in brackets:
  pixel share   background 24.97 % (24.31)  soil 33.53 % (33.90)  bedrock 23.47 % (23.28)
                sand 17.89 % (18.38)  big rock 0.131 % (0.13)
  images with   background 2142 (≈2087)  soil 1286 (≈1281)  bedrock 1157 (≈1160)  sand 861 (≈863)
                big rock 64 (≈63)
  labelled classes per image 1.34 (≈1.3), 3 or more in 4.3 % of images; background only 7 (7);
  > 80 % background 265 (≈257); 39 distinct masks occur more than once (39), at most 7 times (the
  all-background one); aliens 110 (110), first at index 16 (62).
  Grey-level histograms of soil, bedrock and sand overlap by 0.92-0.95 (intersection), while the mean
  |4-neighbour Laplacian| is 12.4 soil, 18.0 bedrock, 11.5 sand, 29.6 big rock.
  The 10022 test masks: pixel share 24.3 / 33.6 / 23.9 / 18.1 / 0.14 %, big rock in 2.8 % of images,
  1.35 labelled classes per image, 28 background only (7 per 2505, as in training).
`measure()` and `--stats` give these figures. Generation times and the file-format measurements behind
`write()` are in docs/performance.md ("Synthetic data").
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from statistics import NormalDist

import cv2
import numpy as np

from helpers.configs.constants import (BACKGROUND, BEDROCK, BIG_ROCK, IMAGE_SHAPE, N_ALIENS_REAL, N_TEST_REAL,
                                      N_TRAIN_REAL, NUM_CLASSES, SAND, SOIL)
from helpers.runtime.files import atomic_file
from helpers.runtime.paths import ASSETS_DIR

GENERATOR_VERSION = "1"
H, W = IMAGE_SHAPE
TERRAIN = (SOIL, BEDROCK, SAND)
PUBLIC_FRACTION = 0.25
CHUNK = 64  # images rendered together (their arrays fit the CPU cache); changing it changes the images

# Figures of the real clean set (2505 images) that the set-level plan reproduces exactly.
REAL_CLEAN = N_TRAIN_REAL - N_ALIENS_REAL
BACKGROUND_ONLY_PER_CLEAN = 7
REPEATED_SCENES_PER_CLEAN = 38  # + the all-background mask = 39 distinct repeated masks
REPEAT_GROUP_SIZES = (2, 2, 2, 2, 2, 2, 3, 3, 4, 6)  # drawn from; every size stays below 10

# Scene and labelling probabilities, tuned by measurement to the real figures (module docstring).
SCENE = {
    "horizon_p": 0.15,  # a horizon (and sky) is visible
    "class_count_p": (0.70, 0.262, 0.038),  # 1, 2, 3 terrain classes in view
    "class_weight": {SOIL: 0.52, BEDROCK: 0.47, SAND: 0.32},
    "area_weight": {SOIL: 2.0, BEDROCK: 0.75, SAND: 0.95},
    "big_rock_p": 0.03,
    "big_rock_radius": (14, 22),
    "small_rocks_p": 0.6,
    "rover_p": 0.06,
}
LABELLING = {
    "careful_p_several": 0.8,  # polygons share edges when several classes meet
    "careful_p_one": 0.15,
    "sparse_p": 0.15,  # labeller marked one small patch only
    "region_skip_p": 0.06,  # a terrain region left unlabelled
    "gap_p": 0.85,  # unlabelled band between labelled regions
    "margin_p": 0.4,  # unlabelled strips along image edges
    "hole_p": 0.66,  # unlabelled patches inside regions
    "polygon_eps": (0.8, 2.5),  # coarseness of the label polygons, pixels
}
_CLASS_WEIGHTS = np.array([SCENE["class_weight"][c] for c in TERRAIN])
_NORMAL_LEVELS = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], np.float32)


def _white(rng, shape) -> np.ndarray:
    """Standard-normal noise quantised to 256 levels: a byte lookup, 3-4x faster than float normals."""
    return _NORMAL_LEVELS[np.frombuffer(rng.bytes(int(np.prod(shape))), np.uint8)].reshape(shape)


def _noise(rng, n: int, cell: float, size=(H, W), amplitude=1.0) -> np.ndarray:
    """Smooth noise (size..., n) float32 of std ≈ `amplitude` (scalar or one per image): a white grid
    every `cell` px, bicubic-upsampled."""
    h, w = size
    grid = rng.standard_normal((int(h / cell) + 2, int(w / cell) + 2, n), dtype=np.float32)
    grid *= np.asarray(amplitude, np.float32) * 1.6
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, n)


_DX = np.array([[-0.5, 0, 0.5]], np.float32)


def _shade(height: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Directional-light shading of a height field stack (H, W, n): gradient · light (one per image;
    its length sets the shading strength)."""
    gx = cv2.filter2D(height, -1, _DX, borderType=cv2.BORDER_REPLICATE).reshape(height.shape)
    gy = cv2.filter2D(height, -1, _DX.T, borderType=cv2.BORDER_REPLICATE).reshape(height.shape)
    gx *= light[:, 0]
    gy *= light[:, 1]
    gx += gy
    return gx


@lru_cache(maxsize=None)
def _periodic_cubic(size: int, cells: int) -> np.ndarray:
    """(size, cells) matrix: Catmull-Rom interpolation of a periodic grid of `cells` knots onto `size`
    pixels, scaled so that interpolated unit white noise keeps unit variance on average."""
    pos = (np.arange(size) + 0.5) * cells / size - 0.5
    left = np.floor(pos).astype(int)
    f = pos - left
    weights = ((-f ** 3 + 2 * f ** 2 - f) / 2, (3 * f ** 3 - 5 * f ** 2 + 2) / 2,
               (-3 * f ** 3 + 4 * f ** 2 + f) / 2, (f ** 3 - f ** 2) / 2)
    matrix = np.zeros((size, cells))
    for k, wk in enumerate(weights):
        np.add.at(matrix, (np.arange(size), (left - 1 + k) % cells), wk)
    return (matrix / np.sqrt((matrix ** 2).sum(axis=1).mean())).astype(np.float32)


def _tileable_noise(rng, n: int, cells=(4, 8), amplitude=1.0) -> np.ndarray:
    """Smooth noise (H, W, n) float32 of std ≈ `amplitude` (scalar or one per image) that tiles
    seamlessly: a periodic white grid of `cells` (rows, columns) knots, cubic-interpolated.

    Coarse grids go through two small matrix products; fine ones (sizes must divide the image)
    through OpenCV's bicubic resize of the wrap-padded grid, whichever is faster.
    """
    gh, gw = cells
    grid = rng.standard_normal((gh, gw, n), dtype=np.float32)
    grid *= np.asarray(amplitude, np.float32)
    if gh * gw <= 72:
        rows = np.tensordot(_periodic_cubic(H, gh), grid, axes=(1, 0))  # (H, gw, n)
        return np.matmul(_periodic_cubic(W, gw), rows)
    ch, cw = H // gh, W // gw
    padded = np.pad(grid * 1.6, ((2, 2), (2, 2), (0, 0)), mode="wrap")
    fine = cv2.resize(padded, ((gw + 4) * cw, (gh + 4) * ch), interpolation=cv2.INTER_CUBIC)
    return fine.reshape(fine.shape[0], fine.shape[1], n)[2 * ch:2 * ch + H, 2 * cw:2 * cw + W]


def _terrain_textures(rng, n: int, light: np.ndarray) -> np.ndarray:
    """Relative brightness (n, H, W, 3) of soil, bedrock and sand (≈1 mean) in ground coordinates.

    Each is a height field shaded by the image's light direction, plus albedo variation; all tile
    seamlessly, so distant ground repeats them without mirror seams. The element-wise work is written
    in place because it dominates the generator's run time.
    """
    u = lambda lo, hi: rng.uniform(lo, hi, n).astype(np.float32)
    grain = _white(rng, (H, W, n))
    # soil: fine gravel and pebbles of a few sizes on a gently undulating surface
    pebbles = (rng.random((H, W, n), dtype=np.float32) < u(0.01, 0.06)).astype(np.float32)
    height = cv2.GaussianBlur(pebbles, (0, 0), 0.7).reshape(H, W, n)
    height *= 4.0
    cobbles = (rng.random((H, W, n), dtype=np.float32) < u(0.0, 0.006)).astype(np.float32)
    height += cv2.GaussianBlur(cobbles, (0, 0), 1.3).reshape(H, W, n) * 12.0
    height += _tileable_noise(rng, n, (4, 8), amplitude=0.4)
    height += grain * 0.12
    soil = _shade(height, light * u(0.15, 0.35)[:, None])
    soil += _tileable_noise(rng, n, (6, 12), amplitude=u(0.02, 0.07))
    soil += np.roll(grain, 1, axis=2) * u(0.005, 0.02)
    soil += 1
    # sand: ripples (a whole number of periods across the tile) with wavy crests, or smooth drifts
    theta = rng.uniform(-0.6, 0.6, n) + np.pi / 2 + rng.choice([0, np.pi / 2], n, p=[0.85, 0.15])
    wavelength = rng.uniform(3.0, 7.0, n)
    kx = (2 * np.pi / W) * np.round(W * np.cos(theta) / wavelength).astype(np.float32)
    ky = (2 * np.pi / H) * np.round(H * np.sin(theta) / wavelength).astype(np.float32)
    phase = _tileable_noise(rng, n, (4, 8), amplitude=u(0.5, 2.5))
    phase += np.arange(W, dtype=np.float32)[None, :, None] * kx
    phase += np.arange(H, dtype=np.float32)[:, None, None] * ky
    wave = np.sin(phase, out=phase)
    height = wave * wave
    height *= 0.4
    height += wave
    height *= np.abs(1 + _tileable_noise(rng, n, (2, 4), amplitude=0.5))
    height *= (wavelength / 5.0 * (rng.random(n) < 0.8)).astype(np.float32)  # a fifth without ripples
    height += _tileable_noise(rng, n, (4, 8), amplitude=0.5)
    sand = _shade(height, light * u(0.05, 0.16)[:, None])
    sand += _tileable_noise(rng, n, (4, 8), amplitude=u(0.02, 0.06))
    sand += np.roll(grain, 2, axis=2) * u(0.005, 0.02)
    sand += 1
    # bedrock: layered ledges (sharp steps), cracks, plate albedo, rough surface
    levels = u(0.7, 2.0)
    base = _tileable_noise(rng, n, (3, 6), amplitude=levels)
    base += _tileable_noise(rng, n, (16, 32), amplitude=0.25)
    np.floor(base, out=base)
    albedo = np.cos(base * 2.1) * u(0.02, 0.1)  # each ledge its own tone
    base *= 1.5
    height = cv2.GaussianBlur(base, (0, 0), 0.5).reshape(H, W, n)
    height += _tileable_noise(rng, n, (16, 32), amplitude=0.3)
    height += np.roll(grain, 3, axis=2) * 0.25
    bedrock = _shade(height, light * u(0.15, 0.35)[:, None])
    bedrock += albedo
    cracks = np.abs(_tileable_noise(rng, n, (6, 12), amplitude=8.0))
    np.minimum(cracks, 1, out=cracks)
    cracks -= 1
    cracks *= u(0.2, 0.6)  # = -(strength × crack line)
    cracks += 1
    bedrock += 1
    bedrock *= cracks
    stack = cv2.merge([soil.reshape(H * W, n), bedrock.reshape(H * W, n), sand.reshape(H * W, n)])
    return cv2.transpose(stack).reshape(n, H, W, 3)  # OpenCV's 3-channel transpose: 5x numpy's copy


def _perspective_maps(horizon: float, max_scale: float = 4.0):
    """Ground-texture coordinates of each image pixel for a flat ground whose horizon is row `horizon`.

    Ground seen in true perspective: across, the scale grows as s = 1 / (distance to the horizon),
    normalised to 1 at the bottom row; in depth as s² (foreshortening); both capped at `max_scale`.
    """
    span = (H - 1) - horizon
    d = np.arange(H) - horizon
    d_min = span / max_scale
    dc = np.maximum(d, d_min)
    v = (H - 1) - span * (span / dc - 1) - max_scale ** 2 * np.maximum(d_min - d, 0)
    map_x = np.outer(span / dc, np.arange(W) - W / 2) + W / 2
    map_y = np.repeat(v[:, None], W, axis=1)
    return map_x.astype(np.float32), map_y.astype(np.float32)


def _regions(rng, classes, map_x, map_y) -> np.ndarray:
    """Terrain class per pixel: argmax of smooth random fields laid on the ground, seen in perspective."""
    if len(classes) == 1:
        return np.full((H, W), classes[0], np.uint8)
    coarse = 4  # the fields are smooth, so they live on a 4x coarser ground canvas
    canvas = (6 * H // coarse, 5 * W // coarse)  # ground in view: up to 4 W across, 5 H deep
    fields = _noise(rng, len(classes), rng.uniform(18, 40) / coarse, canvas)
    bias = np.log([SCENE["area_weight"][c] for c in classes]) * 1.2 + rng.normal(0, 0.5, len(classes))
    fields = (fields + bias.astype(np.float32)).reshape(*canvas, len(classes))
    seen = cv2.remap(fields, (map_x + 2 * W) / coarse, (map_y + 5 * H) / coarse, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE).reshape(H, W, len(classes))
    return np.asarray(classes, np.uint8)[np.argmax(seen, axis=-1)]


def _blob(rng, center, radius, vertices=10, roughness=0.25) -> np.ndarray:
    """Random star-shaped polygon (k, 2) int32 around `center`: rocks, patches, holes."""
    draws = rng.random(2 * vertices).tolist()  # plain floats: far quicker than numpy for 10 points
    steps = [d + 0.5 for d in draws[:vertices]]
    turn = 2 * math.pi / sum(steps)
    points, angle = [], 0.0
    for step, r in zip(steps, draws[vertices:]):
        angle += step * turn
        reach = radius * (1 + roughness * 1.7 * (r - 0.5))
        points.append((round(center[0] + reach * math.cos(angle)), round(center[1] + 0.8 * reach * math.sin(angle))))
    return np.array(points, np.int32)


def _draw_rocks(rng, horizon: float, count: int, radius_range, top: float = 0.0) -> np.ndarray:
    """Mask of `count` rocks on the visible ground below row `top`, smaller where the ground is farther."""
    mask = np.zeros((H, W), np.uint8)
    top = max(top, horizon + 6)
    for _ in range(count):
        cy, cx = rng.uniform(top, H + 4), rng.uniform(-4, W + 4)
        radius = max(1.0, rng.uniform(*radius_range) * min(1.0, (cy - horizon) / (H - 1 - horizon)))
        cv2.fillPoly(mask, [_blob(rng, (cx, cy), radius, vertices=8, roughness=0.2)], 1)
    return mask


def _rover(rng):
    """Mask and relative tone of a rover part entering from the bottom (wheel or deck edge)."""
    mask = np.zeros((H, W), np.uint8)
    tone = np.zeros((H, W), np.float32)
    side = rng.choice([-1, 1])
    if rng.random() < 0.5:
        cx = W / 2 + side * rng.uniform(20, 70)
        cy, r = H + rng.uniform(-8, 10), rng.uniform(14, 26)
        cv2.circle(mask, (int(cx), int(cy)), int(r), 1, -1)
        cv2.circle(tone, (int(cx), int(cy)), int(r), 0.45, -1)
        for k in range(6):
            a = k * np.pi / 3 + rng.uniform(0, 1)
            p = (int(cx + r * 0.8 * np.cos(a)), int(cy + r * 0.8 * np.sin(a)))
            cv2.line(tone, (int(cx), int(cy)), p, 0.9, 1)
        cv2.circle(tone, (int(cx), int(cy)), int(r * 0.35), 1.1, -1)
    else:
        x0 = W / 2 + side * rng.uniform(0, 50)
        y0 = H - rng.uniform(6, 22)
        pts = np.array([[x0, y0], [x0 + side * 200, y0 + rng.uniform(-8, 8)], [x0 + side * 200, H + 5],
                        [x0 - side * rng.uniform(0, 15), H + 5]], np.int32)
        cv2.fillPoly(mask, [pts], 1)
        cv2.fillPoly(tone, [pts], float(rng.uniform(0.8, 1.4)))
        cv2.line(tone, tuple(pts[0]), tuple(pts[1]), 1.6, 1)
        for _ in range(int(rng.integers(1, 4))):
            xs = int(x0 + side * rng.uniform(5, 60))
            cv2.line(tone, (xs, int(y0) + 2), (xs + int(rng.integers(-4, 5)), H), 0.3, 1)
    return mask.astype(bool), tone


def _ragged(rng, length: int, mean: float, jitter: float = 2.0) -> np.ndarray:
    """A hand-drawn polyline's offset along `length` pixels: a few knots around `mean`, joined linearly."""
    knots = np.linspace(-8, length + 8, int(rng.integers(3, 8)))
    return np.interp(np.arange(length), knots, mean + rng.normal(0, jitter, len(knots)))


def _label(rng, truth: np.ndarray, unlabelled: np.ndarray) -> np.ndarray:
    """Crowd-sourced-looking mask of a true class map: coarse polygons, gaps, skipped parts.

    Every region (outer contour of a class) becomes a polygon simplified by `polygon_eps` pixels,
    drawn largest first so islands lie on top. A careful labeller (more likely when several classes
    meet) makes the polygons share edges; a hasty one skips small regions and patches, leaves gaps
    along boundaries and a margin along the image edge; a few mark one small patch only.
    """
    lab = LABELLING
    eps = rng.uniform(*lab["polygon_eps"])
    regions = []
    for c in (*TERRAIN, BIG_ROCK):
        region = (truth == c).view(np.uint8)
        if region.any():
            contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            regions += [(cv2.contourArea(cnt), c, cnt) for cnt in contours]
    regions.sort(key=lambda r: (r[1] == BIG_ROCK, -r[0]))
    several = len({r[1] for r in regions if r[0] >= 60}) > 1
    careful = rng.random() < (lab["careful_p_several"] if several else lab["careful_p_one"])
    mask = np.zeros((H, W), np.uint8)
    covered = np.zeros((H, W), np.uint8)
    for j, (area, c, contour) in enumerate(regions):
        skip = 0.0 if careful else lab["region_skip_p"] + (0.4 if area < 60 else 0.0)
        if area < 4 or (j > 0 and c != BIG_ROCK and rng.random() < skip):
            continue
        cv2.fillPoly(mask, [cv2.approxPolyDP(contour, eps, True)], int(c))
        cv2.fillPoly(covered, [contour], 1)
    if careful or rng.random() > lab["gap_p"]:  # polygons share edges: slivers take the true class
        sliver = (mask == BACKGROUND) & covered.astype(bool)
        mask[sliver] = truth[sliver]
    else:
        width = int(rng.integers(1, 4))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
        eroded = np.zeros_like(mask)
        for c in np.unique(mask[mask > 0]):
            inside = cv2.erode((mask == c).astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1)
            eroded[inside.astype(bool)] = c
        mask = eroded
    if not careful:
        if rng.random() < lab["margin_p"]:  # the polygons stop short of one or two image edges
            rows, cols = np.arange(H)[:, None], np.arange(W)[None, :]
            for side in rng.choice(4, size=int(rng.integers(1, 3)), replace=False):
                depth = rng.uniform(2, 26)
                if side == 0:
                    mask[rows < _ragged(rng, W, depth)[None, :]] = BACKGROUND
                elif side == 1:
                    mask[rows >= H - _ragged(rng, W, depth)[None, :]] = BACKGROUND
                elif side == 2:
                    mask[cols < _ragged(rng, H, depth)[:, None]] = BACKGROUND
                else:
                    mask[cols >= W - _ragged(rng, H, depth)[:, None]] = BACKGROUND
        if rng.random() < lab["hole_p"]:
            holes = np.zeros((H, W), np.uint8)
            for _ in range(int(rng.integers(1, 5))):
                cv2.fillPoly(holes, [_blob(rng, (rng.uniform(0, W), rng.uniform(0, H)), rng.uniform(3, 22), 7)], 1)
            mask[holes.astype(bool) & (mask != BIG_ROCK)] = BACKGROUND
    mask[unlabelled] = BACKGROUND
    if not careful and rng.random() < lab["sparse_p"]:
        ys, xs = np.nonzero(mask)
        if len(ys):
            j = int(rng.integers(len(ys)))
            patch = np.zeros((H, W), np.uint8)
            cv2.fillPoly(patch, [_blob(rng, (xs[j], ys[j]), rng.uniform(6, 16), 9)], 1)
            mask[~patch.astype(bool)] = BACKGROUND
    if mask.min() == mask.max() and mask[0, 0] != BACKGROUND:  # a uniform mask would repeat by chance
        center = (rng.uniform(8, W - 8), rng.uniform(8, H - 8))
        cv2.fillPoly(mask, [_blob(rng, center, rng.uniform(3, 10), 7)], BACKGROUND)
    return mask


def _layout(rng, background_only: bool) -> dict:
    """Geometry and labels of one scene: perspective, terrain classes, rocks, rover, sky, mask."""
    horizon_visible = rng.random() < SCENE["horizon_p"]
    horizon = rng.uniform(3, 28) if horizon_visible else -float(np.exp(rng.uniform(np.log(25), np.log(400))))
    map_x, map_y = _perspective_maps(horizon)
    k = 1 + int(np.searchsorted(np.cumsum(SCENE["class_count_p"]), rng.random() * sum(SCENE["class_count_p"])))
    keys = rng.random(3) ** (1 / _CLASS_WEIGHTS)  # weighted sampling without replacement (Efraimidis-Spirakis)
    classes = [TERRAIN[j] for j in np.argsort(-keys)[:k]]
    terrain = _regions(rng, classes, map_x, map_y)
    truth = terrain.copy()
    sky = far = None
    unlabelled = np.zeros((H, W), bool)
    if horizon_visible:
        hills = np.abs(_noise(rng, 1, rng.uniform(10, 40), (1, W))[0, :, 0]) * rng.uniform(0, 4)
        rows = np.arange(H)[:, None]
        sky = rows < (horizon - hills)[None, :]
        far = rows < _ragged(rng, W, horizon + rng.uniform(3, 12), 1.5)[None, :]  # too far to label
        unlabelled |= far
    small = big = rover = rover_tone = None
    if rng.random() < SCENE["small_rocks_p"]:
        small = _draw_rocks(rng, horizon, int(rng.integers(1, 10)), (1.5, 4.5))
    if rng.random() < SCENE["big_rock_p"]:
        big = _draw_rocks(rng, horizon, 1, SCENE["big_rock_radius"], top=14)
        if small is not None:
            small[big.astype(bool)] = 0
        truth[big.astype(bool)] = BIG_ROCK
    if rng.random() < SCENE["rover_p"]:
        rover, rover_tone = _rover(rng)
        unlabelled |= rover
    truth[unlabelled] = BACKGROUND
    mask = np.zeros((H, W), np.uint8) if background_only else _label(rng, truth, unlabelled)
    row_scale = (H - 1 - horizon) / np.maximum(np.arange(H) - horizon, 1e-3)
    far_weight = np.clip((row_scale - 1.5) / 1.5, 0, 1).astype(np.float32)[:, None, None]
    return {"horizon": horizon, "horizon_visible": horizon_visible,
            "far_weight": far_weight if far_weight.any() else None,
            "maps": cv2.convertMaps(np.mod(map_x, W), np.mod(map_y, H), cv2.CV_16SC2),  # in range: fast
            "terrain": terrain, "sky": sky,
            "small_rocks": small, "big_rock": big, "rover": rover, "rover_tone": rover_tone, "mask": mask}


def _rock_shading(rng, rocks: np.ndarray, light: np.ndarray, shadow_len: int):
    """Relative brightness inside rocks (domed, lit from `light`) and the hard shadow they cast."""
    height = np.sqrt(cv2.distanceTransform(rocks, cv2.DIST_L2, 3))
    gx = cv2.filter2D(height, -1, _DX, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.filter2D(height, -1, _DX.T, borderType=cv2.BORDER_REPLICATE)
    inside = rocks.astype(bool)
    lit = 1.0 + 0.9 * (gx[inside] * light[0] + gy[inside] * light[1]) + rng.normal(0, 0.08, int(inside.sum()))
    size = 2 * shadow_len + 1
    kernel = np.zeros((size, size), np.float32)
    end = (int(round(shadow_len - light[0] * shadow_len)), int(round(shadow_len - light[1] * shadow_len)))
    cv2.line(kernel, end, (shadow_len, shadow_len), 1.0, 1)
    cast = cv2.filter2D(rocks, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    return inside, lit.astype(np.float32), (cast > 0) & ~inside


_ONE_HOT = np.eye(NUM_CLASSES, dtype=np.float32)[:, list(TERRAIN)]  # class id -> soil/bedrock/sand weights


def _texture_in_view(ground: np.ndarray, lay: dict) -> np.ndarray:
    """The ground textures (H, W, 3) of one image seen through the layout's perspective.

    Where the ground is compressed (far away) the sample comes from a blurred copy, a one-level
    mip-map, so distant texture fades instead of aliasing into streaks.
    """
    near = cv2.remap(ground, *lay["maps"], cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    if lay["far_weight"] is None:
        return near
    far = cv2.remap(cv2.GaussianBlur(ground, (0, 0), 1.5), *lay["maps"], cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_WRAP)
    return near + (far - near) * lay["far_weight"]


def _render(rng, layouts: list) -> np.ndarray:
    """Grey-level images (n, H, W) float32 for a chunk of layouts: textures, rocks, sky, camera."""
    n = len(layouts)
    azimuth = rng.uniform(0, 2 * np.pi, n)
    light = np.stack([np.cos(azimuth), np.sin(azimuth)], axis=1).astype(np.float32)
    textures = _terrain_textures(rng, n, light)
    brightness = np.clip(rng.normal(95, 30, n), 35, 185)
    tone = np.clip(1 + rng.normal([0.0, 0.05, -0.03], 0.12, (n, 3)), 0.6, 1.5) * brightness[:, None]
    softness = rng.uniform(0.6, 2.0, n)
    images = np.empty((n, H, W), np.float32)
    for i, lay in enumerate(layouts):
        tex = _texture_in_view(textures[i], lay)
        onehot = _ONE_HOT[lay["terrain"]]
        onehot = cv2.GaussianBlur(onehot, (0, 0), softness[i])  # soft, smooth class transitions
        img = cv2.transform(onehot * tex, tone[i][None].astype(np.float32))
        for rocks, shadow_len, albedo in ((lay["small_rocks"], 3, 1.0), (lay["big_rock"], 9, 1.05)):
            if rocks is not None:
                inside, lit, shadow = _rock_shading(rng, rocks, light[i], shadow_len)
                img[shadow] *= rng.uniform(0.25, 0.5)
                img[inside] = brightness[i] * albedo * rng.uniform(0.85, 1.2) * lit
        if lay["horizon_visible"]:
            rows = np.arange(H, dtype=np.float32)[:, None] - lay["horizon"]
            haze = np.exp(-np.clip(rows, 0, None) / rng.uniform(3, 10))
            img = img * (1 - haze) + (brightness[i] * rng.uniform(0.85, 1.3)) * haze
            sky_tone = brightness[i] * rng.uniform(0.8, 1.6) * (1 + 0.004 * rows)
            img = np.where(lay["sky"], sky_tone, img)
        if lay["rover"] is not None:
            metal = brightness[i] * rng.uniform(0.6, 1.4) * lay["rover_tone"]
            img = np.where(lay["rover"], metal, img)
        images[i] = img
    return _camera(rng, images)


def _camera(rng, images: np.ndarray) -> np.ndarray:
    """Per-image contrast, gamma, vignetting, optics blur and sensor noise, quantised to 0..255."""
    n = len(images)
    per = lambda lo, hi: rng.uniform(lo, hi, n).astype(np.float32)[:, None, None]
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    r2 = ((xx - W / 2) / (W / 2)) ** 2 + ((yy - H / 2) / (W / 2)) ** 2
    mean = images.mean(axis=(1, 2), keepdims=True)
    out = (mean + (images - mean) * per(0.7, 1.35)) * (1 - per(0, 0.35) * r2)
    np.clip(out, 0, 255, out=out)
    out = 255 * np.power(out * (1 / 255), per(0.8, 1.25))
    blurred = cv2.GaussianBlur(np.ascontiguousarray(out.transpose(1, 2, 0)), (0, 0), 0.5)
    sharpness = per(0, 1)
    out = sharpness * out + (1 - sharpness) * blurred.reshape(H, W, n).transpose(2, 0, 1)
    sigma = per(0.5, 2.5) + np.sqrt(out) * per(0.0, 0.15)  # read noise + shot noise
    out += sigma * _white(rng, (n, H, W))
    return np.clip(np.rint(out), 0, 255)


def _alien_template() -> np.ndarray:
    return np.load(ASSETS_DIR / "alien_mask.npy").astype(np.uint8)


def _draw_aliens(rng, image: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Superimpose the two UFOs of the alien mask on a grey-level image, drawn in a varied way."""
    out = image.astype(np.float32)
    yy = np.arange(H, dtype=np.float32)[:, None]
    style = rng.choice(["solid", "outline", "ghost"], p=[0.6, 0.2, 0.2])
    alpha = {"solid": rng.uniform(0.75, 1.0), "outline": rng.uniform(0.8, 1.0), "ghost": rng.uniform(0.3, 0.6)}[style]
    scale = rng.uniform(0.85, 1.15)
    tones = {BEDROCK: rng.uniform(0, 255), SAND: rng.uniform(0, 255), SOIL: rng.uniform(120, 255)}
    for half in (slice(0, W // 2), slice(W // 2, W)):
        part = np.zeros_like(template)
        part[:, half] = template[:, half]
        ys, xs = np.nonzero(part)
        center = (float(xs.mean()), float(ys.mean()))
        shift = rng.uniform(-6, 6), rng.uniform(-4, 4)
        m = cv2.getRotationMatrix2D(center, rng.uniform(-8, 8), scale * rng.uniform(0.95, 1.05))
        m[:, 2] += shift
        for cls in (SOIL, SAND, BEDROCK):  # beam under saucer under dome
            shape = cv2.warpAffine((part == cls).astype(np.float32), m, (W, H), flags=cv2.INTER_LINEAR)
            if style == "outline" and cls != SOIL:
                shape = cv2.morphologyEx(shape, cv2.MORPH_GRADIENT, np.ones((2, 2), np.uint8))
            shape = cv2.GaussianBlur(shape, (0, 0), rng.uniform(0.3, 1.2))
            value = tones[cls] + rng.normal(0, rng.uniform(2, 20), (H, W)).astype(np.float32)
            a = alpha * shape
            if cls == SOIL:  # a fading translucent beam
                top = ys[part[ys, xs] == SOIL].min() + shift[1]
                a = a * rng.uniform(0.3, 0.7) * np.clip(1 - (yy - top) / 20.0, 0.2, 1)
            out = out * (1 - a) + value * a
    return np.clip(np.rint(out), 0, 255)


def _scene_plan(rng, n: int):
    """Which layout each image shows (repeats share one) and which images are left unlabelled.

    Proportional to the real clean set: 7 background-only images and 38 labelled scenes imaged more
    than once per 2505 images.
    """
    layout_of = np.arange(n)
    background_only = np.zeros(n, bool)
    n_empty = int(round(BACKGROUND_ONLY_PER_CLEAN * n / REAL_CLEAN))
    n_groups = int(round(REPEATED_SCENES_PER_CLEAN * n / REAL_CLEAN))
    sizes = rng.choice(REPEAT_GROUP_SIZES, n_groups) if n_groups else np.zeros(0, int)
    while n_empty + sizes.sum() > n and len(sizes):
        sizes = sizes[:-1]
    order = rng.permutation(n)
    background_only[order[:n_empty]] = True
    start = n_empty
    for size in sizes:
        members = order[start:start + size]
        layout_of[members] = members[0]
        start += size
    return layout_of, background_only


def _render_set(seed: int, tag: int, n: int, alien_positions=()) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, H, W) float32 grey levels and masks (n, H, W) uint8 of one set, chunk by chunk."""
    plan_rng = np.random.default_rng([seed, tag, 0])
    alien_positions = np.asarray(alien_positions, dtype=np.int64)
    clean = np.setdiff1d(np.arange(n), alien_positions)
    layout_of = np.arange(n)
    background_only = np.zeros(n, bool)
    clean_layout, clean_empty = _scene_plan(plan_rng, len(clean))
    layout_of[clean] = clean[clean_layout]
    background_only[clean] = clean_empty
    is_alien = np.zeros(n, bool)
    is_alien[alien_positions] = True

    def chunk(start: int):
        stop = min(n, start + CHUNK)
        layouts = [_layout(np.random.default_rng([seed, tag, 1, int(layout_of[i])]), bool(background_only[i]))
                   for i in range(start, stop)]
        images = _render(np.random.default_rng([seed, tag, 2, start // CHUNK]), layouts)
        return start, images, [(lay["mask"], lay["terrain"]) for lay in layouts]

    images = np.empty((n, H, W), np.float32)
    masks = np.empty((n, H, W), np.uint8)
    owners, final = {}, {}  # mask bytes -> layout id; layout id -> its final mask
    with _opencv_threads(1):
        for start, chunk_images, labels in map(chunk, range(0, n, CHUNK)):
            images[start:start + len(labels)] = chunk_images
            for i, (mask, terrain) in enumerate(labels, start):
                layout = int(layout_of[i])
                if layout not in final:
                    final[layout] = mask if background_only[i] or is_alien[i] else \
                        _unique_mask(np.random.default_rng([seed, tag, 3, layout]), mask, terrain, layout, owners)
                masks[i] = final[layout]
    return images, masks


@contextmanager
def _opencv_threads(count: int):
    """Run OpenCV single-threaded, then restore its setting: its thread pool only adds overhead to
    calls on 64x128 images (docs/performance.md)."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def _unique_mask(rng, mask: np.ndarray, terrain: np.ndarray, layout: int, owners: dict) -> np.ndarray:
    """The layout's mask, or, if another scene's mask is identical by chance, a variant of it.

    Keeps the repeated masks exactly those planned: a random patch is unlabelled (or, in an empty mask,
    labelled with the true class) until the mask is new.
    """
    mask = mask.copy()
    while owners.setdefault(mask.tobytes(), layout) != layout:
        patch = np.zeros((H, W), np.uint8)
        ys, xs = np.nonzero(mask) if mask.any() else np.nonzero(terrain)
        j = int(rng.integers(len(ys)))
        cv2.fillPoly(patch, [_blob(rng, (xs[j], ys[j]), rng.uniform(2, 6), 7)], 1)
        patch = patch.astype(bool)
        mask[patch] = BACKGROUND if mask.any() else terrain[patch]
    return mask


def _check_sizes(n_train, n_test, seed) -> None:
    for name, value, low in (("n_train", n_train, 1), ("n_test", n_test, 2), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r} — pass a whole number")
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value} — pass a larger value")


def alien_count(n_train: int) -> int:
    """Aliens in a training set of `n_train` images: 110 per 2615, rounded down (1 from 24 images)."""
    return int(n_train) * N_ALIENS_REAL // N_TRAIN_REAL


def generate(n_train: int = N_TRAIN_REAL, n_test: int = N_TEST_REAL, seed: int = 0) -> dict:
    """Synthetic data set in the competition layout plus the hidden answers; deterministic per seed.

    Returns `training_set` float64 (n_train, 2, 64, 128) (images 0..255, masks 0..4), `test_set` uint8
    (n_test, 64, 128), `test_masks` uint8 (n_test, 64, 128), `public_ids` / `private_ids` (sorted int64,
    a seeded 25 % / 75 % partition of the test ids) and `alien_ids` (sorted int64).
    """
    _check_sizes(n_train, n_test, seed)
    template = _alien_template()
    alien_rng = np.random.default_rng([seed, 3])
    alien_ids = np.sort(alien_rng.choice(n_train, alien_count(n_train), replace=False)).astype(np.int64)
    train_images, train_masks = _render_set(seed, 1, n_train, alien_ids)
    for i in alien_ids:
        train_images[i] = _draw_aliens(alien_rng, train_images[i], template)
        train_masks[i] = template
    test_images, test_masks = _render_set(seed, 2, n_test)
    order = np.random.default_rng([seed, 4]).permutation(n_test)
    n_public = max(1, int(round(PUBLIC_FRACTION * n_test)))
    return {
        "training_set": np.stack([train_images, train_masks], axis=1).astype(np.float64),
        "test_set": test_images.astype(np.uint8),
        "test_masks": test_masks,
        "public_ids": np.sort(order[:n_public]).astype(np.int64),
        "private_ids": np.sort(order[n_public:]).astype(np.int64),
        "alien_ids": alien_ids,
    }


def labels_path_for(data_path) -> Path:
    """Where the hidden test labels of a synthetic data file live: `<stem>_test_labels.npz` beside it."""
    data_path = Path(data_path)
    return data_path.with_name(f"{data_path.stem}_test_labels.npz")


def write(out_path, n_train: int = N_TRAIN_REAL, n_test: int = N_TEST_REAL, seed: int = 0) -> tuple[Path, Path]:
    """Write the data file (keys `training_set`, `test_set` only) and its hidden labels beside it.

    The labels file, `labels_path_for(out_path)`, holds `test_masks`, `public_ids`, `private_ids` and
    `meta` (a JSON string: generator version, seed, sizes). Both files are first written in full to
    temporary names, then moved into place (`helpers.runtime.files.atomic_file`), data file last: an interrupted
    write leaves the previous files (or none), never a half-written one.

    Data file plain `np.savez` (read on every run, and data/ is git-ignored: load speed wins over size), labels
    file compressed (masks compress well); the measurements behind this are in docs/performance.md.
    """
    out_path = Path(out_path)
    if out_path.suffix != ".npz":
        raise ValueError(f"output must be a .npz file, got {out_path} — name it like data/synthetic_mars.npz")
    if out_path.is_dir():
        raise ValueError(f"{out_path} is a folder — pass a file path ending in .npz")
    data = generate(n_train, n_test, seed)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"generator": "helpers.data.synthetic", "version": GENERATOR_VERSION, "seed": seed,
            "n_train": n_train, "n_test": n_test, "n_aliens": int(len(data["alien_ids"]))}
    labels_path = labels_path_for(out_path)
    with atomic_file(out_path) as data_file:  # takes its name last, after the labels file
        np.savez(data_file, training_set=data["training_set"], test_set=data["test_set"])
        with atomic_file(labels_path) as labels_file:
            np.savez_compressed(labels_file, test_masks=data["test_masks"], public_ids=data["public_ids"],
                                private_ids=data["private_ids"], meta=np.array(json.dumps(meta)))
    return out_path, labels_path


def measure(masks: np.ndarray) -> dict:
    """The statistics the generator targets, for any (N, H, W) mask stack (e.g. a clean training set)."""
    masks = np.asarray(masks)
    n = len(masks)
    pixels = np.bincount(masks.ravel().astype(np.int64), minlength=NUM_CLASSES)
    present = np.stack([(masks == c).any(axis=(1, 2)) for c in range(NUM_CLASSES)], axis=1)
    labelled = present[:, 1:].sum(axis=1)
    rows = np.ascontiguousarray(masks.reshape(n, -1).astype(np.uint8))
    _, counts = np.unique(rows.view(np.dtype((np.void, rows.shape[1])))[:, 0], return_counts=True)
    background = (masks == BACKGROUND).mean(axis=(1, 2))
    return {
        "images": n,
        "pixel_share": (pixels / pixels.sum()).tolist(),
        "images_with_class": present.sum(axis=0).tolist(),
        "labelled_classes_per_image": float(labelled.mean()),
        "share_with_3_or_more_classes": float((labelled >= 3).mean()),
        "background_only": int((labelled == 0).sum()),
        "mostly_background": int((background > 0.8).sum()),
        "repeated_masks": int((counts > 1).sum()),
        "largest_repeat": int(counts.max()),
    }


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line on stderr and exits with status 2."""

    def error(self, message):
        self.exit(2, f"error: {message} — see `python -m helpers.data.synthetic --help`\n")


def main(argv=None) -> int:
    parser = _OneLineParser(prog="python -m helpers.data.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output .npz, e.g. data/synthetic_mars.npz")
    parser.add_argument("--n-train", type=int, default=N_TRAIN_REAL)
    parser.add_argument("--n-test", type=int, default=N_TEST_REAL)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stats", action="store_true", help="also print the mask statistics (see measure())")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        data_path, labels_path = write(args.out, args.n_train, args.n_test, args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    for path in (data_path, labels_path):
        size = path.stat().st_size
        print(f"wrote {path} ({size / 1e6:.1f} MB)" if size >= 1e5 else f"wrote {path} ({size / 1e3:.1f} kB)")
    print(f"n_train={args.n_train} n_test={args.n_test} seed={args.seed} "
          f"aliens={alien_count(args.n_train)} in {seconds:.1f} s")
    if args.stats:
        with np.load(data_path) as npz:
            masks = npz["training_set"][:, 1].astype(np.uint8)
        with np.load(labels_path) as npz:
            test_masks = npz["test_masks"]
        aliens = (masks == _alien_template()).all(axis=(1, 2))
        print(f"aliens: {int(aliens.sum())}, first at index {int(np.argmax(aliens))}")
        print(f"clean training masks: {json.dumps(measure(masks[~aliens]))}")
        print(f"test masks: {json.dumps(measure(test_masks))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
