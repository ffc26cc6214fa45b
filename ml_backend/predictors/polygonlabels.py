"""``PolygonLabels`` <- the segmenter's objects, traced into polygons (one per object).

Objects and scores as for brushes (:func:`ml_backend.predictors.brushlabels.scored_masks`).
"""

from __future__ import annotations

from typing import Any

from converters.predictions import mask_to_polygon_results
from ml_backend.predictors.base import ControlPredictor
from ml_backend.predictors.brushlabels import scored_masks
from training.inference import SegmentationMap


class PolygonLabelsPredictor(ControlPredictor):
    tag = "PolygonLabels"

    def results(self, output: SegmentationMap, width: int, height: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for label, mask, score in scored_masks(self, output):
            out.extend(
                mask_to_polygon_results(mask, label, score, self.control.from_name, self.control.to_name)
            )
        return out
