"""Model outputs → Label Studio results, and the exact round trips."""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter import brush
from label_studio_sdk.converter.utils import convert_annotation_to_yolo

from converters.predictions import (
    boxes_to_results,
    choices_result,
    mask_to_brush_result,
    mask_to_polygon_results,
    task_score,
)
from converters.regions import polygon_points, rasterize
from converters.rle import rle_to_mask


def test_box_to_result_to_yolo_line_is_exact():
    rng = np.random.default_rng(0)
    w, h = 1360, 1024
    x0, y0 = rng.uniform(0, 600, (2, 200))
    bw, bh = rng.uniform(1, 400, (2, 200))  # inside the image (clipping is tested below)
    boxes = np.stack([x0, y0, x0 + bw, y0 + bh], 1)
    results = boxes_to_results(boxes, rng.random(200), ["tumor"] * 200, w, h, "box", "image")
    assert len(results) == 200
    for box, r in zip(boxes, results, strict=True):
        assert r["type"] == "rectanglelabels" and r["original_width"] == w and r["original_height"] == h
        direct = (
            (box[0] + box[2]) / 2 / w,
            (box[1] + box[3]) / 2 / h,
            (box[2] - box[0]) / w,
            (box[3] - box[1]) / h,
        )
        via_ls = convert_annotation_to_yolo(r["value"])  # the sdk's own result -> YOLO conversion
        assert np.allclose(direct, via_ls, atol=1e-12, rtol=0)


def test_boxes_are_clipped_and_empty_ones_dropped():
    res = boxes_to_results(
        [[-10, -5, 50, 40], [10, 10, 10, 30], [90, 90, 150, 150]],
        [0.5, 0.6, 0.7],
        ["a", "b", "c"],
        100,
        100,
        "box",
        "image",
    )
    assert [r["value"]["rectanglelabels"][0] for r in res] == ["a", "c"]
    assert res[0]["value"]["x"] == 0 and res[1]["value"]["width"] == pytest.approx(10)
    with pytest.raises(ValueError, match="2 boxes, 1 scores"):
        boxes_to_results([[0, 0, 1, 1]] * 2, [1.0], ["a", "b"], 10, 10, "box", "image")


def test_mask_to_brush_to_mask_is_exact():
    rng = np.random.default_rng(3)
    for _ in range(20):
        mask = rng.random((37, 53)) < 0.3
        r = mask_to_brush_result(mask, "tumor", 0.8, "brush", "image")
        assert r["value"]["rle"] == brush.mask2rle(mask.astype(np.uint8) * 255)
        assert (r["original_width"], r["original_height"]) == (53, 37)
        assert np.array_equal(rle_to_mask(r["value"]["rle"], 37, 53) > 0, mask)
        sdk = np.reshape(brush.decode_rle(r["value"]["rle"]), (37, 53, 4))[:, :, 3] > 0
        assert np.array_equal(sdk, mask)


def test_mask_to_polygons_covers_the_mask():
    mask = np.zeros((100, 120), bool)
    mask[10:40, 20:70] = True
    yy, xx = np.ogrid[:100, :120]
    mask |= (yy - 70) ** 2 + (xx - 90) ** 2 <= 15**2
    results = mask_to_polygon_results(mask, "tumor", 0.9, "polygon", "image")
    assert len(results) == 2 and all(r["score"] == 0.9 for r in results)
    back = rasterize([(polygon_points(r["value"], 120, 100), 1) for r in results], 100, 120) > 0
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > 0.95


def test_choices_and_task_score():
    r = choices_result("malignant", 0.73, "diagnosis", "image")
    assert r["value"] == {"choices": ["malignant"]} and r["score"] == 0.73 and r["type"] == "choices"
    assert task_score([0.2, 0.4]) == pytest.approx(0.3) and task_score([]) == 0.0


def test_drop_padding_cuts_or_drops_each_geometry_and_keeps_choices() -> None:
    """The part of a 100 × 100 image right of x = 50 is padding: a polygon across it is cut, one inside it
    dropped; a brush loses its padding pixels, one only there goes; a rotated box goes by its centre."""
    from converters.predictions import choices_result, drop_padding, mask_to_brush_result
    from converters.rle import rle_to_mask

    def polygon(points: list[list[float]]) -> dict:
        return {"type": "polygonlabels", "value": {"points": points, "polygonlabels": ["t"]}}

    across = polygon([[10, 10], [90, 10], [90, 30], [10, 30]])
    inside_padding = polygon([[60, 60], [90, 60], [90, 90]])
    m = np.zeros((100, 100), bool)
    m[10:20, 40:70] = True
    brush = mask_to_brush_result(m, "t", 0.9, "mask", "image")
    only_padding = mask_to_brush_result(
        np.pad(np.ones((5, 5), bool), ((0, 95), (80, 15))), "t", 0.9, "mask", "image"
    )
    rotated = {
        "type": "rectanglelabels",
        "value": {"x": 60, "y": 10, "width": 10, "height": 10, "rotation": 90},
    }
    choice = choices_result("malignant", 0.8, "cls", "image")
    out = drop_padding([across, inside_padding, brush, only_padding, rotated, choice], 50, 100, 100, 100)
    assert [r["type"] for r in out] == ["polygonlabels", "brushlabels", "choices"]
    assert max(x for x, _ in out[0]["value"]["points"]) == pytest.approx(50)
    kept = rle_to_mask(out[1]["value"]["rle"], 100, 100) > 0
    assert kept.sum() == 10 * 10 and not kept[:, 50:].any()
    assert drop_padding([across], 100, 100, 100, 100) == [across]  # nothing padded: as it is
