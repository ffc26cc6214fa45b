"""training.specialist: Label Studio results of each kind read as a person sees them, and counted."""

from __future__ import annotations

import numpy as np
import pytest

from converters.predictions import boxes_to_results, choices_result, mask_to_brush_result
from training.corrections import Corrections
from training.specialist import from_scratch, regions_of, result_corrections


def _disc(shape, cy, cx, r) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.mark.parametrize("kind", ["detect", "segment", "classify"])
def test_label_studio_results_are_read_as_a_person_sees_them(kind: str) -> None:
    w, h = 64, 48
    if kind == "detect":
        truth = boxes_to_results(
            [[8, 8, 24, 24], [40, 10, 60, 30]], [1, 1], ["Tumor"] * 2, w, h, "b", "image"
        )
        pred = boxes_to_results(
            [[8, 8, 24, 24], [0, 30, 10, 40]], [0.9, 0.3], ["Tumor"] * 2, w, h, "b", "image"
        )
        want = Corrections(added=1, deleted=1, objects=2)
    elif kind == "segment":
        a, b = _disc((h, w), 12, 12, 6), _disc((h, w), 30, 40, 6)
        truth = [
            mask_to_brush_result(a, "Nucleus", 1, "m", "image"),
            mask_to_brush_result(b, "Nucleus", 1, "m", "image"),
        ]
        pred = [mask_to_brush_result(a, "Nucleus", 0.8, "m", "image")]
        want = Corrections(added=1, pixels=int(b.sum()), objects=2)
    else:
        truth, pred = (
            [choices_result("Malignant", 1, "c", "image")],
            [choices_result("Benign", 0.6, "c", "image")],
        )
        want = Corrections(relabelled=1, objects=1)
    assert result_corrections(kind, pred, truth, w, h) == want
    assert result_corrections(kind, truth, truth, w, h).total == 0
    assert result_corrections(kind, [], truth, w, h).total == want.objects
    assert from_scratch(kind, regions_of(kind, truth, w, h)).total == want.objects


def test_estimated_time_weighs_each_action() -> None:
    from training.corrections import BOX_SECONDS, OUTLINE_SECONDS, VERIFY_SECONDS
    from training.specialist import seconds

    # 10 true boxes: 2 drawn, 1 adjusted, 3 false positives deleted, the other 7 accepted with one look
    c = Corrections(added=2, adjusted=1, deleted=3, objects=10)
    assert seconds("detect", c) == pytest.approx(3 * BOX_SECONDS + 3 * VERIFY_SECONDS + 7 * VERIFY_SECONDS)
    assert seconds("detect", Corrections(added=10, objects=10)) == pytest.approx(10 * BOX_SECONDS)
    # an outline costs far more than a box: the same actions on masks weigh differently
    assert seconds("segment", c) == pytest.approx(3 * OUTLINE_SECONDS + 10 * VERIFY_SECONDS)
    assert seconds("classify", Corrections(relabelled=1, objects=1)) == VERIFY_SECONDS
    assert seconds("classify", Corrections(objects=1)) == VERIFY_SECONDS  # a right label: still one look
