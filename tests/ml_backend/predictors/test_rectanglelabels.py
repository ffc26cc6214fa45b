"""RectangleLabels from detector output: percent boxes, scores, min_score and label mapping."""

from __future__ import annotations

import numpy as np

from ml_backend.labelconfig import ControlSpec
from ml_backend.labels import LabelMapper
from ml_backend.predictors.rectanglelabels import RectangleLabelsPredictor
from training.inference import Detections

CONTROL = ControlSpec("RectangleLabels", "detect", "label", "image", "image", ("Tumor", "Stroma"))


def _detections() -> Detections:
    return Detections(
        boxes=np.array([[0, 0, 100, 50], [50, 25, 200, 100], [10, 10, 20, 20], [0, 0, 1, 1]], np.float32),
        scores=np.array([0.9, 0.6, 0.1, 0.8], np.float32),
        labels=np.array([0, 1, 0, 2], np.int64),
        classes=["tumor", "stroma", "necrosis"],
    )


def test_boxes_in_percent_with_scores() -> None:
    results = RectangleLabelsPredictor(CONTROL, LabelMapper(CONTROL.labels), 0.25).results(
        _detections(), 200, 100
    )
    assert len(results) == 2  # 0.1 is below min_score; necrosis maps to no label
    first, second = results
    assert (
        first["type"] == "rectanglelabels" and first["from_name"] == "label" and first["to_name"] == "image"
    )
    assert first["value"]["rectanglelabels"] == ["Tumor"] and second["value"]["rectanglelabels"] == ["Stroma"]
    assert np.allclose([first["value"][k] for k in ("x", "y", "width", "height")], [0, 0, 50, 50])
    assert np.allclose([second["value"][k] for k in ("x", "y", "width", "height")], [25, 25, 75, 75])
    assert np.isclose(first["score"], 0.9) and (first["original_width"], first["original_height"]) == (
        200,
        100,
    )


def test_nothing_found_or_all_filtered() -> None:
    empty = Detections(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), ["tumor"]
    )
    predictor = RectangleLabelsPredictor(CONTROL, LabelMapper(CONTROL.labels), 0.95)
    assert predictor.results(empty, 10, 10) == []
    assert predictor.results(_detections(), 200, 100) == []
