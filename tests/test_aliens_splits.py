"""helpers.data.aliens (shared-mask outliers) and helpers.data.splits (the report's stored splits)."""
import json
import warnings

import numpy as np
import pytest

from conftest import make_competition_arrays
from helpers.data.aliens import AmbiguousAliensWarning, find_aliens, known_alien_mask, mask_groups, remove_aliens
from helpers.data.loading import read_competition_file
from helpers.data.splits import make_split, split_path


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
    assert report.group_sizes == [12] and report.rules == ["dominant"] and report.ambiguous_group_sizes == []
    # With K = 2 the pair is a group of >= K that no rule explains: kept, with a warning, unless asked.
    with pytest.warns(AmbiguousAliensWarning, match=r"sizes \[2\]"):
        assert find_aliens(masks, min_count=2).group_sizes == [12]
    assert find_aliens(masks, min_count=2, extra_groups="remove").group_sizes == [12, 2]
    clean_images, clean_masks, kept, _ = remove_aliens(images, masks)
    assert len(clean_masks) == 28 and not np.isin(kept, report.indices).any()
    np.testing.assert_array_equal(clean_images, images[kept])


def test_every_mask_repeated_k_times_is_found_when_removal_is_explicit():
    rng = np.random.default_rng(1)
    masks = rng.integers(0, 5, size=(30, 64, 128), dtype=np.uint8)
    masks[:10] = masks[0]
    masks[10:13] = 0  # three background-only images: a legitimate repeat below K
    masks[13:25] = masks[13]
    # 12 vs 10: no single dominant group, neither is the shipped mask, so nothing goes silently.
    with pytest.warns(AmbiguousAliensWarning, match=r"sizes \[12, 10\]"):
        assert find_aliens(masks, min_count=10).indices.size == 0
    report = find_aliens(masks, min_count=10, extra_groups="remove")
    assert report.group_sizes == [12, 10] and report.rules == ["explicit", "explicit"]
    assert report.indices.tolist() == list(range(10)) + list(range(13, 25))
    assert find_aliens(masks, min_count=3, extra_groups="remove").group_sizes == [12, 10, 3]


def _masks_with_groups(sizes, n_single=20, *, seed=0):
    """Random (unique) masks: one group of identical masks per entry of `sizes` (in order), then singles.

    Returns the masks and the index array of each group.
    """
    rng = np.random.default_rng(seed)
    masks = rng.integers(0, 5, size=(sum(sizes) + n_single, 64, 128), dtype=np.uint8)
    order = rng.permutation(len(masks))  # groups at scattered indices, as in the real file
    groups, start = [], 0
    for size in sizes:
        ids = np.sort(order[start:start + size])
        masks[ids] = masks[ids[0]]
        groups.append(ids)
        start += size
    return masks, groups


def test_the_shipped_alien_mask_is_flagged_even_in_a_small_group():
    masks, (aliens, pair) = _masks_with_groups([3, 2])
    masks[aliens] = known_alien_mask()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = find_aliens(masks)
    assert report.indices.tolist() == aliens.tolist()
    assert report.group_sizes == [3] and report.rules == ["known_mask"]
    # One image with the shipped mask is an alien too; the rule can be turned off.
    masks, _ = _masks_with_groups([])
    masks[4] = known_alien_mask()
    assert find_aliens(masks).indices.tolist() == [4]
    assert find_aliens(masks, known_mask=None).indices.size == 0
    # Masks stored as floats (as in the competition file) match as well.
    assert find_aliens(masks.astype(np.float64)).indices.tolist() == [4]


def test_a_dominant_group_is_flagged_among_legitimate_repeats():
    masks, (aliens, *legit) = _masks_with_groups([110, 7, 7, 5, 3, 2])  # not the shipped mask
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = find_aliens(masks)
    assert report.indices.tolist() == aliens.tolist()
    assert report.group_sizes == [110] and report.rules == ["dominant"] and report.ambiguous_group_sizes == []


@pytest.mark.parametrize("shipped", [True, False], ids=["shipped-mask", "other-mask"])
@pytest.mark.parametrize("legit", [10, 12])
def test_a_legitimate_large_group_beside_the_aliens_is_kept_with_a_warning(shipped, legit):
    masks, (aliens, large, seven) = _masks_with_groups([110, legit, 7])
    if shipped:
        masks[aliens] = known_alien_mask()
    with pytest.warns(AmbiguousAliensWarning, match=rf"sizes \[{legit}\].*extra_groups='remove'"):
        report = find_aliens(masks)
    assert report.indices.tolist() == aliens.tolist()
    assert report.rules == ["known_mask" if shipped else "dominant"]
    assert report.ambiguous_group_sizes == [legit] and report.extra_groups == "warn"
    with pytest.warns(AmbiguousAliensWarning):
        _, clean_masks, kept, _ = remove_aliens(masks, masks)
    assert np.isin(large, kept).all() and len(kept) == len(masks) - 110


def test_the_choice_for_other_large_groups_is_explicit_and_recorded():
    masks, (aliens, large, seven) = _masks_with_groups([110, 12, 7])
    masks[aliens] = known_alien_mask()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        removed = find_aliens(masks, extra_groups="remove")
        kept = find_aliens(masks, extra_groups="keep")
        _, _, kept_ids, report = remove_aliens(masks, masks, extra_groups="remove")
    assert removed.indices.tolist() == sorted(aliens.tolist() + large.tolist())
    assert removed.group_sizes == [110, 12] and removed.rules == ["known_mask", "explicit"]
    assert removed.ambiguous_group_sizes == [12] and removed.extra_groups == "remove"
    assert kept.indices.tolist() == aliens.tolist() and kept.extra_groups == "keep"
    assert kept.ambiguous_group_sizes == [12]
    assert report.indices.tolist() == removed.indices.tolist() and report.rules == removed.rules
    assert not np.isin(kept_ids, large).any() and np.isin(seven, kept_ids).all()


@pytest.mark.parametrize("sizes", [[20, 20], [20, 15], [40, 10]])
def test_comparable_large_groups_are_never_removed_silently(sizes):
    masks, groups = _masks_with_groups(sizes + [3])
    with pytest.warns(AmbiguousAliensWarning, match=rf"sizes \[{sizes[0]}, {sizes[1]}\]"):
        report = find_aliens(masks)
    assert report.indices.size == 0 and report.ambiguous_group_sizes == sizes
    # The ratio is a parameter; a tie is never dominant, whatever the ratio.
    with pytest.warns(AmbiguousAliensWarning) as caught:
        report = find_aliens(masks, dominance_ratio=1.01)
    tie = sizes[0] == sizes[1]
    assert report.group_sizes == ([] if tie else [sizes[0]])
    assert report.ambiguous_group_sizes == (sizes if tie else [sizes[1]])
    assert f"sizes {report.ambiguous_group_sizes}" in str(caught[0].message)


def test_the_synthetic_data_loses_exactly_its_aliens_without_warning():
    from helpers.data import synthetic

    data = synthetic.generate(n_train=300, n_test=2, seed=3)  # 12 aliens, legitimate repeats < 10
    masks = data["training_set"][:, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = find_aliens(masks)
    assert report.indices.tolist() == data["alien_ids"].tolist() and len(report.indices) == 12
    assert report.rules == ["known_mask"] and report.ambiguous_group_sizes == []


def test_bad_arguments():
    with pytest.raises(ValueError, match="min_count"):
        find_aliens(np.zeros((3, 64, 128), np.uint8), min_count=1)
    with pytest.raises(ValueError, match="shaped"):
        find_aliens(np.zeros((64, 128), np.uint8))
    masks = np.zeros((3, 64, 128), np.uint8)
    with pytest.raises(ValueError, match="extra_groups must be one of 'warn', 'keep', 'remove'"):
        find_aliens(masks, extra_groups="drop")
    with pytest.raises(ValueError, match="dominance_ratio must be a number above 1"):
        find_aliens(masks, dominance_ratio=1)
    with pytest.raises(ValueError, match="known_mask must be 'shipped'"):
        find_aliens(masks, known_mask="alien")
    with pytest.raises(ValueError, match="single mask"):
        remove_aliens(masks, masks, known_mask=masks)


def test_report_split_sizes_and_storage(isolated_dirs, competition_file):
    data = read_competition_file(competition_file)
    clean = make_split(data, variant="clean")
    everything = make_split(data, variant="all")
    # 28 clean images: test = ceil(2.8) = 3, val = ceil(2.5) = 3, train = 22 (sklearn's rounding).
    assert clean.sizes() == {"train": 22, "val": 3, "test": 3}
    aliens = find_aliens(data.train_masks).indices
    # "all" = the clean split with the aliens added to its training part: the same validation and test images.
    assert everything.sizes() == {"train": 22 + len(aliens), "val": 3, "test": 3}
    np.testing.assert_array_equal(everything.train, np.sort(np.concatenate([clean.train, aliens])))
    for part in ("val", "test"):
        np.testing.assert_array_equal(getattr(everything, part), getattr(clean, part))
    parts = np.concatenate([clean.train, clean.val, clean.test])
    assert len(np.unique(parts)) == len(parts) == 28
    assert not np.isin(np.concatenate([clean.train, clean.val, clean.test]), aliens).any()
    stored = split_path(data.source.fingerprint, 42)
    assert json.loads(stored.read_text())["test"] == clean.test.tolist()
    # The stored split wins over recomputation: edit it and the edit is what comes back.
    payload = json.loads(stored.read_text())
    payload["train"], payload["val"] = payload["train"][1:], sorted(payload["val"] + payload["train"][:1])
    stored.write_text(json.dumps(payload))
    assert make_split(data).val.tolist() == payload["val"]


def test_split_sizes_match_the_report_for_the_real_counts():
    from helpers.data.splits import compute_split

    assert [len(p) for p in compute_split(2505, np.arange(2505))] == [2028, 226, 251]
    assert [len(p) for p in compute_split(2615, np.arange(2615))] == [2117, 236, 262]


def test_split_rejects_unknown_variant(competition_file, isolated_dirs):
    with pytest.raises(ValueError, match="unknown split variant"):
        make_split(read_competition_file(competition_file), variant="filtered")
