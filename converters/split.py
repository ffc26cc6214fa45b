"""Train/val/test splits by patient (or slide), stable as the dataset grows.

Tiles of one patient are strongly correlated, so a split must never put one patient's tiles on both
sides. :func:`group_of` finds the group of an item: by default the TCGA patient (``TCGA-XX-YYYY`` out of
a barcode such as ``TCGA-AR-A1AK-01Z-00-DX1``), else the first match (first group, when the regex has
one) of ``group_regex``, else the item's own name. :func:`assign_split` hashes ``seed:group`` into
[0, 1): the split depends on nothing but the group and the seed, so an item never moves between train
and val when other items are added. How a converter splits (the fractions, the group regex, the seed) is
one :class:`SplitOptions` value, passed through as it is.

>>> assign_split("TCGA-AR-A1AK-01Z-00-DX1_tile3.png") == assign_split("TCGA-AR-A1AK-02Z-00-DX7.png")
True
>>> group_of("slides/S12_x0_y512.png", group_regex=r"(S\\d+)_")
'S12'
>>> assign_split("S12_x0_y512.png", SplitOptions(val_fraction=1.0, group_regex=r"(S\\d+)_"))
'val'
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

TCGA_PATIENT = re.compile(r"TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class SplitOptions:
    """How items are split into train, val and test: by the hash of their group (patient or slide).

    ``val_fraction`` and ``test_fraction`` are the shares of the groups in val and test; ``group_regex``
    finds an item's group (:func:`group_of`; None: the TCGA patient); ``seed`` picks another split of the
    same groups. The fractions are checked where a split is decided (:func:`split_of_group`).
    """

    val_fraction: float = 0.2
    group_regex: str | None = None
    seed: int = 0
    test_fraction: float = 0.0


DEFAULT_SPLIT = SplitOptions()
"""The split every converter uses unless told otherwise: 20 % of the patients in val, none in test."""


def group_of(key: str, group_regex: str | None = None) -> str:
    """The group (patient/slide) of an item name or path."""
    key = str(key)
    if group_regex:
        m = re.search(group_regex, key)
        if m:
            return m.group(1) if m.groups() else m.group(0)
    else:
        m = TCGA_PATIENT.search(key)
        if m:
            return m.group(0).upper()
    return PurePosixPath(key.replace("\\", "/")).stem or key


def split_fraction(group: str, seed: int = 0) -> float:
    """A uniform number in [0, 1) from the group and the seed (SHA-256; the same on every machine)."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(key: str, options: SplitOptions = DEFAULT_SPLIT) -> str:
    """'train', 'val' or 'test' for an item, decided by the hash of its group."""
    return split_of_group(group_of(key, options.group_regex), options)


def split_of_group(group: str, options: SplitOptions = DEFAULT_SPLIT) -> str:
    """The split of a group (see :func:`assign_split`)."""
    val_fraction, test_fraction = options.val_fraction, options.test_fraction
    if not (0 <= val_fraction <= 1 and 0 <= test_fraction <= 1 and val_fraction + test_fraction <= 1):
        raise ValueError(f"bad fractions: val {val_fraction}, test {test_fraction}")
    u = split_fraction(group, options.seed)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def ensure_both(splits: dict[str, str], groups: dict[str, str], seed: int = 0) -> dict[str, str]:
    """Make sure train and val are both non-empty when there are at least two groups.

    When hashing leaves val (or train) empty, the group whose hash is closest to the boundary is moved:
    deterministic, and a no-op once the dataset is large enough for the hash alone to fill both sides.
    ``splits`` maps item -> split, ``groups`` maps item -> group; returns a new mapping.

    >>> ensure_both({"a": "train", "b": "train"}, {"a": "P1", "b": "P2"})
    {'a': 'train', 'b': 'val'}
    """
    out = dict(splits)
    distinct = sorted(set(groups.values()))
    if len(distinct) < 2:
        return out
    for missing, donor in (("val", "train"), ("train", "val")):
        if missing in out.values() or donor not in out.values():
            continue
        donors = {g for i, g in groups.items() if out[i] == donor}
        if len(donors) < 2:
            continue
        candidates = sorted(donors, key=lambda g: split_fraction(g, seed))
        pick = candidates[0] if missing == "val" else candidates[-1]
        for item, g in groups.items():
            if g == pick:
                out[item] = missing
    return out


@dataclass
class Balanced:
    """What :func:`balance` decided: each item's split, items also written to val, and why (a warning)."""

    splits: dict[str, str]
    copies_to_val: list[str] = field(default_factory=list)
    note: str | None = None


def balance(
    splits: dict[str, str], groups: dict[str, str], options: SplitOptions = DEFAULT_SPLIT
) -> Balanced:
    """Splits a trainer accepts (train and val both non-empty), whatever the number of items and groups.

    ``splits``/``groups`` map item -> split / group (patient). With ``options.val_fraction`` 0 nothing
    changes; ``options.seed`` breaks the ties.

    - two or more groups: :func:`ensure_both` (a whole group moves; still patient-level);
    - one group, several items: the split is by item (``val_fraction`` of the items, at least one), and
      the note says that validation is then not patient-level, so its scores are optimistic;
    - one item: it stays in train and is also copied to val (``copies_to_val``): the model trains, and
      the note says that its "held-out" scores are scores on its own training image.

    >>> balance({"a": "train", "b": "train", "c": "train"}, {"a": "P", "b": "P", "c": "P"}).splits
    {'a': 'val', 'b': 'train', 'c': 'train'}
    >>> balance({"a": "val"}, {"a": "P"}).copies_to_val
    ['a']
    """
    val_fraction, seed = options.val_fraction, options.seed
    if val_fraction <= 0 or not splits:
        return Balanced(dict(splits))
    if len(set(groups.values())) >= 2:
        out = ensure_both(splits, groups, seed)
        moved = sorted({groups[i] for i in out if out[i] != splits[i]})
        note = (
            f"moved patient group(s) {', '.join(moved)} so that train and val both have items"
            if moved
            else None
        )
        return Balanced(out, note=note)
    group = next(iter(groups.values()), "")
    have = set(splits.values())
    if len(splits) == 1:
        item = next(iter(splits))
        return Balanced(
            {item: "train"},
            [item],
            f"one item ({item}) only: it is in train and copied to val, so validation scores are "
            "measured on the training image (not held out); add more images",
        )
    if "train" in have and "val" in have:
        return Balanced(dict(splits))
    ranked = sorted(splits, key=lambda i: split_fraction(i, seed))
    n_val = min(len(ranked) - 1, max(1, round(val_fraction * len(ranked))))
    val = set(ranked[:n_val])
    out = {i: "val" if i in val else "train" for i in splits}
    return Balanced(
        out,
        note=f"all {len(splits)} items are of one patient group ({group}): split by item ({n_val} to val), "
        "so validation is not patient-level and its scores are optimistic; add a second patient",
    )
