"""Label Studio's control tags, one row each: the one table every tag, result type and kind view reads.

A row (:class:`TagSpec`, found by :func:`tag_spec` or, from a result's ``type``, :func:`type_spec`) says
what a control tag is to histoloop:

- ``result_type``: the ``type`` of the results it writes, which is also the key of their labels in the
  result's ``value`` (``{"type": "rectanglelabels", "value": {..., "rectanglelabels": ["Tumor"]}}``);
- ``plain_type``: the type of the same geometry drawn with Label Studio's plain tool (``<Rectangle>``,
  ``<Polygon>``, ``<Brush>``): its value holds no label, so it shows a region (a specialist's correction
  counts it) but no dataset can learn a class from it;
- ``kind``: the model kind that feeds it, that is whose predictions it shows (None: no model predicts it,
  e.g. the smart-tool ``KeyPointLabels``, read only as a prompt);
- ``trains``: the dataset kinds (:data:`DATASET_KINDS`) whose converters turn its results into labels.

**Which retraining a region feeds.** A retraining of model kind ``K`` converts the approved annotations
into the dataset kind of the same name (``training.lifecycle``), so a region feeds the retraining of ``K``
exactly when its row's ``trains`` holds ``K`` (:func:`learned_by`): a polygon is drawn for a segmenter
but also trains the detector (its bounding box), so a project with both counts it for both, and what
triggers a retraining is what the retraining trains on.

Every other view derives from :data:`TAGS`: the model kind of a control (:data:`CONTROL_KIND`), of a
predicted result (:func:`predicted_by`), the tags a model kind feeds (:func:`fed_tags`), the tags and
result types each dataset kind reads (:func:`dataset_tags`, :func:`dataset_types`), the label keys
(:data:`LABEL_KEYS`).

>>> tag_spec("PolygonLabels").kind, tag_spec("PolygonLabels").trains
('segment', ('detect', 'obb', 'yolo-segment', 'segment'))
>>> predicted_by("polygonlabels"), learned_by("polygonlabels"), learned_by("polygon")
('segment', ('detect', 'segment'), ())
>>> dataset_tags("detect"), dataset_types("classify")
(('RectangleLabels', 'PolygonLabels'), ('choices',))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, TypeGuard

from kernel.kinds import KINDS, Kind

DatasetKind = Literal["detect", "obb", "yolo-segment", "segment", "classify"]
DATASET_KINDS: Final[tuple[DatasetKind, ...]] = ("detect", "obb", "yolo-segment", "segment", "classify")
"""The dataset kinds the converters write (``converters.kinds``: one row each), in a fixed order. The
three model kinds are dataset kinds too (what their retraining converts); ``obb`` (oriented boxes) and
``yolo-segment`` (YOLO polygons) are datasets for other YOLO tasks."""


@dataclass(frozen=True)
class TagSpec:
    """One Label Studio control tag (see the module docstring)."""

    tag: str
    """The control tag, e.g. ``RectangleLabels``."""
    result_type: str
    """The ``type`` of its results: also the key of their labels in the result's ``value``."""
    plain_type: str | None
    """The type of the same geometry drawn with the plain tool (no label in it); None when there is none."""
    kind: Kind | None
    """The model kind whose predictions it shows; None when no model predicts it."""
    trains: tuple[DatasetKind, ...]
    """The dataset kinds whose converters read its results."""
    label_element: str
    """The element of one of its labels in a label config (``<Label value=...>``, ``<Choice value=...>``)."""

    @property
    def label_key(self) -> str:
        """The key of a result's labels in its ``value``: the result type, as Label Studio writes it."""
        return self.result_type

    @property
    def result_types(self) -> tuple[str, ...]:
        """Every result type of its geometry: the labelled one first, then the plain tool's."""
        return (self.result_type,) if self.plain_type is None else (self.result_type, self.plain_type)


TAGS: Final[Mapping[str, TagSpec]] = MappingProxyType(
    {
        row.tag: row
        for row in (
            TagSpec("RectangleLabels", "rectanglelabels", "rectangle", "detect", ("detect", "obb"), "Label"),
            TagSpec("BrushLabels", "brushlabels", "brush", "segment", ("yolo-segment", "segment"), "Label"),
            TagSpec(
                "PolygonLabels",
                "polygonlabels",
                "polygon",
                "segment",
                ("detect", "obb", "yolo-segment", "segment"),
                "Label",
            ),
            TagSpec("Choices", "choices", None, "classify", ("classify",), "Choice"),
            TagSpec("KeyPointLabels", "keypointlabels", None, None, (), "Label"),
            TagSpec("Labels", "labels", None, None, (), "Label"),
        )
    }
)
"""Every control tag histoloop reads, by tag, in the order views list them."""

_BY_TYPE: Final[Mapping[str, TagSpec]] = MappingProxyType(
    {rt: row for row in TAGS.values() for rt in row.result_types}
)

CONTROL_KIND: Final[Mapping[str, Kind]] = MappingProxyType({t.tag: t.kind for t in TAGS.values() if t.kind})
"""The model kind that feeds (predicts into) each control tag on an image."""

LABEL_KEYS: Final[tuple[str, ...]] = tuple(t.label_key for t in TAGS.values())
"""Every key a result's labels may be under, in table order."""


def tag_spec(tag: str) -> TagSpec | None:
    """The row of a control tag; None for a tag histoloop does not read (``TextArea``...)."""
    return TAGS.get(tag)


def type_spec(result_type: str) -> TagSpec | None:
    """The row whose results have this ``type`` (labelled or plain); None for any other type."""
    return _BY_TYPE.get(result_type)


def predicted_by(result_type: str) -> Kind | None:
    """The model kind whose predictions are results of this type (None: no model writes them)."""
    row = _BY_TYPE.get(result_type)
    return row.kind if row is not None else None


def learned_by(result_type: str) -> tuple[Kind, ...]:
    """The model kinds whose retraining learns from a region of this type, in kind order: those whose
    dataset kind (of the same name) reads it. A plain tool's region (no label) teaches none."""
    row = _BY_TYPE.get(result_type)
    if row is None or result_type != row.result_type:
        return ()
    return tuple(k for k in KINDS if k in row.trains)


def fed_tags(kind: Kind) -> tuple[str, ...]:
    """The control tags a model kind feeds (whose predictions it makes), in table order.

    >>> fed_tags("segment")
    ('BrushLabels', 'PolygonLabels')
    """
    return tuple(t.tag for t in TAGS.values() if t.kind == kind)


def dataset_tags(kind: DatasetKind) -> tuple[str, ...]:
    """The control tags whose results a dataset kind's converter reads, in table order."""
    return tuple(t.tag for t in TAGS.values() if kind in t.trains)


def dataset_types(kind: DatasetKind) -> tuple[str, ...]:
    """The result types a dataset kind's converter reads (the labelled ones), in table order."""
    return tuple(t.result_type for t in TAGS.values() if kind in t.trains)


def is_dataset_kind(value: object) -> TypeGuard[DatasetKind]:
    """Whether ``value`` is one of :data:`DATASET_KINDS` (any value: a manifest's ``kind`` is untrusted)."""
    return isinstance(value, str) and value in DATASET_KINDS
