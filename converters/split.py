"""Train/val/test splits by patient (or slide), stable as the dataset grows.

Tiles of one patient are strongly correlated, so a split must never put one patient's tiles on both
sides. :func:`group_of` finds the group of an item: by default the TCGA patient (``TCGA-XX-YYYY`` out of
a barcode such as ``TCGA-AR-A1AK-01Z-00-DX1``), else the first match (first group, when the regex has
one) of ``group_regex``, else the item's own name. :func:`assign_split` hashes ``seed:group`` into
[0, 1): the split depends on nothing but the group and the seed, so an item never moves between train
and val when other items are added.

>>> assign_split("TCGA-AR-A1AK-01Z-00-DX1_tile3.png") == assign_split("TCGA-AR-A1AK-02Z-00-DX7.png")
True
>>> group_of("slides/S12_x0_y512.png", group_regex=r"(S\\d+)_")
'S12'
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath

TCGA_PATIENT = re.compile(r"TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}", re.IGNORECASE)


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


def assign_split(
    key: str,
    *,
    group_regex: str | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> str:
    """'train', 'val' or 'test' for an item, decided by the hash of its group."""
    return split_of_group(
        group_of(key, group_regex), val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )


def split_of_group(
    group: str, *, val_fraction: float = 0.2, test_fraction: float = 0.0, seed: int = 0
) -> str:
    """The split of a group (see :func:`assign_split`)."""
    if not (0 <= val_fraction <= 1 and 0 <= test_fraction <= 1 and val_fraction + test_fraction <= 1):
        raise ValueError(f"bad fractions: val {val_fraction}, test {test_fraction}")
    u = split_fraction(group, seed)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def ensure_both(splits: dict[str, str], groups: dict[str, str]) -> dict[str, str]:
    """Make sure train and val are both non-empty when there are at least two groups.

    When hashing leaves val (or train) empty, the group whose hash is closest to the boundary is moved:
    deterministic, and a no-op once the dataset is large enough for the hash alone to fill both sides.
    ``splits`` maps item -> split, ``groups`` maps item -> group; returns a new mapping.
    """
    out = dict(splits)
    distinct = sorted(set(groups.values()))
    if len(distinct) < 2:
        return out
    for missing, donor in (("val", "train"), ("train", "val")):
        if missing in out.values() or donor not in out.values():
            continue
        candidates = sorted(
            {g for i, g in groups.items() if out[i] == donor}, key=lambda g: split_fraction(g)
        )
        pick = candidates[0] if missing == "val" else candidates[-1]
        for item, g in groups.items():
            if g == pick:
                out[item] = missing
    return out
