"""What a specialist does in Label Studio to turn a suggestion into the ground truth: a correction count.

A pure model of the editing work, per kind of region, used by ``histoloop simulate`` (and open to anything
that wants to choose a threshold by the work it saves). Every count is of actions a person takes in Label
Studio's editor; "from scratch" is the same person with no suggestion at all. Each kind's row
(:attr:`training.base.KindSpec.corrections`) names one of the three :class:`CorrectionModel` below;
:mod:`training.specialist` finds it by kind.

**Boxes** (:data:`BOX_CORRECTIONS`, ``RectangleLabels``). Suggested and true boxes are paired one-to-one by
IoU (Hungarian assignment, class-agnostic), a pair counting only at IoU >= :data:`MATCH_IOU` (0.5):

- ``added``: a true box with no suggestion paired to it (the person draws it);
- ``deleted``: a suggested box paired to nothing (a false positive: the person deletes it);
- ``adjusted``: a pair with IoU < :data:`ADJUST_IOU` (0.75): the person drags its corners;
- ``relabelled``: a pair whose label differs (the person picks another label).

From scratch: every true box drawn (``added`` = the number of true boxes).

**Objects** (:data:`OBJECT_CORRECTIONS`, ``BrushLabels``/``PolygonLabels``). An *object* is a connected
component (8-connected) of one region's mask, regions painted in order (later on top), so a suggested brush
region that covers three touching nuclei as one blob is one object, and a ground truth drawn one region per
nucleus keeps its nuclei apart. Objects are paired one-to-one by IoU like boxes:

- ``added``: a true object with no suggested object at IoU >= 0.5 (drawn);
- ``deleted``: a suggested object paired to nothing (erased);
- ``adjusted`` (*redrawn*): a pair with IoU < :data:`REDRAW_IOU` (0.75): the outline is repainted;
- ``relabelled``: a pair whose label differs;
- ``pixels``: pixels whose class differs between the suggestion and the truth (what the brush touches),
  reported beside the object counts, not added to them.

From scratch: every true object drawn, every true foreground pixel painted.

**A label** (:data:`LABEL_CORRECTIONS`, ``Choices``): ``relabelled`` = 1 when the suggested choice is missing
or differs from the true one, else 0. From scratch: 1 (every label chosen).

The total (:attr:`Corrections.total`) is ``added + deleted + adjusted + relabelled``: one action each.

**Estimated time** (:class:`ActionSeconds`, beside the counts, which stay the primary figure): each action
weighted by the seconds a published annotation-time study measured for it, and every true object the
suggestion already got right (``objects - added - adjusted - relabelled``) costs one look to accept it:

- accepting, deleting or relabelling an object: one verification, :data:`VERIFY_SECONDS` = 1.6 s
  (Papadopoulos et al., "We don't need no bounding-boxes", CVPR 2016: a yes/no check of a box took 1.6 s);
- drawing or adjusting a box: :data:`BOX_SECONDS` = 7 s (Papadopoulos et al., "Extreme clicking for
  efficient object annotation", ICCV 2017: 7.0 s per box, against 34.5 s with the conventional two-corner
  method);
- drawing or redrawing an object's outline: :data:`OUTLINE_SECONDS` = 79 s (Lin et al., "Microsoft COCO",
  ECCV 2014: 22 worker-hours per 1,000 instance polygons). Nuclei are smaller and rounder than COCO's
  objects, so this over-weights outlines against verifications; the ratios it gives are optimistic for
  masks where the suggestions are mostly accepted, pessimistic where they are mostly redrawn.

>>> truth = Boxes.of([[0, 0, 10, 10], [20, 20, 30, 30]])
>>> box_corrections(Boxes.of([[0, 0, 10, 10], [50, 50, 60, 60]]), truth).as_dict()
{'added': 1, 'deleted': 1, 'adjusted': 0, 'relabelled': 0, 'pixels': 0, 'objects': 2, 'total': 2}
>>> BOX_CORRECTIONS.from_scratch(truth).total
2
>>> label_corrections("Benign", "Malignant").total, label_corrections(None, "Benign").total
(1, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernel.tags import TAGS

MATCH_IOU = 0.5
"""A suggestion and a true object are the same object when their IoU is at least this."""
ADJUST_IOU = 0.75
"""A paired box with a lower IoU is adjusted by hand (its corners dragged)."""
REDRAW_IOU = 0.75
"""A paired object mask with a lower IoU is redrawn by hand."""


@dataclass(frozen=True)
class Corrections:
    """The actions that turn a suggestion into the truth (see the module docstring)."""

    added: int = 0
    deleted: int = 0
    adjusted: int = 0
    """detect: boxes adjusted; segment: objects redrawn."""
    relabelled: int = 0
    pixels: int = 0
    """segment: pixels whose class changed (not part of :attr:`total`)."""
    objects: int = 0
    """How many true objects (boxes, components, labels) the task has."""

    @property
    def total(self) -> int:
        """One per action: added + deleted + adjusted + relabelled."""
        return self.added + self.deleted + self.adjusted + self.relabelled

    def __add__(self, other: Corrections) -> Corrections:
        return Corrections(*(getattr(self, k) + getattr(other, k) for k in _FIELDS))

    def as_dict(self) -> dict[str, int]:
        return {**{k: int(getattr(self, k)) for k in _FIELDS}, "total": self.total}


_FIELDS = ("added", "deleted", "adjusted", "relabelled", "pixels", "objects")


@dataclass(frozen=True)
class Boxes:
    """Boxes (N, 4) pixel xyxy and their labels."""

    xyxy: np.ndarray
    labels: tuple[str, ...] = ()

    @classmethod
    def of(cls, boxes: Sequence[Sequence[float]] | np.ndarray, labels: Sequence[str] | None = None) -> Boxes:
        arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return cls(arr, tuple(labels) if labels is not None else ("",) * len(arr))

    def __len__(self) -> int:
        return len(self.xyxy)


@dataclass(frozen=True)
class Objects:
    """Object masks as an instance map: (H, W) int32, 0 = background, i = object i (``labels[i - 1]``)."""

    instances: np.ndarray
    labels: tuple[str, ...] = field(default=())

    @classmethod
    def from_masks(cls, masks: Sequence[tuple[np.ndarray, str]], shape: tuple[int, int]) -> Objects:
        """Objects of region masks painted in order (later on top): each 8-connected component of what a
        region still shows is one object, with the region's label."""
        from scipy import ndimage

        owner = np.zeros(shape, np.int32)
        for i, (mask, _) in enumerate(masks, 1):
            owner[np.asarray(mask, bool)] = i
        instances = np.zeros(shape, np.int32)
        labels: list[str] = []
        for i, (_, label) in enumerate(masks, 1):
            region = owner == i
            if not region.any():
                continue
            comp, n = ndimage.label(region, structure=np.ones((3, 3), bool))
            instances[comp > 0] = comp[comp > 0] + len(labels)
            labels.extend([label] * n)
        return cls(instances, tuple(labels))

    def __len__(self) -> int:
        return len(self.labels)

    def class_map(self, classes: Sequence[str]) -> np.ndarray:
        """(H, W) class index (0 = background, i + 1 = ``classes[i]``)."""
        index = {c: i + 1 for i, c in enumerate(classes)}
        lut = np.array([0] + [index.get(label, 0) for label in self.labels], np.int32)
        return lut[self.instances]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of two sets of xyxy boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def mask_iou(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(n_pred, n_true) IoU of the objects of two instance maps of the same shape (one pass of bincount)."""
    pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"instance maps differ in size: {pred.shape} vs {true.shape}")
    n_pred, n_true = int(pred.max(initial=0)), int(true.max(initial=0))
    joint = np.bincount(pred.astype(np.int64) * (n_true + 1) + true, minlength=(n_pred + 1) * (n_true + 1))
    joint = joint.reshape(n_pred + 1, n_true + 1)
    inter = joint[1:, 1:].astype(np.float64)
    area_p, area_t = joint[1:, :].sum(1), joint[:, 1:].sum(0)
    union = area_p[:, None] + area_t[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def match(iou: np.ndarray, threshold: float = MATCH_IOU) -> list[tuple[int, int, float]]:
    """One-to-one pairs (i, j, iou) maximising the summed IoU (Hungarian), each with IoU >= ``threshold``."""
    if iou.size == 0:
        return []
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(np.where(iou >= threshold, iou, 0.0), maximize=True)
    return [
        (int(i), int(j), float(iou[i, j])) for i, j in zip(rows, cols, strict=True) if iou[i, j] >= threshold
    ]


def _paired(
    iou: np.ndarray,
    pred_labels: Sequence[str],
    true_labels: Sequence[str],
    n_pred: int,
    n_true: int,
    fix_below: float,
) -> Corrections:
    pairs = match(iou)
    return Corrections(
        added=n_true - len(pairs),
        deleted=n_pred - len(pairs),
        adjusted=sum(1 for _, _, v in pairs if v < fix_below),
        relabelled=sum(1 for i, j, _ in pairs if pred_labels[i] != true_labels[j]),
        objects=n_true,
    )


def iou_corrections(iou: np.ndarray, *, fix_below: float = ADJUST_IOU) -> Corrections:
    """Class-agnostic corrections of P suggestions against T true objects from their (P, T) IoU matrix
    (what :func:`training.objects.choose_threshold` counts at each score threshold)."""
    iou = np.asarray(iou, np.float64)
    n_pred, n_true = iou.shape
    return _paired(iou, ("",) * n_pred, ("",) * n_true, n_pred, n_true, fix_below)


def box_corrections(pred: Boxes, true: Boxes, *, adjust_iou: float = ADJUST_IOU) -> Corrections:
    """Boxes added, deleted, adjusted and relabelled to turn ``pred`` into ``true``."""
    return _paired(box_iou(pred.xyxy, true.xyxy), pred.labels, true.labels, len(pred), len(true), adjust_iou)


def object_corrections(pred: Objects, true: Objects, *, redraw_iou: float = REDRAW_IOU) -> Corrections:
    """Objects added, deleted, redrawn and relabelled, and pixels changed, to turn ``pred`` into ``true``."""
    counts = _paired(
        mask_iou(pred.instances, true.instances), pred.labels, true.labels, len(pred), len(true), redraw_iou
    )
    classes = sorted(set(pred.labels) | set(true.labels))
    pixels = int((pred.class_map(classes) != true.class_map(classes)).sum())
    return Corrections(
        counts.added, counts.deleted, counts.adjusted, counts.relabelled, pixels, counts.objects
    )


def label_corrections(pred: str | None, true: str | None) -> Corrections:
    """A choice changed (1) or kept (0); no true label is no work."""
    if true is None:
        return Corrections()
    return Corrections(relabelled=int(pred != true), objects=1)


def boxes_from_scratch(true: Boxes) -> Corrections:
    """The work with no suggestion: every true box drawn."""
    return Corrections(added=len(true), objects=len(true))


def objects_from_scratch(true: Objects) -> Corrections:
    """The work with no suggestion: every true object drawn and its pixels painted."""
    return Corrections(added=len(true), pixels=int((true.instances > 0).sum()), objects=len(true))


def label_from_scratch(true: str | None) -> Corrections:
    """The work with no suggestion: the label chosen (none when there is no true label)."""
    return label_corrections(None, true)


# -- Label Studio results -> what a person sees ----------------------------------------------------------
def boxes_of(results: Sequence[dict[str, Any]], width: int, height: int) -> Boxes:
    """The ``rectanglelabels`` of Label Studio results as :class:`Boxes` (rotated rectangles as their
    bounding box); results of other types are ignored."""
    from converters.regions import rect_xyxy

    rect = TAGS["RectangleLabels"]
    boxes, labels = [], []
    for r in results:
        if r.get("type") in rect.result_types:
            value = r["value"]
            boxes.append(rect_xyxy(value, width, height))
            labels.append(_label(value, rect.label_key))
    return Boxes.of(boxes, labels)


def objects_of(results: Sequence[dict[str, Any]], width: int, height: int) -> Objects:
    """The ``BrushLabels`` and ``PolygonLabels`` results of Label Studio results as :class:`Objects`, painted
    in order (a tag's result types are those of :data:`kernel.tags.TAGS`); results of other types are
    ignored."""
    from converters.regions import RegionError, brush_mask, polygon_points, rasterize

    brush, poly = TAGS["BrushLabels"], TAGS["PolygonLabels"]
    masks = []
    for r in results:
        value = r.get("value", {})
        if r.get("type") in brush.result_types:
            masks.append((brush_mask(value, width, height), _label(value, brush.label_key)))
        elif r.get("type") in poly.result_types:
            try:
                pts = polygon_points(value, width, height)
            except RegionError:  # on one line or beside the image: it covers no pixel, no object to count
                continue
            masks.append((rasterize([(pts, 1)], height, width) > 0, _label(value, poly.label_key)))
    return Objects.from_masks(masks, (height, width))


def choice_of(results: Sequence[dict[str, Any]], width: int = 0, height: int = 0) -> str | None:
    """The first ``Choices`` result's choice (None without one); the size is not needed."""
    choice = TAGS["Choices"]
    for r in results:
        if r.get("type") in choice.result_types and r.get("value", {}).get(choice.label_key):
            return str(r["value"][choice.label_key][0])
    return None


def _label(value: dict[str, Any], key: str) -> str:
    labels = value.get(key) or [""]
    return str(labels[0])


VERIFY_SECONDS = 1.6
"""One look to accept, delete or relabel an object (Papadopoulos et al., CVPR 2016)."""
BOX_SECONDS = 7.0
"""Drawing a box by extreme clicking (Papadopoulos et al., ICCV 2017); adjusting one is taken as drawing it."""
OUTLINE_SECONDS = 79.0
"""Drawing an object's polygon (COCO: Lin et al., ECCV 2014); redrawing one is taken as drawing it."""


@dataclass(frozen=True)
class ActionSeconds:
    """A specialist's seconds per action (see the module docstring for the studies).

    >>> boxes = ActionSeconds(draw=BOX_SECONDS, adjust=BOX_SECONDS)
    >>> boxes.of(Corrections(added=1, deleted=1, objects=3))  # 1 drawn, 1 deleted, 2 accepted
    11.8
    >>> boxes.of(BOX_CORRECTIONS.from_scratch(Boxes.of([[0, 0, 9, 9]] * 3)))  # 3 drawn
    21.0
    """

    draw: float
    adjust: float
    delete: float = VERIFY_SECONDS
    relabel: float = VERIFY_SECONDS
    accept: float = VERIFY_SECONDS

    def of(self, c: Corrections) -> float:
        """The estimated seconds of the actions ``c`` counts, accepting what needs no action."""
        accepted = max(c.objects - c.added - c.adjusted - c.relabelled, 0)
        spent = (
            c.added * self.draw
            + c.adjusted * self.adjust
            + c.deleted * self.delete
            + c.relabelled * self.relabel
            + accepted * self.accept
        )
        return round(spent, 3)


@dataclass(frozen=True)
class CorrectionModel:
    """How a specialist corrects one kind of suggestion: what the regions of Label Studio results show
    (``regions_of(results, width, height)``: :class:`Boxes`, :class:`Objects` or a label), the actions from
    a suggestion to the truth (``count(pred, true)``), the work with no suggestion (``from_scratch(true)``)
    and the seconds of each action (``seconds``)."""

    regions_of: Callable[[Sequence[dict[str, Any]], int, int], Any]
    count: Callable[[Any, Any], Corrections]
    from_scratch: Callable[[Any], Corrections]
    seconds: ActionSeconds


BOX_CORRECTIONS = CorrectionModel(
    boxes_of, box_corrections, boxes_from_scratch, ActionSeconds(draw=BOX_SECONDS, adjust=BOX_SECONDS)
)
OBJECT_CORRECTIONS = CorrectionModel(
    objects_of,
    object_corrections,
    objects_from_scratch,
    ActionSeconds(draw=OUTLINE_SECONDS, adjust=OUTLINE_SECONDS),
)
LABEL_CORRECTIONS = CorrectionModel(
    choice_of,
    label_corrections,
    label_from_scratch,
    ActionSeconds(draw=VERIFY_SECONDS, adjust=VERIFY_SECONDS),
)


__all__ = [
    "ADJUST_IOU",
    "BOX_CORRECTIONS",
    "BOX_SECONDS",
    "LABEL_CORRECTIONS",
    "MATCH_IOU",
    "OBJECT_CORRECTIONS",
    "OUTLINE_SECONDS",
    "REDRAW_IOU",
    "VERIFY_SECONDS",
    "ActionSeconds",
    "Boxes",
    "CorrectionModel",
    "Corrections",
    "Objects",
    "box_corrections",
    "box_iou",
    "boxes_from_scratch",
    "boxes_of",
    "choice_of",
    "label_corrections",
    "label_from_scratch",
    "mask_iou",
    "match",
    "object_corrections",
    "objects_from_scratch",
    "objects_of",
]
