"""Detecting and removing the 'alien' outliers: images whose mask is an exact duplicate shared by many.

In the competition file 110 training images show a superimposed alien drawn in varied ways; the drawings
differ, but all 110 masks are exactly the same array (docs/). So the images are found through their
masks: identical masks are grouped, and a group is flagged only when one of two rules explains it:

- `known_mask`: its mask equals the alien mask the package ships (`assets/alien_mask.npy`), whatever the
  group's size — an exact copy of that artificial 64x128 drawing does not occur by chance;
- `dominant`: it is the single dominant duplicate group — the largest, at least `min_count` (K = 10)
  members and at least `DOMINANCE_RATIO` (5) times the next-largest duplicate group. This catches an
  alien group drawn with another mask (a different release of the file, a hand-made test set).

Why not "every group of >= K": legitimate repeats exist — 39 distinct masks occur more than once in the
real file, the largest being the 7 background-only images (docs/) — and a subset or another data set may
hold a legitimate group of 10 or more, which must not vanish quietly. Any other group of >= K is kept
and named in a warning; `extra_groups="remove"` or `"keep"` makes the choice explicit (and silent), and
the report records it. On the real file (110 vs 7) and the synthetic default (110 with the shipped mask,
legitimate groups < 10) both rules agree and nothing is ambiguous.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from helpers.runtime.paths import ASSETS_DIR

DEFAULT_MIN_COUNT = 10
DOMINANCE_RATIO = 5.0
EXTRA_GROUPS = ("warn", "keep", "remove")
KNOWN_ALIEN_MASK_PATH = ASSETS_DIR / "alien_mask.npy"


class AmbiguousAliensWarning(UserWarning):
    """A group of >= K identical masks that neither rule explains was kept (see `find_aliens`)."""


@dataclass(frozen=True)
class AlienReport:
    """What `find_aliens` flagged and why.

    `indices`: flagged images (sorted); `group_sizes`: size of each flagged group (largest first) and
    `rules`: why each was flagged ("known_mask", "dominant" or "explicit" = removed by
    `extra_groups="remove"`); `ambiguous_group_sizes`: every group of >= `min_count` that neither rule
    explains (removed only under "remove"); `extra_groups`: the choice made for those.
    """

    indices: np.ndarray
    group_sizes: list[int]
    min_count: int
    rules: list[str] = field(default_factory=list)
    ambiguous_group_sizes: list[int] = field(default_factory=list)
    extra_groups: str = "warn"


@lru_cache(maxsize=1)
def known_alien_mask() -> np.ndarray:
    """The shipped alien mask, uint8 (64, 128), read-only."""
    mask = np.load(KNOWN_ALIEN_MASK_PATH).astype(np.uint8)
    mask.setflags(write=False)
    return mask


def mask_groups(masks: np.ndarray) -> list[np.ndarray]:
    """Indices of the images sharing each distinct mask (exact equality), one array per mask."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be shaped (N, H, W), got {masks.shape} — pass training_set[:, 1]")
    rows = np.ascontiguousarray(masks.reshape(len(masks), -1).astype(np.uint8))
    keys = rows.view(np.dtype((np.void, rows.shape[1])))[:, 0]
    _, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    boundaries = np.flatnonzero(np.diff(inverse[order])) + 1
    return np.split(order, boundaries)


def _check_options(min_count, extra_groups, known_mask, dominance_ratio):
    if int(min_count) < 2:
        raise ValueError(f"min_count must be at least 2 (a mask 'repeated' once is every mask), got {min_count}")
    if not isinstance(extra_groups, str) or extra_groups not in EXTRA_GROUPS:
        raise ValueError(f"extra_groups must be one of {', '.join(map(repr, EXTRA_GROUPS))}, got {extra_groups!r}")
    if isinstance(dominance_ratio, bool) or not isinstance(dominance_ratio, (int, float, np.integer, np.floating)) \
            or not dominance_ratio > 1:
        raise ValueError(f"dominance_ratio must be a number above 1 (ties are never dominant), got {dominance_ratio!r}")
    if isinstance(known_mask, str):
        if known_mask != "shipped":
            raise ValueError(f"known_mask must be 'shipped', None (no known mask) or an (H, W) array, got {known_mask!r}")
        return known_alien_mask()
    if known_mask is None:
        return None
    known_mask = np.asarray(known_mask)
    if known_mask.ndim != 2:
        raise ValueError(f"known_mask must be one (H, W) mask, got shape {known_mask.shape} — pass a single mask")
    return known_mask


def _find(masks, min_count, extra_groups, known_mask, dominance_ratio, stacklevel) -> AlienReport:
    known = _check_options(min_count, extra_groups, known_mask, dominance_ratio)
    masks = np.asarray(masks)
    groups = sorted(mask_groups(masks), key=lambda g: (-len(g), g[0]))
    duplicates = [g for g in groups if len(g) >= 2]
    is_known = known is not None and masks.shape[1:] == known.shape

    flagged, ambiguous = [], []
    for rank, g in enumerate(groups):
        if is_known and np.array_equal(masks[g[0]], known):
            flagged.append((g, "known_mask"))
        elif rank == 0 and len(g) >= min_count:
            runner_up = len(duplicates[1]) if len(duplicates) > 1 else 1
            if len(g) >= dominance_ratio * runner_up:
                flagged.append((g, "dominant"))
            else:
                ambiguous.append(g)
        elif len(g) >= min_count:
            ambiguous.append(g)

    if ambiguous and extra_groups == "remove":
        flagged += [(g, "explicit") for g in ambiguous]
    elif ambiguous and extra_groups == "warn":
        warnings.warn(
            f"kept {len(ambiguous)} group(s) of identical masks with sizes {[len(g) for g in ambiguous]} "
            f"(>= min_count={int(min_count)}): neither the shipped alien mask nor a single dominant group "
            f"(flagged: {[len(g) for g, _ in flagged]}) — pass extra_groups='remove' to drop them "
            f"or extra_groups='keep' to keep them without this warning",
            AmbiguousAliensWarning, stacklevel=stacklevel)

    flagged.sort(key=lambda item: (-len(item[0]), item[0][0]))
    indices = np.sort(np.concatenate([g for g, _ in flagged])) if flagged else np.zeros(0, dtype=np.int64)
    return AlienReport(indices=indices.astype(np.int64), group_sizes=[len(g) for g, _ in flagged],
                       min_count=int(min_count), rules=[rule for _, rule in flagged],
                       ambiguous_group_sizes=[len(g) for g in ambiguous], extra_groups=extra_groups)


def find_aliens(masks: np.ndarray, min_count: int = DEFAULT_MIN_COUNT, *, extra_groups: str = "warn",
                known_mask="shipped", dominance_ratio: float = DOMINANCE_RATIO) -> AlienReport:
    """Flag the alien images: groups with the shipped alien mask, and the single dominant group (module doc).

    Other groups of >= `min_count` identical masks: `extra_groups="warn"` keeps them and warns,
    `"keep"` keeps them silently, `"remove"` flags them too. `known_mask`: "shipped", None (rule off) or
    an (H, W) array.
    """
    return _find(masks, min_count, extra_groups, known_mask, dominance_ratio, stacklevel=3)


def remove_aliens(images: np.ndarray, masks: np.ndarray, min_count: int = DEFAULT_MIN_COUNT, *,
                  extra_groups: str = "warn", known_mask="shipped", dominance_ratio: float = DOMINANCE_RATIO):
    """Return (clean images, clean masks, kept indices into the input, the AlienReport); options as `find_aliens`."""
    report = _find(masks, min_count, extra_groups, known_mask, dominance_ratio, stacklevel=3)
    keep = np.setdiff1d(np.arange(len(masks)), report.indices)
    return images[keep], masks[keep], keep, report
