"""The Kaggle CSV: exact layout, round trip, strict reading, scoring equal to Keras' MeanIoU/IoU, the CLI."""
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from helpers.predict.submission import (HEADER, SubmissionError, main, read_submission, score_submission,
                                        write_submission)

RNG = np.random.default_rng(7)


def _random_masks(n):
    return RNG.integers(0, 5, size=(n, 64, 128), dtype=np.uint8)


def _write_labels(path, masks, public_ids, private_ids):
    np.savez(path, test_masks=masks, public_ids=np.asarray(public_ids, np.int64),
             private_ids=np.asarray(private_ids, np.int64))
    return path


def _keras_scores(y_true, y_pred):
    competition = keras.metrics.MeanIoU(num_classes=5, ignore_class=0)
    competition.update_state(y_true.ravel(), y_pred.ravel())
    classes_1_4 = keras.metrics.IoU(num_classes=5, target_class_ids=[1, 2, 3, 4])
    classes_1_4.update_state(y_true.ravel(), y_pred.ravel())
    return float(competition.result()), float(classes_1_4.result())


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "helpers.predict.submission", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_first_lines_match_hand_built_text(tmp_path):
    masks = np.zeros((2, 64, 128), np.int64)
    masks[0, 0, 1] = 3
    masks[0, 1, 0] = 4
    masks[1, 63, 127] = 2
    masks[1, 0, 0] = 1
    path = write_submission(masks, tmp_path / "sub.csv")
    expected_header = "id," + ",".join(str(i) for i in range(8192))
    row0 = ["0"] * 8192
    row0[1], row0[128] = "3", "4"
    row1 = ["0"] * 8192
    row1[0], row1[8191] = "1", "2"
    expected = f"{expected_header}\n0,{','.join(row0)}\n1,{','.join(row1)}\n"
    assert path.read_text() == expected


def test_round_trip_returns_the_input(tmp_path):
    masks = _random_masks(5)
    path = write_submission(masks.astype(np.int32), tmp_path / "sub.csv")
    ids, read_back = read_submission(path, n_images=5)
    np.testing.assert_array_equal(ids, np.arange(5))
    np.testing.assert_array_equal(read_back, masks)
    assert read_back.dtype == np.uint8


def test_lenient_spelling_of_integers_is_read(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_text(HEADER + "\r\n0," + ",".join(["01", " 2"] + ["4"] * 8190) + "\r\n")
    _, masks = read_submission(path)
    assert masks[0, 0, :3].tolist() == [1, 2, 4]


def test_write_is_atomic_and_leaves_no_temp_file_on_bad_input(tmp_path):
    path = tmp_path / "sub.csv"
    write_submission(_random_masks(1), path)
    before = path.read_bytes()
    with pytest.raises(SubmissionError):
        write_submission(np.full((1, 64, 128), 5), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv"]


@pytest.mark.parametrize("predictions, fragment", [
    (np.zeros((2, 64, 128, 5), np.float32), "argmax"),
    (np.zeros((2, 64, 128, 1), np.int64), "squeeze"),
    (np.zeros((2, 64, 64), np.int64), "shape"),
    (np.zeros((0, 64, 128), np.int64), "N >= 1"),
    (np.zeros((2, 64, 128), np.float32), "dtype"),
    (np.full((2, 64, 128), -1), "0..4"),
    (np.full((2, 64, 128), 5), "0..4"),
])
def test_bad_predictions_are_rejected(tmp_path, predictions, fragment):
    with pytest.raises(SubmissionError, match=fragment):
        write_submission(predictions, tmp_path / "sub.csv")


def _valid_row(i, values=None):
    values = values if values is not None else ["1"] * 8192
    return f"{i}," + ",".join(values)


MALFORMED = {
    "header": ("id,pixels\n" + _valid_row(0) + "\n", "line 1: header"),
    "header_short": (HEADER.rsplit(",", 1)[0] + "\n" + _valid_row(0) + "\n", "line 1: header"),
    "no_rows": (HEADER + "\n", "no data rows"),
    "id_skipped": (HEADER + "\n" + _valid_row(0) + "\n" + _valid_row(2) + "\n", "line 3: id '2', expected 1"),
    "id_not_integer": (HEADER + "\n" + _valid_row("a") + "\n", "line 2: id 'a', expected 0"),
    "too_few_values": (HEADER + "\n" + _valid_row(0, ["1"] * 8191) + "\n", "line 2: 8192 columns, expected 8193"),
    "too_many_values": (HEADER + "\n" + _valid_row(0, ["1"] * 8193) + "\n", "line 2: 8194 columns"),
    "float_value": (HEADER + "\n" + _valid_row(0, ["1"] * 9 + ["1.0"] + ["1"] * 8182) + "\n",
                    "line 2, pixel column 9: '1.0' is not an integer"),
    "empty_value": (HEADER + "\n" + _valid_row(0, ["1"] * 8191 + [""]) + "\n", "pixel column 8191: '' is not an integer"),
    "out_of_range": (HEADER + "\n" + _valid_row(0) + "\n" + _valid_row(1, ["7"] + ["1"] * 8191) + "\n",
                     "line 3, pixel column 0: class id 7 outside 0..4"),
    "negative": (HEADER + "\n" + _valid_row(0, ["1"] * 100 + ["-1"] + ["1"] * 8091) + "\n", "class id -1 outside"),
    "blank_line": (HEADER + "\n" + _valid_row(0) + "\n\n", "line 3: no comma"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_csv_is_rejected_with_a_line_number(tmp_path, case):
    text, fragment = MALFORMED[case]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(SubmissionError) as error:
        read_submission(path)
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


def test_row_count_is_checked(tmp_path):
    path = write_submission(_random_masks(3), tmp_path / "sub.csv")
    with pytest.raises(SubmissionError, match="3 rows, expected 4"):
        read_submission(path, n_images=4)


@pytest.fixture
def scored_case(tmp_path):
    truth = _random_masks(12)
    predictions = truth.copy()
    noise = RNG.random(truth.shape) < 0.4
    predictions[noise] = RNG.integers(0, 5, size=int(noise.sum()))
    predictions[:, :4, :] = 0
    labels = _write_labels(tmp_path / "synthetic_test_labels.npz", truth, [1, 4, 7], [0, 2, 3, 5, 6, 8, 9, 10, 11])
    submission = write_submission(predictions, tmp_path / "sub.csv")
    return truth, predictions, submission, labels


@pytest.mark.parametrize("part, ids", [("all", list(range(12))), ("public", [1, 4, 7]),
                                       ("private", [0, 2, 3, 5, 6, 8, 9, 10, 11])])
def test_score_equals_keras_metrics(scored_case, part, ids):
    truth, predictions, submission, labels = scored_case
    result = score_submission(submission, labels, part=part)
    competition, classes_1_4 = _keras_scores(truth[ids], predictions[ids])
    assert result["n_images"] == len(ids)
    assert result["competition_miou"] == pytest.approx(competition, abs=1e-6)
    assert result["miou_1_4"] == pytest.approx(classes_1_4, abs=1e-6)


def test_score_counts_an_absent_class_like_keras(tmp_path):
    truth = np.ones((2, 64, 128), np.uint8)
    truth[:, :, :64] = 2
    predictions = truth.copy()
    predictions[0, :10, :10] = 0
    predictions[1, :5, 64:70] = 4
    labels = _write_labels(tmp_path / "labels.npz", truth, [0], [1])
    result = score_submission(write_submission(predictions, tmp_path / "s.csv"), labels)
    competition, classes_1_4 = _keras_scores(truth, predictions)
    assert result["competition_miou"] == pytest.approx(competition, abs=1e-6)
    assert result["miou_1_4"] == pytest.approx(classes_1_4, abs=1e-6)
    assert result["per_class_iou"]["sand"] is None
    assert result["per_class_iou"]["bedrock"] == pytest.approx((2 * 64 * 64 - 100) / (2 * 64 * 64))


def _error_lines(stderr):
    """Lines the CLI itself wrote; TensorFlow's C++ start-up log lines (imported by `helpers`) are not ours."""
    return [line for line in stderr.splitlines() if line.startswith(("error:", "Traceback"))]


def test_cli_prints_the_keras_score(scored_case):
    truth, predictions, submission, labels = scored_case
    completed = _run_cli("score", submission, "--labels", labels, "--part", "public")
    assert completed.returncode == 0, completed.stderr
    assert _error_lines(completed.stderr) == []
    printed = dict(line.split(": ", 1) for line in completed.stdout.splitlines())
    competition, classes_1_4 = _keras_scores(truth[[1, 4, 7]], predictions[[1, 4, 7]])
    assert printed["part"] == "public (3 images)"
    assert float(printed["competition_miou"]) == pytest.approx(competition, abs=1e-6)
    assert float(printed["miou_1_4"]) == pytest.approx(classes_1_4, abs=1e-6)


def test_cli_rejects_malformed_files_in_one_line(tmp_path, scored_case, capsys):
    truth, _, submission, labels = scored_case
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text(MALFORMED["float_value"][0])
    short = write_submission(truth[:5], tmp_path / "short.csv")
    no_public = tmp_path / "no_public.npz"
    np.savez(no_public, test_masks=truth, private_ids=np.arange(12))
    not_npz = tmp_path / "not.npz"
    not_npz.write_text("hello")
    bad_ids = _write_labels(tmp_path / "bad_ids.npz", truth, [12], [0])
    float_masks = tmp_path / "float_masks.npz"
    np.savez(float_masks, test_masks=truth.astype(np.float32), public_ids=[0], private_ids=[1])
    cases = [(bad_csv, labels, "error: line 2, pixel column 9: '1.0' is not an integer class id"),
             (short, labels, "has 5 rows but labels file"), (submission, no_public, "lacks public_ids"),
             (submission, not_npz, "not a readable .npy or .npz"), (submission, bad_ids, "public_ids outside 0..11"),
             (submission, float_masks, "expected (N, 64, 128) integers"),
             (tmp_path / "missing.csv", labels, "does not exist")]
    for csv_path, labels_path, fragment in cases:
        assert main(["score", str(csv_path), "--labels", str(labels_path)]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert len(captured.err.strip().splitlines()) == 1 and fragment in captured.err, captured.err


def test_time_to_write_the_full_test_set(tmp_path):
    masks = _random_masks(10022)
    start = time.perf_counter()
    path = write_submission(masks, tmp_path / "full.csv")
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    _, read_back = read_submission(path, n_images=10022)
    read_s = time.perf_counter() - start
    print(f"\nwrite 10022 rows: {write_s:.2f} s ({path.stat().st_size / 1e6:.0f} MB); read + validate: {read_s:.2f} s")
    np.testing.assert_array_equal(read_back, masks)


def test_unknown_part_is_rejected(scored_case):
    _, _, submission, labels = scored_case
    with pytest.raises(SubmissionError, match="part 'test' is unknown"):
        score_submission(submission, labels, part="test")


def test_plain_mask_array_is_accepted_as_labels_with_a_seeded_25_75_partition(tmp_path):
    from helpers.data.hidden_labels import default_partition, load_test_labels

    truth = _random_masks(12)
    np.save(tmp_path / "masks.npy", truth)
    labels = load_test_labels(tmp_path / "masks.npy")
    np.testing.assert_array_equal(labels["test_masks"], truth)
    public, private = labels["public_ids"], labels["private_ids"]
    assert len(public) == 3 and len(private) == 9  # round(25 % of 12)
    assert sorted(np.concatenate([public, private]).tolist()) == list(range(12))
    again = default_partition(12)
    np.testing.assert_array_equal(public, again[0])  # seeded: the same ids every time
    np.savez(tmp_path / "only_masks.npz", test_masks=truth)
    np.testing.assert_array_equal(load_test_labels(tmp_path / "only_masks.npz")["public_ids"], public)


def test_labels_are_checked_when_the_data_is_loaded(tmp_path, competition_file):
    from helpers.data.loading import DataError, load_mars

    np.save(tmp_path / "good.npy", _random_masks(12))  # the fixture's file has 12 test images
    assert load_mars(competition_file, tmp_path / "good.npy").source.labels_path.endswith("good.npy")
    np.save(tmp_path / "short.npy", _random_masks(5))
    with pytest.raises(DataError, match="5 test masks for 12 test images"):
        load_mars(competition_file, tmp_path / "short.npy")
    np.save(tmp_path / "floats.npy", _random_masks(12).astype(np.float32))
    with pytest.raises(DataError, match="expected \\(N, 64, 128\\) integers"):
        load_mars(competition_file, tmp_path / "floats.npy")


@pytest.mark.parametrize("public, private, fragment", [
    ([0, 1, 2, 3], list(range(3, 12)), "1 id(s) are both public and private (e.g. 3)"),
    ([0, 1, 2], list(range(3, 10)), "cover 10 of the 12 test images"),
])
def test_overlapping_or_partial_parts_are_refused(tmp_path, public, private, fragment):
    from helpers.data.hidden_labels import LabelsError, load_test_labels

    path = _write_labels(tmp_path / "labels.npz", _random_masks(12), public, private)
    with pytest.raises(LabelsError) as error:
        load_test_labels(path)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_a_labels_file_of_another_size_is_not_blamed_on_the_csv(tmp_path, scored_case):
    truth, _, submission, _ = scored_case
    labels = _write_labels(tmp_path / "big.npz", _random_masks(16), [0, 1, 2, 3], list(range(4, 16)))
    with pytest.raises(SubmissionError, match=r"has 12 rows but labels file .*big.npz holds 16 test masks"):
        score_submission(submission, labels)


def test_the_labels_fingerprint_follows_the_content(tmp_path):
    from helpers.data.hidden_labels import labels_fingerprint, load_test_labels

    masks = _random_masks(12)
    a = labels_fingerprint(load_test_labels(_write_labels(tmp_path / "a.npz", masks, [0, 1, 2], list(range(3, 12)))))
    same = labels_fingerprint(load_test_labels(_write_labels(tmp_path / "b.npz", masks, [0, 1, 2], list(range(3, 12)))))
    other_part = labels_fingerprint(load_test_labels(_write_labels(tmp_path / "c.npz", masks, [0, 1, 3],
                                                                   [2, *range(4, 12)])))
    changed = masks.copy()
    changed[0, 0, 0] = (changed[0, 0, 0] + 1) % 5
    other_mask = labels_fingerprint(load_test_labels(_write_labels(tmp_path / "d.npz", changed, [0, 1, 2],
                                                                   list(range(3, 12)))))
    assert a == same and len({a, other_part, other_mask}) == 3
