"""helpers.data.loading: search order, conversion, fingerprint, validation errors and the inspect CLI."""
import numpy as np
import pytest

from conftest import make_competition_arrays, run_module
from helpers.data import loading as mdata
from helpers.data.loading import DataError, load_mars, read_competition_file


def test_reads_competition_layout_as_float32_and_uint8(competition_file):
    training_set, test_set = make_competition_arrays()
    data = read_competition_file(competition_file)
    assert data.train_images.dtype == np.float32 and data.train_images.shape == (40, 64, 128)
    assert data.train_masks.dtype == np.uint8 and data.test_images.shape == (12, 64, 128)
    np.testing.assert_allclose(data.train_images, training_set[:, 0] / 255.0, atol=1e-7)
    np.testing.assert_array_equal(data.train_masks, training_set[:, 1])
    np.testing.assert_allclose(data.test_images, test_set / 255.0, atol=1e-7)
    assert data.source.kind == "real" and data.source.labels_path is None
    assert 0.0 <= data.train_images.min() and data.train_images.max() <= 1.0


def test_fingerprint_ignores_storage_dtype(tmp_path):
    training_set, test_set = make_competition_arrays()
    np.savez(tmp_path / "a.npz", training_set=training_set, test_set=test_set.astype(np.float64))
    np.savez(tmp_path / "b.npz", training_set=training_set.astype(np.uint8), test_set=test_set)
    changed = training_set.copy()
    changed[0, 0, 0, 0] = (changed[0, 0, 0, 0] + 1) % 256
    np.savez(tmp_path / "c.npz", training_set=changed, test_set=test_set)
    a, b, c = (read_competition_file(tmp_path / f"{n}.npz").source.fingerprint for n in "abc")
    assert a == b != c


def test_search_order(isolated_dirs, monkeypatch):
    training_set, test_set = make_competition_arrays()
    places = {name: isolated_dirs / name for name in ("explicit", "env")}
    for folder in places.values():
        folder.mkdir()
    kaggle_file = isolated_dirs / "kaggle" / "some-dataset" / "mars_for_students.npz"
    kaggle_file.parent.mkdir(parents=True)
    local_file = isolated_dirs / "data" / "mars_for_students.npz"
    for path in (places["explicit"] / "x.npz", places["env"] / "y.npz", kaggle_file, local_file):
        np.savez(path, training_set=training_set, test_set=test_set)

    monkeypatch.setenv("MARS_DATA", str(places["env"] / "y.npz"))
    assert load_mars(places["explicit"] / "x.npz").source.found_by == "explicit path"
    assert load_mars().source.path == str((places["env"] / "y.npz").resolve())
    monkeypatch.delenv("MARS_DATA")
    assert load_mars().source.path == str(local_file.resolve())
    local_file.unlink()
    assert load_mars().source.found_by == "Kaggle input"
    assert load_mars().source.path == str(kaggle_file.resolve())


def test_synthetic_default_is_generated_once_then_reused(isolated_dirs, monkeypatch):
    from helpers.data import synthetic

    calls = []
    real_write = synthetic.write

    def small_write(path, **kwargs):
        calls.append(path)
        return real_write(path, n_train=48, n_test=8, seed=0)

    monkeypatch.setattr(synthetic, "write", small_write)
    first = load_mars()
    second = load_mars()
    assert len(calls) == 1
    assert first.source.kind == "synthetic" and first.source.found_by == "synthetic default"
    assert first.source.labels_path is not None
    assert first.source.fingerprint == second.source.fingerprint
    assert first.train_images.shape == (48, 64, 128)


def _save(path, **arrays):
    np.savez(path, **arrays)
    return path


def _bad_files(tmp_path):
    """(name, path) for every malformed case the loader must reject."""
    training_set, test_set = make_competition_arrays()
    cases = {}
    cases["missing file"] = tmp_path / "nope.npz"
    (tmp_path / "text.npz").write_text("this is not a zip archive\n")
    cases["not an npz"] = tmp_path / "text.npz"
    good = _save(tmp_path / "good.npz", training_set=training_set, test_set=test_set)
    (tmp_path / "truncated.npz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases["truncated"] = tmp_path / "truncated.npz"
    (tmp_path / "empty-file.npz").write_bytes(b"")
    cases["empty file"] = tmp_path / "empty-file.npz"
    cases["missing key"] = _save(tmp_path / "nokey.npz", training_set=training_set)
    cases["wrong train shape"] = _save(tmp_path / "shape1.npz", training_set=training_set[:, 0], test_set=test_set)
    cases["wrong image size"] = _save(tmp_path / "shape2.npz", training_set=training_set[..., :64], test_set=test_set)
    cases["wrong test shape"] = _save(tmp_path / "shape3.npz", training_set=training_set, test_set=test_set[:, :, :64])
    nan = training_set.copy()
    nan[2, 0, 5, 5] = np.nan
    cases["nan"] = _save(tmp_path / "nan.npz", training_set=nan, test_set=test_set)
    inf = test_set.astype(np.float64)
    inf[0, 0, 0] = np.inf
    cases["inf"] = _save(tmp_path / "inf.npz", training_set=training_set, test_set=inf)
    high = training_set.copy()
    high[1, 0, 0, 0] = 300
    cases["pixel above 255"] = _save(tmp_path / "high.npz", training_set=high, test_set=test_set)
    low = test_set.astype(np.float64)
    low[0, 0, 0] = -1
    cases["pixel below 0"] = _save(tmp_path / "low.npz", training_set=training_set, test_set=low)
    scaled = training_set.copy()
    scaled[:, 0] /= 255.0
    cases["already scaled"] = _save(tmp_path / "scaled.npz", training_set=scaled, test_set=test_set)
    for name, value in (("mask 5", 5), ("mask -1", -1), ("mask 1.5", 1.5)):
        masks = training_set.copy()
        masks[4, 1, 10, 10] = value
        cases[name] = _save(tmp_path / f"{name.replace(' ', '_')}.npz", training_set=masks, test_set=test_set)
    cases["empty training"] = _save(tmp_path / "empty1.npz", training_set=training_set[:0], test_set=test_set)
    cases["empty test"] = _save(tmp_path / "empty2.npz", training_set=training_set, test_set=test_set[:0])
    cases["text dtype"] = _save(tmp_path / "str.npz", training_set=training_set, test_set=np.array(["a", "b"]))
    cases["folder"] = tmp_path
    return cases


def test_every_malformed_file_is_rejected_with_one_line(tmp_path):
    for name, path in _bad_files(tmp_path).items():
        with pytest.raises(DataError) as err:
            read_competition_file(path)
        message = str(err.value)
        assert "\n" not in message and " — " in message, (name, message)
        assert str(path) in message, (name, message)


@pytest.mark.parametrize("name, expected", [
    ("missing file", "not found"), ("not an npz", "not a readable .npz"), ("truncated", "not a readable .npz"),
    ("missing key", "missing key(s) test_set"), ("wrong image size", "expected (N, 2, 64, 128)"),
    ("wrong test shape", "expected (M, 64, 128)"), ("nan", "NaN/inf"), ("inf", "NaN/inf"),
    ("pixel above 255", "outside grey levels"), ("pixel below 0", "outside grey levels"),
    ("already scaled", "already scaled"), ("mask 5", "not integers in 0..4"), ("mask 1.5", "not integers in 0..4"),
    ("empty test", "is empty"), ("text dtype", "not numeric"),
])
def test_error_names_the_problem(tmp_path, name, expected):
    with pytest.raises(DataError, match=None) as err:
        read_competition_file(_bad_files(tmp_path)[name])
    assert expected in str(err.value)


def test_inspect_cli_counts_and_finds_shared_masks(competition_file):
    training_set, _ = make_competition_arrays()
    masks = training_set[:, 1].astype(np.uint8)
    result = run_module("helpers.data.loading", "inspect", str(competition_file))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "training images: 40   test images: 12" in out
    share = np.bincount(masks.ravel(), minlength=5) / masks.size
    assert f"{100 * share[1]:.2f}%" in out
    images_with_soil = int((masks == 1).any(axis=(1, 2)).sum())
    assert f"soil" in out and f" {images_with_soil}\n" in out
    assert "12 images in 1 group(s) [12] (dominant), first indices [3, 7, 8, 15, 20, 21, 22, 30, 31, 33]" in out


def test_inspect_cli_rejects_bad_file_with_exit_2(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_text("garbage")
    result = run_module("helpers.data.loading", "inspect", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def _mixed(tmp_path, part):
    """A file in which half the training images (or test images) are scaled to 0..1 and half are not."""
    training_set, test_set = make_competition_arrays()
    training_set, test_set = training_set.copy(), test_set.astype(np.float64)
    if part == "train":
        training_set[:20, 0] /= 255.0
    else:
        test_set[:6] /= 255.0
    return _save(tmp_path / f"mixed_{part}.npz", training_set=training_set, test_set=test_set)


@pytest.mark.parametrize("part, expected", [
    ("train", "'training_set images' mixes scales: 20 image(s) lie in 0..1 (already scaled), 20 in 0..255"),
    ("test", "'test_set' mixes scales: 6 image(s) lie in 0..1 (already scaled), 6 in 0..255"),
])
def test_mixed_scale_files_are_refused_naming_the_counts(tmp_path, part, expected):
    path = _mixed(tmp_path, part)
    result = run_module("helpers.data.loading", "inspect", str(path))
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_fractional_grey_levels_are_refused_not_rounded(tmp_path):
    training_set, test_set = make_competition_arrays()
    training_set = training_set.copy()
    training_set[3, 0, 1, 2] = 100.5
    path = _save(tmp_path / "fraction.npz", training_set=training_set, test_set=test_set)
    with pytest.raises(DataError, match=r"holds 1 fractional grey levels \(e.g. 100.5\)"):
        read_competition_file(path)


def _renamed_npy(tmp_path):
    training_set, _ = make_competition_arrays()
    np.save(tmp_path / "x.npy", training_set)
    (tmp_path / "x.npy").rename(tmp_path / "renamed.npz")
    np.save(tmp_path / "x.npy", training_set)
    return [tmp_path / "x.npy", tmp_path / "renamed.npz"]


def test_a_plain_npy_is_refused_in_one_line_by_inspect_train_and_pipeline(tmp_path):
    for path in _renamed_npy(tmp_path):
        for command in (("helpers.data.loading", "inspect", str(path)),
                        ("helpers.run.train", "Baseline", "--profile", "smoke", "--data", str(path)),
                        ("helpers.study.pipeline", "--profile", "smoke", "--data", str(path), "--out", str(tmp_path / "o"))):
            result = run_module(*command)
            assert result.returncode == 2, (command, result.stderr[-2000:])
            assert "Traceback" not in result.stderr, (command, result.stderr[-2000:])
            errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and "a plain .npy array" in errors[0] and "np.savez(" in errors[0], errors
    assert not (tmp_path / "o").exists(), "a refused pipeline command writes nothing"


def test_an_npz_member_that_is_not_an_array_is_named(tmp_path):
    import zipfile

    training_set, test_set = make_competition_arrays()
    path = _save(tmp_path / "extra.npz", training_set=training_set, test_set=test_set)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(DataError, match=r"member\(s\) notes.txt are not .npy arrays"):
        read_competition_file(path)


def test_permission_denied_is_not_called_a_broken_file(competition_file, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(mdata.np, "load", denied)
    with pytest.raises(DataError, match="permission denied — make the file readable") as err:
        read_competition_file(competition_file)
    assert "re-download" not in str(err.value)
