"""BrushLabels from segmenter output: one RLE mask per class, decoding to the image size."""

from __future__ import annotations

import numpy as np

from converters.rle import rle_to_mask
from ml_backend.labelconfig import ControlSpec
from ml_backend.labels import LabelMapper
from ml_backend.predictors.brushlabels import BrushLabelsPredictor
from training.inference import SegmentationMap

CONTROL = ControlSpec("BrushLabels", "segment", "brush", "image", "image", ("Tumor", "Stroma"))


def _map(h: int = 30, w: int = 40) -> SegmentationMap:
    probs = np.zeros((3, h, w), np.float32)
    probs[0, 5:15, 5:25] = 0.9  # tumor
    probs[1, 20:25, 30:38] = 0.6  # stroma
    probs[2, 0:3, 0:3] = 0.99  # necrosis: no such label
    return SegmentationMap(probs, ["tumor", "stroma", "necrosis"])


def test_one_rle_per_class_that_decodes_to_the_mask() -> None:
    seg = _map()
    results = BrushLabelsPredictor(CONTROL, LabelMapper(CONTROL.labels), 0.25).results(seg, 40, 30)
    assert [r["value"]["brushlabels"] for r in results] == [["Tumor"], ["Stroma"]]
    for r, c in zip(results, (0, 1), strict=True):
        assert r["type"] == "brushlabels" and r["value"]["format"] == "rle"
        mask = rle_to_mask(r["value"]["rle"], 30, 40)
        assert np.array_equal(mask > 0, seg.masks(0.5)[c])
    assert np.isclose(results[0]["score"], 0.9, atol=1e-3) and np.isclose(results[1]["score"], 0.6, atol=1e-3)


def test_min_score_and_empty_masks() -> None:
    predictor = BrushLabelsPredictor(CONTROL, LabelMapper(CONTROL.labels), 0.7)
    assert [r["value"]["brushlabels"] for r in predictor.results(_map(), 40, 30)] == [["Tumor"]]
    nothing = SegmentationMap(np.full((1, 8, 8), 0.2, np.float32), ["tumor"])
    assert predictor.results(nothing, 8, 8) == []
