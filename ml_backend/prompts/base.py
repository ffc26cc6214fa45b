"""What an annotator did with a smart tool, in image pixels: the input of interactive pre-annotation.

Label Studio sends the region the annotator just drew in ``/predict``'s ``params.context.result`` when the
project's ML backend is connected with "Use for interactive preannotations". Each smart tool (a control
tag with ``smart="true"``) is read by one small :class:`PromptReader` (:mod:`ml_backend.prompts`); they
all produce the same :class:`Prompt`: positive and negative clicks, boxes and brush strokes in pixels of
the original image, with the label the annotator had selected.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np


class PromptError(ValueError):
    """A context region that cannot be read (named, with the reason)."""


@dataclass(frozen=True)
class Click:
    x: float
    y: float
    positive: bool = True


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def contains(self, x: float, y: float) -> bool:
        return self.x0 <= x <= self.x1 and self.y0 <= y <= self.y1


@dataclass
class Prompt:
    """Everything the context asks, in pixels of a ``width`` x ``height`` image."""

    width: int
    height: int
    to_name: str
    clicks: list[Click] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    strokes: list[np.ndarray] = field(default_factory=list)
    """(H, W) bool masks of brush strokes (positive)."""
    labels: list[str] = field(default_factory=list)
    """The labels the annotator had selected on the smart tool, in order, once each."""
    tools: list[str] = field(default_factory=list)
    """The result types read (``keypointlabels``, ``rectanglelabels``, ``brushlabels``)."""

    @property
    def positives(self) -> list[Click]:
        return [c for c in self.clicks if c.positive]

    @property
    def negatives(self) -> list[Click]:
        return [c for c in self.clicks if not c.positive]

    def bounds(self) -> tuple[float, float, float, float]:
        """x0, y0, x1, y1 around every positive click, box and stroke."""
        xs: list[float] = []
        ys: list[float] = []
        for c in self.positives:
            xs.append(c.x)
            ys.append(c.y)
        for b in self.boxes:
            xs += [b.x0, b.x1]
            ys += [b.y0, b.y1]
        for s in self.strokes:
            rows, cols = np.nonzero(s.any(axis=1))[0], np.nonzero(s.any(axis=0))[0]
            if len(rows):
                xs += [float(cols[0]), float(cols[-1] + 1)]
                ys += [float(rows[0]), float(rows[-1] + 1)]
        if not xs:
            raise PromptError("the context has no positive click, box or stroke")
        return min(xs), min(ys), max(xs), max(ys)


class PromptReader(ABC):
    """Reads one smart tool's context region into a :class:`Prompt`."""

    result_type: ClassVar[str]
    """The ``type`` of the context region it reads, e.g. ``keypointlabels``."""

    @abstractmethod
    def read(self, region: Mapping[str, Any], prompt: Prompt) -> None:
        """Add what ``region`` asks to ``prompt``; :class:`PromptError` when it is malformed."""


def percent(value: Mapping[str, Any], key: str, where: str) -> float:
    """``value[key]`` as a float in [0, 100] (Label Studio's percent coordinates)."""
    raw = value.get(key)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not np.isfinite(raw):
        raise PromptError(f"{where}: value.{key} must be a number (percent of the image), got {raw!r}")
    return float(min(max(raw, 0.0), 100.0))


def region_labels(region: Mapping[str, Any]) -> list[str]:
    value = region.get("value") or {}
    labels = value.get(str(region.get("type", ""))) if isinstance(value, Mapping) else None
    return [str(v) for v in labels] if isinstance(labels, list) else []
