"""The synthetic default data: layout, determinism, atomic writing, the real data's statistics, aliens, CLI.

Statistics are checked on one realistic-size set (2615 training images, as in the competition file)
against the figures of the real clean set (docs/study.md), with tolerances of a few points.
"""
import json
import os
import time

import cv2
import numpy as np
import pytest

from conftest import run_module
from helpers.configs.constants import BACKGROUND, BEDROCK, BIG_ROCK, N_ALIENS_REAL, N_TRAIN_REAL, SAND, SOIL
from helpers.data import synthetic
from helpers.runtime.paths import ASSETS_DIR

N_TEST = 400
REAL_SHARE = {BACKGROUND: 24.31, SOIL: 33.90, BEDROCK: 23.28, SAND: 18.38}  # % of clean-set pixels


@pytest.fixture(scope="module")
def realistic():
    start = time.perf_counter()
    data = synthetic.generate(n_train=N_TRAIN_REAL, n_test=N_TEST, seed=0)
    print(f"\ngenerate({N_TRAIN_REAL}, {N_TEST}) took {time.perf_counter() - start:.1f} s")
    clean = np.setdiff1d(np.arange(N_TRAIN_REAL), data["alien_ids"])
    data["clean_images"] = data["training_set"][clean, 0]
    data["clean_masks"] = data["training_set"][clean, 1].astype(np.uint8)
    return data


@pytest.fixture(scope="module")
def alien_mask():
    return np.load(ASSETS_DIR / "alien_mask.npy")


def test_same_seed_is_bit_identical_other_seed_differs():
    first, again, other = (synthetic.generate(40, 8, seed) for seed in (0, 0, 1))
    assert first.keys() == again.keys()
    for key in first:
        assert first[key].dtype == again[key].dtype
        assert np.array_equal(first[key], again[key]), key
    for key in ("training_set", "test_set", "test_masks"):
        assert not np.array_equal(first[key], other[key]), key


def test_generate_layout_dtypes_and_ranges():
    data = synthetic.generate(30, 12, seed=5)
    training_set = data["training_set"]
    assert training_set.shape == (30, 2, 64, 128) and training_set.dtype == np.float64
    images, masks = training_set[:, 0], training_set[:, 1]
    assert np.array_equal(images, np.round(images)) and images.min() >= 0 and images.max() <= 255
    assert images.std() > 10  # real pictures, not a constant
    assert np.array_equal(masks, np.round(masks)) and masks.min() >= 0 and masks.max() <= 4
    assert data["test_set"].shape == (12, 64, 128) and data["test_set"].dtype == np.uint8
    assert data["test_masks"].shape == (12, 64, 128) and data["test_masks"].dtype == np.uint8
    assert data["test_masks"].max() <= 4
    for key in ("public_ids", "private_ids", "alien_ids"):
        assert data[key].dtype == np.int64 and np.all(np.diff(data[key]) > 0), key
    assert data["alien_ids"].size == synthetic.alien_count(30) == 1


def test_write_produces_the_competition_layout_and_hidden_labels(tmp_path):
    target = tmp_path / "synth.npz"
    data_path, labels_path = synthetic.write(target, n_train=30, n_test=12, seed=2)
    assert data_path == target and labels_path == synthetic.labels_path_for(target)
    assert labels_path == tmp_path / "synth_test_labels.npz"
    expected = synthetic.generate(30, 12, seed=2)
    with np.load(data_path) as npz:
        assert sorted(npz.files) == ["test_set", "training_set"]
        assert np.array_equal(npz["training_set"], expected["training_set"])
        assert npz["training_set"].dtype == np.float64
        assert np.array_equal(npz["test_set"], expected["test_set"])
    with np.load(labels_path) as npz:
        assert sorted(npz.files) == ["meta", "private_ids", "public_ids", "test_masks"]
        for key in ("test_masks", "public_ids", "private_ids"):
            assert np.array_equal(npz[key], expected[key]), key
        meta = json.loads(str(npz["meta"]))
    assert meta["version"] == synthetic.GENERATOR_VERSION
    assert (meta["seed"], meta["n_train"], meta["n_test"]) == (2, 30, 12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth.npz", "synth_test_labels.npz"]
    umask = os.umask(0)
    os.umask(umask)
    assert data_path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temporary file's private mode


def test_interrupted_write_keeps_previous_files_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "synth.npz"
    synthetic.write(target, n_train=10, n_test=4, seed=0)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def savez_then_fail(handle, **arrays):  # the data file's write dies halfway (disk full, kill)
        handle.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(synthetic.np, "savez", savez_then_fail)
    with pytest.raises(OSError, match="disk full"):
        synthetic.write(target, n_train=10, n_test=4, seed=1)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # same two files, untouched; no temporary left behind


@pytest.mark.parametrize("kwargs", [
    {"n_train": 0}, {"n_test": 1}, {"seed": -1}, {"n_train": 2.5}, {"n_test": True}, {"seed": "0"}])
def test_bad_sizes_raise_one_line_value_error(kwargs):
    with pytest.raises(ValueError) as error:
        synthetic.generate(**{"n_train": 10, "n_test": 4, "seed": 0, **kwargs})
    assert "\n" not in str(error.value) and "—" in str(error.value)


def test_bad_output_path_raises(tmp_path):
    with pytest.raises(ValueError, match=r"\.npz"):
        synthetic.write(tmp_path / "synth.txt", n_train=10, n_test=4)
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(ValueError, match="folder"):
        synthetic.write(tmp_path / "folder.npz", n_train=10, n_test=4)


def test_class_statistics_match_the_real_clean_set(realistic):
    stats = synthetic.measure(realistic["clean_masks"])
    print(json.dumps(stats))
    n = stats["images"]
    assert n == N_TRAIN_REAL - N_ALIENS_REAL
    share = 100 * np.array(stats["pixel_share"])
    for cls, real in REAL_SHARE.items():
        assert abs(share[cls] - real) < 3.0, (cls, share[cls], real)
    assert 0.05 < share[BIG_ROCK] < 0.3
    assert 0.015 < stats["images_with_class"][BIG_ROCK] / n < 0.04  # real: 63 / 2505 = 2.5 %
    assert 0.75 < stats["images_with_class"][BACKGROUND] / n < 0.9  # real: 2087 / 2505 = 83 %
    assert 1.2 < stats["labelled_classes_per_image"] < 1.5  # real: ≈ 1.3
    assert stats["share_with_3_or_more_classes"] < 0.1
    assert stats["background_only"] == 7  # real: 7 per 2505
    assert 0.07 < stats["mostly_background"] / n < 0.14  # real: 257 / 2505 = 10 %
    assert stats["repeated_masks"] == 39  # real: 39, the all-background mask among them
    assert stats["largest_repeat"] < 10  # below the alien detector's K = 10


def test_masks_are_coarse_smooth_regions_with_unlabelled_gaps(realistic):
    masks = realistic["clean_masks"]
    changes = ((masks[:, 1:] != masks[:, :-1]).mean() + (masks[:, :, 1:] != masks[:, :, :-1]).mean()) / 2
    noise = np.random.default_rng(0).integers(0, 5, masks[:50].shape)
    noise_changes = (noise[:, 1:] != noise[:, :-1]).mean()
    assert changes < 0.05 < noise_changes  # smooth curves, not pixel noise (~0.8)
    pieces = [cv2.connectedComponents((m == c).astype(np.uint8), connectivity=4)[0] - 1
              for m in masks[:300] for c in (SOIL, BEDROCK, SAND, BIG_ROCK) if (m == c).any()]
    assert np.mean(pieces) < 4  # a few polygons per class, not speckle
    labelled = masks > 0
    touch = (((masks[:, :, 1:] != masks[:, :, :-1]) & labelled[:, :, 1:] & labelled[:, :, :-1]).any(axis=(1, 2))
             | ((masks[:, 1:] != masks[:, :-1]) & labelled[:, 1:] & labelled[:, :-1]).any(axis=(1, 2)))
    several = np.stack([(masks == c).any(axis=(1, 2)) for c in (SOIL, BEDROCK, SAND, BIG_ROCK)]).sum(0) >= 2
    separated = (several & ~touch).sum() / several.sum()
    assert 0.1 < separated < 0.5  # often an unlabelled gap between regions, often shared edges


def test_sky_distance_and_rover_parts_stay_unlabelled():
    found = {"sky": 0, "rover": 0}
    for layout_id in range(400):
        lay = synthetic._layout(np.random.default_rng([0, 9, layout_id]), background_only=False)
        if lay["sky"] is not None:
            assert not lay["mask"][lay["sky"]].any()
            found["sky"] += 1
        if lay["rover"] is not None:
            assert not lay["mask"][lay["rover"]].any()
            found["rover"] += 1
    assert found["sky"] > 20 and found["rover"] > 5


def test_aliens_share_the_exact_asset_mask_but_vary(realistic, alien_mask):
    ids = realistic["alien_ids"]
    training_set = realistic["training_set"]
    assert len(ids) == N_ALIENS_REAL == synthetic.alien_count(N_TRAIN_REAL)
    masks = training_set[:, 1]
    is_alien_mask = (masks == alien_mask).all(axis=(1, 2))
    assert np.array_equal(np.flatnonzero(is_alien_mask), ids)
    assert not (realistic["test_masks"] == alien_mask).all(axis=(1, 2)).any()
    assert ids.min() < N_TRAIN_REAL / 4 and ids.max() > 3 * N_TRAIN_REAL / 4 and np.diff(ids).max() > 1
    images = training_set[ids, 0]
    assert len({im.tobytes() for im in images}) == len(ids)
    pairs = np.abs(images[:-1] - images[1:]).mean(axis=(1, 2))
    assert pairs.min() > 3 and np.median(pairs) > 15  # different drawings on different terrain
    assert synthetic.alien_count(24) == 1 and synthetic.alien_count(23) == 0


def test_public_private_partition(realistic):
    public, private = realistic["public_ids"], realistic["private_ids"]
    assert len(np.intersect1d(public, private)) == 0
    assert np.array_equal(np.union1d(public, private), np.arange(N_TEST))
    assert len(public) == N_TEST // 4
    other = synthetic.generate(4, N_TEST, seed=1)["public_ids"]
    assert not np.array_equal(other, public)


def test_grey_levels_overlap_while_texture_differs(realistic):
    images = realistic["clean_images"].astype(np.float32)
    masks = realistic["clean_masks"]
    laplacian = np.abs(np.stack([cv2.Laplacian(im, cv2.CV_32F, ksize=1) for im in images]))
    hist, texture = {}, {}
    for cls in (SOIL, BEDROCK, SAND, BIG_ROCK):
        pixels = masks == cls
        hist[cls] = np.histogram(images[pixels], bins=32, range=(0, 256))[0] / pixels.sum()
        texture[cls] = laplacian[pixels].mean()
    print({c: round(float(v), 2) for c, v in texture.items()})
    for a, b in ((SOIL, BEDROCK), (SOIL, SAND), (BEDROCK, SAND)):
        assert np.minimum(hist[a], hist[b]).sum() > 0.75, (a, b)  # grey level alone cannot separate them
    assert texture[BEDROCK] > 1.2 * texture[SOIL] and texture[BEDROCK] > 1.2 * texture[SAND]
    assert texture[BIG_ROCK] > texture[BEDROCK]


def test_test_set_follows_the_clean_training_distribution(realistic):
    train, test = synthetic.measure(realistic["clean_masks"]), synthetic.measure(realistic["test_masks"])
    assert np.allclose(train["pixel_share"], test["pixel_share"], atol=0.05)
    train_images, test_images = realistic["clean_images"], realistic["test_set"].astype(np.float64)
    assert abs(train_images.mean() - test_images.mean()) < 0.1 * train_images.mean()
    assert abs(train_images.std() - test_images.std()) < 0.1 * train_images.std()


def test_cli_writes_the_files_and_reports_them(tmp_path):
    target = tmp_path / "cli.npz"
    result = run_module("helpers.data.synthetic", "--out", str(target), "--n-train", "30", "--n-test", "8", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert str(target) in result.stdout and str(synthetic.labels_path_for(target)) in result.stdout
    assert "aliens=1" in result.stdout and " s" in result.stdout
    with np.load(target) as npz:
        assert np.array_equal(npz["training_set"], synthetic.generate(30, 8, seed=3)["training_set"])


def test_cli_bad_argument_is_one_line_exit_2(tmp_path, capsys):
    target = tmp_path / "bad.npz"
    result = run_module("helpers.data.synthetic", "--out", str(target), "--n-train", "many")
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert not target.exists()
    assert synthetic.main(["--out", str(target), "--n-train", "0"]) == 2  # a value generate() refuses
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert not target.exists()
