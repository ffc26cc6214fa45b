"""How uncertain the model is about a task: the prediction's ``score``, per project (``uncertainty``).

Label Studio's Data Manager sorts by the prediction score ("Prediction score" column, ascending): the
lower, the sooner a pathologist should look. Each measure maps a model output to a score in [0, 1]
(1 = sure), per kind (:data:`MEASURES`, one row per kind); a task with several kinds gets the lowest (its
most uncertain model):

============== ================================= ============================== ==========================
measure        classify (class probabilities)    segment (pixel probabilities)  detect (box confidences)
============== ================================= ============================== ==========================
``confidence`` the top probability               mean probability in the masks  mean box confidence
               (the regions' mean score: the     (as sent with each region)     (0 when nothing is found)
               default, as before)
``entropy``    1 - entropy / log(C)              1 - mean pixel entropy         1 - mean binary entropy
                                                 (background as a class)        of the confidences
``margin``     top-1 minus top-2 probability     mean margin of top two         mean ``|2p - 1|``
                                                 classes per pixel
``boundary``   as ``margin``                     1 - mean uncertainty           as ``margin``
                                                 ``1 - |2p-1|`` on the masks'
                                                 edges (2 px band)
``tta``        1 - mean total-variation          mean Dice of the masks with    mean best IoU of each box
               distance between the              those of the flipped images    with the flipped images'
               probabilities of the image and    (flipped back)                 boxes (flipped back)
               of its flips
============== ================================= ============================== ==========================

``tta`` (test-time-augmentation disagreement) runs the model twice more per image, on the image flipped
left-right and top-bottom (:data:`TTA_FLIPS`), maps those outputs back and scores how well they agree with
the plain output (:func:`tta_score`): a model that changes its mind when the tissue is mirrored is unsure.
It costs three forward passes per task instead of one.

A task where the detector or segmenter finds nothing scores 0 under every measure (nothing to confirm:
look at it first), as the default always did.

>>> from training.inference import ClassScores
>>> round(task_uncertainty_score("margin", {"classify": ClassScores(np.array([0.5, 0.3, 0.2]), list("abc"))}), 3)
0.2
>>> round(task_uncertainty_score("entropy", {"classify": ClassScores(np.array([1/3, 1/3, 1/3]), list("abc"))}), 3)
0.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.corrections import box_iou

EPS = 1e-7
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((1,), (0,))
"""The image axes flipped for ``tta``: left-right, top-bottom."""
BAND_PX = 2
MASK_THRESHOLD = 0.5


def _entropy(p: np.ndarray, axis: int = 0) -> np.ndarray:
    p = np.clip(p, EPS, 1.0)
    return -(p * np.log(p)).sum(axis=axis)


def classify_score(measure: str, probs: np.ndarray) -> float:
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if measure == "entropy":
        return float(1.0 - _entropy(p) / np.log(max(len(p), 2)))
    if measure in ("margin", "boundary"):
        top = np.sort(p)[::-1]
        return float(top[0] - (top[1] if len(top) > 1 else 0.0))
    return float(p.max())


def _with_background(probs: np.ndarray) -> np.ndarray:
    """(C+1, H, W): the class probabilities and the background's (binary: 1 - p; multi-class: 1 - sum)."""
    bg = np.clip(1.0 - probs.sum(axis=0, keepdims=True), 0.0, 1.0) if len(probs) > 1 else 1.0 - probs
    return np.concatenate([bg, probs], axis=0)


def segment_score(measure: str, probs: np.ndarray) -> float:
    probs = np.asarray(probs, dtype=np.float32)
    masks = probs >= MASK_THRESHOLD if len(probs) == 1 else _argmax_masks(probs)
    if not masks.any():
        return 0.0
    if measure == "confidence":
        return float(probs[masks].mean())
    full = _with_background(probs)
    if measure == "entropy":
        return float(1.0 - _entropy(full).mean() / np.log(len(full)))
    top2 = np.sort(full, axis=0)[-2:]
    margin = top2[1] - top2[0]
    if measure == "margin":
        return float(margin.mean())
    band = _edges(np.asarray(masks.any(axis=0)))
    return float(margin[band].mean()) if band.any() else float(margin.mean())


def _argmax_masks(probs: np.ndarray) -> np.ndarray:
    best = probs.argmax(axis=0)
    top = np.take_along_axis(probs, best[None], axis=0)[0]
    return np.stack([(best == c) & (top >= MASK_THRESHOLD) for c in range(len(probs))])


def _edges(mask: np.ndarray) -> np.ndarray:
    """Pixels within ``BAND_PX`` of the mask's boundary (both sides)."""
    import cv2

    m = mask.astype(np.uint8)
    kernel = np.ones((2 * BAND_PX + 1, 2 * BAND_PX + 1), np.uint8)
    return cv2.dilate(m, kernel).astype(bool) & ~cv2.erode(m, kernel).astype(bool)


def detect_score(measure: str, scores: np.ndarray) -> float:
    p = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not len(p):
        return 0.0
    if measure == "entropy":
        q = np.clip(p, EPS, 1 - EPS)
        return float(1.0 - (-(q * np.log(q) + (1 - q) * np.log(1 - q)) / np.log(2)).mean())
    if measure in ("margin", "boundary"):
        return float(np.abs(2 * p - 1).mean())
    return float(p.mean())


def flip_image(image: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``image`` (H, W, 3) mirrored along ``axes`` (0: top-bottom, 1: left-right), contiguous."""
    return np.ascontiguousarray(np.flip(image, axis=axes))


def _unflip_boxes(boxes: np.ndarray, axes: tuple[int, ...], width: int, height: int) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    if 1 in axes:
        b[:, [0, 2]] = width - b[:, [2, 0]]
    if 0 in axes:
        b[:, [1, 3]] = height - b[:, [3, 1]]
    return b


def _classify_agreement(
    output: Any, other: Any, axes: tuple[int, ...], min_score: float, size: tuple[int, int] | None
) -> float:
    p, q = np.asarray(output.probs, np.float64), np.asarray(other.probs, np.float64)
    return 1.0 - 0.5 * float(np.abs(p - q).sum())


def _segment_agreement(
    output: Any, other: Any, axes: tuple[int, ...], min_score: float, size: tuple[int, int] | None
) -> float | None:
    a = np.asarray(output.masks(MASK_THRESHOLD))
    b = np.flip(np.asarray(other.masks(MASK_THRESHOLD)), axis=tuple(ax + 1 for ax in axes))
    if not a.any():
        return None
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def _detect_agreement(
    output: Any, other: Any, axes: tuple[int, ...], min_score: float, size: tuple[int, int] | None
) -> float | None:
    keep = np.asarray(output.scores) >= min_score
    if not keep.any():
        return None
    if size is None:
        raise ValueError("tta for detect needs the image size")
    mine = np.asarray(output.boxes, np.float64).reshape(-1, 4)[keep]
    theirs = _unflip_boxes(np.asarray(other.boxes)[np.asarray(other.scores) >= min_score], axes, *size)
    return float(box_iou(mine, theirs).max(axis=1).mean()) if len(theirs) else 0.0


def _classify_output_score(measure: str, output: Any, min_score: float) -> float:
    return classify_score(measure, output.probs)


def _segment_output_score(measure: str, output: Any, min_score: float) -> float:
    return segment_score(measure, output.probs)


def _detect_output_score(measure: str, output: Any, min_score: float) -> float:
    kept = np.asarray(output.scores)
    return detect_score(measure, kept[kept >= min_score])


@dataclass(frozen=True)
class KindMeasures:
    """How one kind's model output is scored (a column of the module's table)."""

    score: Callable[[str, Any, float], float]
    """``score(measure, output, min_score)``: the output's score under a measure other than ``tta``
    (``min_score``: the floor of the boxes that are sent)."""
    agreement: Callable[[Any, Any, tuple[int, ...], float, tuple[int, int] | None], float | None]
    """``agreement(output, flipped_output, axes, min_score, size)``: how well the output on the image
    flipped along ``axes`` agrees with ``output``, in [0, 1]; None when ``output`` finds nothing (the task
    scores 0)."""


MEASURES: dict[str, KindMeasures] = {
    "classify": KindMeasures(_classify_output_score, _classify_agreement),
    "segment": KindMeasures(_segment_output_score, _segment_agreement),
    "detect": KindMeasures(_detect_output_score, _detect_agreement),
}
"""Each kind's measures; a kind not in it gets no score (and ``tta`` refuses it)."""


def tta_score(
    kind: str,
    output: Any,
    flipped: Sequence[tuple[tuple[int, ...], Any]],
    min_score: float = 0.0,
    size: tuple[int, int] | None = None,
) -> float:
    """How well the outputs on flipped images (``(axes, output)`` pairs, as the model gave them on
    :func:`flip_image`) agree with ``output`` on the image itself, in [0, 1] (1 = the same); ``size`` is the
    image's ``(width, height)`` (detect: to flip boxes back)."""
    if not flipped:
        raise ValueError("tta needs at least one flipped output")
    measures = MEASURES.get(kind)
    if measures is None:
        raise ValueError(f"tta: unknown kind {kind!r}")
    agreements = []
    for axes, other in flipped:
        agreement = measures.agreement(output, other, axes, min_score, size)
        if agreement is None:
            return 0.0  # nothing found: look first, as under every measure
        agreements.append(agreement)
    return float(np.mean(agreements))


def task_uncertainty_score(
    measure: str,
    outputs: Mapping[str, Any],
    min_score: float = 0.0,
    flipped: Mapping[str, Sequence[tuple[tuple[int, ...], Any]]] | None = None,
    sizes: Mapping[str, tuple[int, int]] | None = None,
) -> float:
    """The task's score under ``measure`` from its model outputs (kind -> output); see the module table.
    ``tta`` also needs ``flipped`` (kind -> the outputs on the flipped images) and, for detect, the image
    ``sizes`` (kind -> (width, height))."""
    if measure == "tta":
        if flipped is None:
            raise ValueError("the tta measure needs the outputs on the flipped images")
        tta = [
            tta_score(k, o, flipped[k], min_score, (sizes or {}).get(k))
            for k, o in outputs.items()
            if k in flipped
        ]
        return float(min(tta)) if tta else 0.0
    scores = [
        MEASURES[kind].score(measure, output, min_score)
        for kind, output in outputs.items()
        if kind in MEASURES
    ]
    return float(min(scores)) if scores else 0.0
