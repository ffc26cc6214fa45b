"""``RectangleLabels`` <- the detector's boxes.

Boxes below the project's ``min_score`` and boxes whose class maps to no label of the control are
dropped; the rest become ``rectanglelabels`` results in percent of the image, each with its score.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from converters.predictions import boxes_to_results
from ml_backend.predictors.base import ControlPredictor
from training.inference import Detections


class RectangleLabelsPredictor(ControlPredictor):
    tag = "RectangleLabels"

    def results(self, output: Detections, width: int, height: int) -> list[dict[str, Any]]:
        if len(output) == 0:
            return []
        table = self.mapper.labels_for(output.classes)
        labels = np.asarray(output.labels, dtype=np.int64)
        scores = np.asarray(output.scores, dtype=np.float32)
        mapped = np.array([table[i] is not None for i in range(len(table))], dtype=bool)
        keep = (scores >= self.min_score) & mapped[labels]
        if not keep.any():
            return []
        names = [table[i] for i in labels[keep]]
        return boxes_to_results(
            np.asarray(output.boxes)[keep],
            scores[keep],
            names,
            width,
            height,
            self.control.from_name,
            self.control.to_name,
        )
