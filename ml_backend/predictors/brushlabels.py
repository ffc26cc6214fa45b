"""``BrushLabels`` <- the segmenter's masks, one RLE brush result per class present.

A class's mask is its pixels at probability >= 0.5 (:meth:`SegmentationMap.masks`); its score is the
mean probability inside the mask, and masks scoring below the project's ``min_score`` are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from converters.predictions import mask_to_brush_result
from ml_backend.predictors.base import ControlPredictor
from training.inference import SegmentationMap

MASK_THRESHOLD = 0.5


def scored_masks(
    predictor: ControlPredictor, output: SegmentationMap
) -> Iterator[tuple[str, np.ndarray, float]]:
    """(label, mask, score) for each class with a mapped label, a non-empty mask and score >= min."""
    masks = output.masks(MASK_THRESHOLD)
    for c, name in enumerate(output.classes):
        label = predictor.mapper.label(name)
        if label is None:
            continue
        mask = masks[c]
        if not mask.any():
            continue
        score = float(output.probs[c][mask].mean())
        if score >= predictor.min_score:
            yield label, mask, score


class BrushLabelsPredictor(ControlPredictor):
    tag = "BrushLabels"
    kind = "segment"

    def results(self, output: SegmentationMap, width: int, height: int) -> list[dict[str, Any]]:
        return [
            mask_to_brush_result(mask, label, score, self.control.from_name, self.control.to_name)
            for label, mask, score in scored_masks(self, output)
        ]
