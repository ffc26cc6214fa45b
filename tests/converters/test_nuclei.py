"""converters.nuclei: the nucleus at a click, split from the one it touches; nothing where nothing is stained."""

from __future__ import annotations

import numpy as np

from converters.nuclei import nucleus_at

STROMA, NUCLEUS = (235, 200, 225), (90, 50, 140)


def _image(*discs: tuple[int, int, int]) -> np.ndarray:
    img = np.full((160, 160, 3), STROMA, np.uint8)
    yy, xx = np.mgrid[:160, :160]
    for cx, cy, r in discs:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = NUCLEUS
    return img


def test_a_click_splits_the_nucleus_from_the_one_it_touches() -> None:
    img = _image((60, 80, 12), (82, 80, 12))  # two discs overlapping by 2 px: one stained blob
    left = nucleus_at(img, 58, 80)
    assert left is not None
    mask = left.full(160, 160)
    assert mask[80, 55] and not mask[80, 88]  # the other disc's centre is not in it
    assert 0.6 < mask.sum() / (np.pi * 12 * 12) < 1.2


def test_a_click_beside_a_nucleus_picks_it_and_on_bare_stroma_nothing() -> None:
    img = _image((80, 80, 10))
    near = nucleus_at(img, 80, 94)  # 4 px outside its edge
    assert near is not None and near.full(160, 160)[80, 80]
    assert nucleus_at(np.full((160, 160, 3), STROMA, np.uint8), 80, 80) is None


def test_a_box_gives_the_object_inside_clipped_to_it() -> None:
    img = _image((80, 80, 10))
    found = nucleus_at(img, 80, 80, box=(72.0, 70.0, 100.0, 100.0))
    assert found is not None
    _ys, xs = np.nonzero(found.full(160, 160))
    assert xs.min() >= 72 and 75 < len(xs) < 330
