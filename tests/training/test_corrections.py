"""The correction counter on hand-made cases whose answers are known."""

from __future__ import annotations

import numpy as np

from training.corrections import (
    Boxes,
    Corrections,
    Objects,
    box_corrections,
    boxes_from_scratch,
    label_corrections,
    label_from_scratch,
    object_corrections,
    objects_from_scratch,
)

TRUE = Boxes.of([[10, 10, 30, 30], [50, 50, 80, 70]], ["tumor", "tumor"])


def test_a_perfect_suggestion_needs_nothing() -> None:
    assert box_corrections(TRUE, TRUE).total == 0


def test_a_missed_box_is_one_box_added() -> None:
    got = box_corrections(Boxes.of([[10, 10, 30, 30]], ["tumor"]), TRUE)
    assert got == Corrections(added=1, objects=2)


def test_a_false_positive_is_one_box_deleted() -> None:
    pred = Boxes.of([[10, 10, 30, 30], [50, 50, 80, 70], [90, 0, 99, 9]], ["tumor"] * 3)
    assert box_corrections(pred, TRUE) == Corrections(deleted=1, objects=2)


def test_a_shifted_box_is_adjusted_and_a_far_one_is_deleted_and_added() -> None:
    # IoU of [14,10,34,30] with [10,10,30,30] = 16*20 / (2*400 - 320) = 0.667: matched, below 0.75
    pred = Boxes.of([[14, 10, 34, 30], [50, 50, 80, 70]], ["tumor"] * 2)
    assert box_corrections(pred, TRUE) == Corrections(adjusted=1, objects=2)
    # IoU 1/3 (shifted by half): not the same box
    pred = Boxes.of([[20, 10, 40, 30], [50, 50, 80, 70]], ["tumor"] * 2)
    assert box_corrections(pred, TRUE) == Corrections(added=1, deleted=1, objects=2)


def test_a_box_with_the_wrong_label_is_relabelled() -> None:
    got = box_corrections(Boxes.of(TRUE.xyxy, ["tumor", "stroma"]), TRUE)
    assert got == Corrections(relabelled=1, objects=2)


def test_pairing_is_one_to_one() -> None:
    # two suggestions on one true box: one pairs, the other is deleted
    pred = Boxes.of([[10, 10, 30, 30], [11, 10, 31, 30]], ["tumor"] * 2)
    got = box_corrections(pred, Boxes.of([[10, 10, 30, 30]], ["tumor"]))
    assert got == Corrections(deleted=1, objects=1)


def test_from_scratch_draws_every_box() -> None:
    assert boxes_from_scratch(TRUE) == Corrections(added=2, objects=2)
    assert box_corrections(Boxes.of([]), TRUE).total == boxes_from_scratch(TRUE).total


def _disc(shape, cy, cx, r) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


SHAPE = (64, 64)


def test_a_shifted_mask_is_redrawn_and_its_pixels_counted() -> None:
    true = Objects.from_masks([(_disc(SHAPE, 20, 20, 8), "nucleus")], SHAPE)
    pred = Objects.from_masks([(_disc(SHAPE, 20, 23, 8), "nucleus")], SHAPE)  # 3 px right: IoU about 0.6
    got = object_corrections(pred, true)
    assert (got.added, got.deleted, got.adjusted, got.relabelled) == (0, 0, 1, 0)
    expected_pixels = int((_disc(SHAPE, 20, 20, 8) ^ _disc(SHAPE, 20, 23, 8)).sum())
    assert got.pixels == expected_pixels > 0
    # one pixel off is no redraw, but its pixels still count
    nudged = Objects.from_masks([(np.roll(_disc(SHAPE, 20, 20, 8), 1, axis=1), "nucleus")], SHAPE)
    got = object_corrections(nudged, true)
    assert got.total == 0 and got.pixels > 0


def test_touching_objects_suggested_as_one_blob_cost_a_delete_and_an_add_each() -> None:
    a, b, c = _disc(SHAPE, 30, 14, 6), _disc(SHAPE, 30, 26, 6), _disc(SHAPE, 30, 38, 6)  # touching discs
    true = Objects.from_masks([(a, "nucleus"), (b, "nucleus"), (c, "nucleus")], SHAPE)
    assert len(true) == 3  # one region each keeps them apart
    blob = Objects.from_masks([(a | b | c, "nucleus")], SHAPE)  # one brush region: one connected component
    assert len(blob) == 1
    assert object_corrections(blob, true) == Corrections(added=3, deleted=1, pixels=0, objects=3)
    # two touching: the blob pairs with one of them at IoU 0.5 and is redrawn, the other is added
    pair = Objects.from_masks([(a | b, "nucleus")], SHAPE)
    got = object_corrections(pair, Objects.from_masks([(a, "nucleus"), (b, "nucleus")], SHAPE))
    assert (got.added, got.deleted, got.adjusted, got.total) == (1, 0, 1, 2)


def test_a_missed_and_a_false_object() -> None:
    a, b, fp = _disc(SHAPE, 15, 15, 5), _disc(SHAPE, 45, 45, 5), _disc(SHAPE, 15, 50, 4)
    true = Objects.from_masks([(a, "nucleus"), (b, "nucleus")], SHAPE)
    pred = Objects.from_masks([(a | fp, "nucleus")], SHAPE)  # finds a, misses b, invents fp
    got = object_corrections(pred, true)
    assert (got.added, got.deleted, got.adjusted) == (1, 1, 0)
    assert got.pixels == int(b.sum() + fp.sum())
    scratch = objects_from_scratch(true)
    assert (scratch.added, scratch.pixels) == (2, int(a.sum() + b.sum()))


def test_a_flipped_label_is_one_correction() -> None:
    assert label_corrections("Benign", "Malignant") == Corrections(relabelled=1, objects=1)
    assert label_corrections("Benign", "Benign").total == 0
    assert label_corrections(None, "Benign").total == label_from_scratch("Benign").total == 1
