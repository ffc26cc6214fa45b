"""The interface every control-tag predictor implements.

A predictor turns one model output (for one task image) into the Label Studio results of one control
of the label config. It never loads images or models: the engine (:mod:`ml_backend.engine`) does that
once per task and hands the same output to every control that needs it (a ``BrushLabels`` and a
``PolygonLabels`` on one image share one segmentation). A predictor names its tag; the model kind it
reads is the tag's in the kernel's table (:data:`kernel.tags.CONTROL_KIND`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from kernel.kinds import Kind
from kernel.tags import CONTROL_KIND
from ml_backend.labelconfig import ControlSpec
from ml_backend.labels import LabelMapper


class ControlPredictor(ABC):
    """Results of one control tag from one model output."""

    tag: ClassVar[str]
    """The Label Studio control tag handled, e.g. ``RectangleLabels``."""
    kind: ClassVar[Kind]
    """The model kind whose output it reads: the tag's in :data:`kernel.tags.CONTROL_KIND`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "tag" in cls.__dict__:
            if cls.tag not in CONTROL_KIND:
                raise TypeError(f"{cls.__name__}: no model kind feeds <{cls.tag}> (kernel.tags.TAGS)")
            cls.kind = CONTROL_KIND[cls.tag]

    def __init__(self, control: ControlSpec, mapper: LabelMapper, min_score: float = 0.0) -> None:
        self.control = control
        self.mapper = mapper
        self.min_score = float(min_score)

    @abstractmethod
    def results(self, output: Any, width: int, height: int) -> list[dict[str, Any]]:
        """Label Studio results (each with a per-region ``score``) for an image of width x height."""
