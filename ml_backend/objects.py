"""Which object a click, a box or a stroke means: pure functions on one model output for a crop.

Interactive pre-annotation (:mod:`ml_backend.interactive`) runs the production model on a crop around the
prompt, never on the whole image; these functions then pick what the annotator pointed at:

- :func:`crop_window`: the crop, at least ``min_size`` square (the segmenter's input, 256–512 px) around
  the prompt, shifted to stay inside the image;
- :func:`pick_mask`: of the segmenter's foreground, the connected component under each positive click (or
  the nearest one within ``near`` px: a click just beside a nucleus still gets it), the components a stroke
  touches, or everything inside a box (clipped to it). A negative click inside a picked object cuts away
  the part of it nearer to that click than to any positive click (the whole object when there is no
  positive click); on the background it changes nothing;
- :func:`pick_boxes`: of the detector's boxes, those whose centre lies inside a prompt box, or the best one
  holding (else nearest to, within ``near`` px of its edge) each positive click; boxes holding a negative click are dropped.

All coordinates here are pixels of the crop.

>>> fg = np.zeros((40, 40), bool); fg[5:15, 5:15] = True; fg[20:35, 20:35] = True
>>> int(pick_mask(fg, positives=[(8, 8)]).sum()), int(pick_mask(fg, positives=[(18, 18)], near=5).sum())
(100, 225)
>>> int(pick_mask(fg, boxes=[(0, 0, 25, 40)]).sum())
175
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NEAR_PX = 24
"""How far from a click the nearest object may be and still count."""
MIN_AREA_PX = 9
"""Objects (connected components) smaller than this inside a box are noise."""

Point = tuple[float, float]
XYXY = tuple[float, float, float, float]


def crop_window(
    bounds: XYXY, width: int, height: int, min_size: int = 256, margin: float = 0.25
) -> tuple[int, int, int, int]:
    """Integer ``x0, y0, x1, y1`` of the crop around ``bounds`` (pixels of the image).

    The crop is ``bounds`` grown by ``margin`` of its size (at least 16 px) on each side and at least
    ``min_size`` square, centred on the prompt; it is shifted (not shrunk) to stay inside the image, and is
    the whole image where that is smaller.

    >>> crop_window((100, 100, 101, 101), 1000, 800)
    (0, 0, 256, 256)
    >>> crop_window((500, 400, 501, 401), 1000, 800)
    (372, 272, 628, 528)
    >>> crop_window((100, 100, 700, 300), 1000, 800)
    (0, 50, 900, 350)
    """
    x0, y0, x1, y1 = bounds
    bw, bh = x1 - x0, y1 - y0
    w = min(width, int(np.ceil(max(min_size, bw + 2 * max(16.0, bw * margin)))))
    h = min(height, int(np.ceil(max(min_size, bh + 2 * max(16.0, bh * margin)))))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = round(min(max(cx - w / 2, 0), width - w))
    top = round(min(max(cy - h / 2, 0), height - h))
    return left, top, left + w, top + h


def _components(fg: np.ndarray) -> tuple[int, np.ndarray]:
    import cv2

    n, comp = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
    return int(n), comp


def _at(comp: np.ndarray, x: float, y: float) -> tuple[int, int]:
    h, w = comp.shape
    return min(max(int(y), 0), h - 1), min(max(int(x), 0), w - 1)


def _nearest_component(comp: np.ndarray, x: float, y: float, near: float) -> int:
    row, col = _at(comp, x, y)
    if comp[row, col]:
        return int(comp[row, col])
    r = int(np.ceil(near))
    r0, c0 = max(0, row - r), max(0, col - r)
    window = comp[r0 : row + r + 1, c0 : col + r + 1]
    ys, xs = np.nonzero(window)
    if not len(ys):
        return 0
    d2 = (ys + r0 - row) ** 2 + (xs + c0 - col) ** 2
    best = int(d2.argmin())
    return int(window[ys[best], xs[best]]) if d2[best] <= near * near else 0


def _box_mask(shape: tuple[int, ...], boxes: Sequence[XYXY]) -> np.ndarray:
    inside = np.zeros(shape[:2], bool)
    for x0, y0, x1, y1 in boxes:
        inside[
            max(0, int(np.floor(y0))) : max(0, int(np.ceil(y1))),
            max(0, int(np.floor(x0))) : max(0, int(np.ceil(x1))),
        ] = True
    return inside


def pick_mask(
    fg: np.ndarray,
    positives: Sequence[Point] = (),
    negatives: Sequence[Point] = (),
    boxes: Sequence[XYXY] = (),
    strokes: Sequence[np.ndarray] = (),
    near: float = NEAR_PX,
) -> np.ndarray:
    """(H, W) bool: the object(s) the prompt means, out of the foreground ``fg`` (see the module doc)."""
    fg = np.asarray(fg, dtype=bool)
    _, comp = _components(fg)
    chosen: set[int] = set()
    for x, y in positives:
        c = _nearest_component(comp, x, y, near)
        if c:
            chosen.add(c)
    for stroke in strokes:
        chosen.update(int(c) for c in np.unique(comp[np.asarray(stroke, bool) & fg]) if c)
    inside = _box_mask(fg.shape, boxes) if boxes else None
    if inside is not None and not positives and not len(strokes):
        ids, areas = np.unique(comp[inside & fg], return_counts=True)
        chosen.update(int(c) for c, a in zip(ids, areas, strict=True) if c and a >= MIN_AREA_PX)
    if not chosen:
        return np.zeros(fg.shape, bool)
    selected = np.isin(comp, sorted(chosen))
    if inside is not None:
        selected &= inside
    for x, y in negatives:
        row, col = _at(comp, x, y)
        c = int(comp[row, col])
        if not c or not selected[row, col]:
            continue
        part = selected & (comp == c)
        if not positives:
            selected &= ~part
            continue
        ys, xs = np.nonzero(part)
        d_neg = (xs - x) ** 2 + (ys - y) ** 2
        d_pos = np.min([(xs - px) ** 2 + (ys - py) ** 2 for px, py in positives], axis=0)
        cut = d_neg < d_pos
        selected[ys[cut], xs[cut]] = False
    return selected


def pick_boxes(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    positives: Sequence[Point] = (),
    negatives: Sequence[Point] = (),
    prompt_boxes: Sequence[XYXY] = (),
    near: float = NEAR_PX,
) -> np.ndarray:
    """Indices of the detections the prompt means (see the module doc), best score first."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not len(boxes):
        return np.zeros(0, dtype=np.int64)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    keep = np.zeros(len(boxes), bool)
    for x0, y0, x1, y1 in prompt_boxes:
        keep |= (cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1)
    for x, y in positives:
        holds = (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])
        if holds.any():
            keep[np.flatnonzero(holds)[scores[holds].argmax()]] = True
            continue
        dx = np.maximum(np.maximum(boxes[:, 0] - x, x - boxes[:, 2]), 0)
        dy = np.maximum(np.maximum(boxes[:, 1] - y, y - boxes[:, 3]), 0)
        d2 = dx**2 + dy**2
        if d2.min() <= near * near:
            keep[int(d2.argmin())] = True
    for x, y in negatives:
        keep &= ~((boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3]))
    idx = np.flatnonzero(keep)
    return idx[np.argsort(-scores[idx], kind="stable")]
