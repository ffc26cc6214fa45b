"""One predictor per Label Studio control tag; adding a tag is a new module and one line here.

=================== ============ ==============================================
control tag         model kind   results
=================== ============ ==============================================
``RectangleLabels`` detect       boxes (percent of the image), a score per box
``BrushLabels``     segment      one RLE brush mask per class
``PolygonLabels``   segment      the mask's outer contours as polygons
``Choices``         classify     the top class as a choice
=================== ============ ==============================================
"""

from __future__ import annotations

from ml_backend.predictors.base import ControlPredictor
from ml_backend.predictors.brushlabels import BrushLabelsPredictor
from ml_backend.predictors.choices import ChoicesPredictor
from ml_backend.predictors.polygonlabels import PolygonLabelsPredictor
from ml_backend.predictors.rectanglelabels import RectangleLabelsPredictor

PREDICTORS: dict[str, type[ControlPredictor]] = {
    p.tag: p
    for p in (RectangleLabelsPredictor, BrushLabelsPredictor, PolygonLabelsPredictor, ChoicesPredictor)
}

__all__ = ["PREDICTORS", "ControlPredictor"]
