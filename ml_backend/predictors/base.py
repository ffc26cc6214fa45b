"""The interface every control-tag predictor implements.

A predictor turns one model output (for one task image) into the Label Studio results of one control
of the label config. It never loads images or models: the engine (:mod:`ml_backend.engine`) does that
once per task and hands the same output to every control that needs it (a ``BrushLabels`` and a
``PolygonLabels`` on one image share one segmentation).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from ml_backend.labels import LabelMapper

if TYPE_CHECKING:
    from ml_backend.labelconfig import ControlSpec


class ControlPredictor(ABC):
    """Results of one control tag from one model output."""

    tag: ClassVar[str]
    """The Label Studio control tag handled, e.g. ``RectangleLabels``."""
    kind: ClassVar[str]
    """The model kind whose output it reads: detect, segment or classify."""

    def __init__(self, control: ControlSpec, mapper: LabelMapper, min_score: float = 0.0) -> None:
        self.control = control
        self.mapper = mapper
        self.min_score = float(min_score)

    @abstractmethod
    def results(self, output: Any, width: int, height: int) -> list[dict[str, Any]]:
        """Label Studio results (each with a per-region ``score``) for an image of width x height."""
