"""PolygonLabels from segmenter output: the contours of each class's mask, in percent."""

from __future__ import annotations

import numpy as np

from ml_backend.labelconfig import ControlSpec
from ml_backend.labels import LabelMapper
from ml_backend.predictors.polygonlabels import PolygonLabelsPredictor
from training.inference import SegmentationMap

CONTROL = ControlSpec("PolygonLabels", "segment", "poly", "image", "image", ("Tumor",))


def test_two_blobs_two_polygons_inside_their_boxes() -> None:
    probs = np.zeros((1, 50, 100), np.float32)
    probs[0, 10:20, 10:30] = 0.8
    probs[0, 30:45, 60:90] = 0.9
    results = PolygonLabelsPredictor(CONTROL, LabelMapper(CONTROL.labels), 0.25).results(
        SegmentationMap(probs, ["tumor"]), 100, 50
    )
    assert len(results) == 2
    boxes = []
    for r in results:
        assert r["type"] == "polygonlabels" and r["value"]["polygonlabels"] == ["Tumor"]
        pts = np.array(r["value"]["points"], dtype=float)
        assert len(pts) >= 3 and ((pts >= 0) & (pts <= 100)).all()
        boxes.append((pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()))
    boxes.sort()
    # blob 1: x 10..30 px of 100, y 10..20 px of 50 -> 10..30 %, 20..40 %
    assert np.allclose(boxes[0], (10, 20, 30, 40), atol=3)
    assert np.allclose(boxes[1], (60, 60, 90, 90), atol=3)


def test_no_mask_no_polygon() -> None:
    seg = SegmentationMap(np.zeros((1, 10, 10), np.float32), ["tumor"])
    assert PolygonLabelsPredictor(CONTROL, LabelMapper(CONTROL.labels)).results(seg, 10, 10) == []
