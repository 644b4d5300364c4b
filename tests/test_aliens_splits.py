"""helpers.aliens (shared-mask outliers) and helpers.splits (the report's stored splits)."""
import json

import numpy as np
import pytest

from conftest import make_competition_arrays
from helpers.aliens import find_aliens, mask_groups, remove_aliens
from helpers.data import read_competition_file
from helpers.splits import make_split, split_arrays, split_path


def _masks():
    training_set, _ = make_competition_arrays()
    return training_set[:, 0], training_set[:, 1].astype(np.uint8)


def test_groups_match_a_brute_force_comparison():
    _, masks = _masks()
    groups = {tuple(g) for g in mask_groups(masks)}
    brute = {tuple(j for j in range(len(masks)) if np.array_equal(masks[i], masks[j])) for i in range(len(masks))}
    assert groups == brute


def test_finds_exactly_the_shared_mask_group_and_not_the_legitimate_pair():
    images, masks = _masks()
    report = find_aliens(masks)
    assert report.indices.tolist() == [3, 7, 8, 15, 20, 21, 22, 30, 31, 33, 36, 39]
    assert report.group_sizes == [12]
    assert find_aliens(masks, min_count=2).group_sizes == [12, 2]
    clean_images, clean_masks, kept, _ = remove_aliens(images, masks)
    assert len(clean_masks) == 28 and not np.isin(kept, report.indices).any()
    np.testing.assert_array_equal(clean_images, images[kept])


def test_every_mask_repeated_k_times_is_found():
    rng = np.random.default_rng(1)
    masks = rng.integers(0, 5, size=(30, 64, 128), dtype=np.uint8)
    masks[:10] = masks[0]
    masks[10:13] = 0  # three background-only images: a legitimate repeat below K
    masks[13:25] = masks[13]
    report = find_aliens(masks, min_count=10)
    assert report.group_sizes == [12, 10]
    assert report.indices.tolist() == list(range(10)) + list(range(13, 25))
    assert find_aliens(masks, min_count=3).group_sizes == [12, 10, 3]


def test_bad_arguments():
    with pytest.raises(ValueError, match="min_count"):
        find_aliens(np.zeros((3, 64, 128), np.uint8), min_count=1)
    with pytest.raises(ValueError, match="shaped"):
        find_aliens(np.zeros((64, 128), np.uint8))


def test_report_split_sizes_and_storage(isolated_dirs, competition_file):
    data = read_competition_file(competition_file)
    clean = make_split(data, variant="clean")
    everything = make_split(data, variant="all")
    # 28 clean images: test = ceil(2.8) = 3, val = ceil(2.5) = 3, train = 22 (sklearn's rounding).
    assert clean.sizes() == {"train": 22, "val": 3, "test": 3}
    assert everything.sizes() == {"train": 32, "val": 4, "test": 4}
    aliens = find_aliens(data.train_masks).indices
    for split, n in ((clean, 28), (everything, 40)):
        parts = np.concatenate([split.train, split.val, split.test])
        assert len(np.unique(parts)) == len(parts) == n
    assert not np.isin(np.concatenate([clean.train, clean.val, clean.test]), aliens).any()
    stored = split_path(data.source.fingerprint, "clean", 42)
    assert json.loads(stored.read_text())["test"] == clean.test.tolist()
    # The stored split wins over recomputation: edit it and the edit is what comes back.
    payload = json.loads(stored.read_text())
    payload["train"], payload["val"] = payload["train"][1:], sorted(payload["val"] + payload["train"][:1])
    stored.write_text(json.dumps(payload))
    assert make_split(data).val.tolist() == payload["val"]
    images, masks = split_arrays(data, make_split(data))["test"]
    np.testing.assert_array_equal(masks, data.train_masks[clean.test])


def test_split_sizes_match_the_report_for_the_real_counts():
    from helpers.splits import compute_split

    assert [len(p) for p in compute_split(2505, np.arange(2505))] == [2028, 226, 251]
    assert [len(p) for p in compute_split(2615, np.arange(2615))] == [2117, 236, 262]


def test_split_rejects_unknown_variant(competition_file, isolated_dirs):
    with pytest.raises(ValueError, match="unknown split variant"):
        make_split(read_competition_file(competition_file), variant="filtered")
