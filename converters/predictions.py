"""Model outputs → Label Studio prediction results (pre-annotations).

Boxes become ``rectanglelabels`` in percent of the image with ``original_width``/``original_height``,
masks become ``brushlabels`` (Label Studio RLE, :mod:`converters.rle`) or ``polygonlabels`` (OpenCV
contours, simplified), class scores become ``choices``. Every region carries its own ``score``;
:func:`task_score` turns them into the task's score.

>>> r = boxes_to_results([[10, 20, 110, 70]], [0.9], ["tumor"], 200, 100, "box", "image")[0]
>>> r["value"]["x"], r["value"]["y"], r["value"]["width"], r["value"]["height"], r["score"]
(5.0, 20.0, 50.0, 50.0, 0.9)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from converters.rle import mask_to_rle


def _id() -> str:
    return os.urandom(5).hex()


def _ids(n: int) -> list[str]:
    """``n`` random 10-hex-digit region ids (as :func:`_id`), from one ``os.urandom`` call."""
    raw = os.urandom(5 * n).hex()
    return [raw[i : i + 10] for i in range(0, 10 * n, 10)]


def boxes_to_results(
    boxes_xyxy: np.ndarray | Sequence,
    scores: np.ndarray | Sequence[float],
    labels: Sequence[str],
    width: int,
    height: int,
    from_name: str,
    to_name: str,
) -> list[dict]:
    """One ``rectanglelabels`` result per box (pixel xyxy; clipped to the image; empty boxes dropped).

    The geometry is computed for all boxes at once (numpy, the same float64 operations as one box at a
    time); only the dicts are built per box.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not (len(boxes) == len(scores) == len(labels)):
        raise ValueError(f"{len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels")
    boxes = np.clip(boxes, 0, [width, height, width, height])
    x0, y0, x1, y1 = boxes.T
    keep = np.flatnonzero((x1 > x0) & (y1 > y0))
    if keep.size == 0:
        return []
    if keep.size < len(boxes):
        x0, y0, x1, y1, scores = x0[keep], y0[keep], x1[keep], y1[keep], scores[keep]
        labels = [labels[i] for i in keep.tolist()]
    xs = (x0 / width * 100).tolist()
    ys = (y0 / height * 100).tolist()
    ws = ((x1 - x0) / width * 100).tolist()
    hs = ((y1 - y0) / height * 100).tolist()
    w, h = int(width), int(height)
    return [
        {
            "id": rid,
            "from_name": from_name,
            "to_name": to_name,
            "type": "rectanglelabels",
            "original_width": w,
            "original_height": h,
            "image_rotation": 0,
            "value": {
                "x": x,
                "y": y,
                "width": bw,
                "height": bh,
                "rotation": 0,
                "rectanglelabels": [str(label)],
            },
            "score": score,
        }
        for rid, x, y, bw, bh, label, score in zip(
            _ids(len(xs)), xs, ys, ws, hs, labels, scores.tolist(), strict=True
        )
    ]


def mask_to_brush_result(mask: np.ndarray, label: str, score: float, from_name: str, to_name: str) -> dict:
    """A ``brushlabels`` result for a (H, W) mask (non-zero = painted)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    h, w = mask.shape
    return rle_brush_result(mask_to_rle(mask > 0), w, h, label, score, from_name, to_name)


def rle_brush_result(
    rle: list[int], width: int, height: int, label: str, score: float, from_name: str, to_name: str
) -> dict:
    """A ``brushlabels`` result for a mask already encoded (:func:`converters.rle.labels_to_rles`)."""
    return {
        "id": _id(),
        "from_name": from_name,
        "to_name": to_name,
        "type": "brushlabels",
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": {"format": "rle", "rle": rle, "brushlabels": [str(label)]},
        "score": float(score),
    }


def mask_to_polygons(mask: np.ndarray, min_area: float = 4.0, tolerance: float = 1.0) -> list[np.ndarray]:
    """Outer contours of a mask as (K, 2) pixel polygons (x, y), simplified by ``tolerance`` px."""
    import cv2

    m = (np.asarray(mask) > 0).astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for contour in contours:
        if cv2.contourArea(contour) < min_area:
            continue
        c = cv2.approxPolyDP(contour, tolerance, True) if tolerance > 0 else contour
        pts = c.reshape(-1, 2).astype(np.float64)
        if len(pts) >= 3:
            out.append(pts)
    return out


def mask_to_polygon_results(
    mask: np.ndarray,
    label: str,
    score: float,
    from_name: str,
    to_name: str,
    min_area: float = 4.0,
    tolerance: float = 1.0,
    origin: tuple[int, int] = (0, 0),
    image_size: tuple[int, int] | None = None,
) -> list[dict]:
    """One ``polygonlabels`` result per connected component of the mask (points in percent).

    A mask of a crop: ``origin`` is the crop's top-left ``(x, y)`` in an image of ``image_size``
    ``(width, height)``, so the polygons are traced on the crop alone.

    >>> m = np.zeros((10, 10), bool); m[2:6, 2:6] = True
    >>> r = mask_to_polygon_results(m, "Tumor", 0.9, "poly", "image", origin=(90, 40), image_size=(200, 100))
    >>> r[0]["original_width"], min(p[0] for p in r[0]["value"]["points"])
    (200, 46.25)
    """
    mask = np.asarray(mask)
    w, h = image_size if image_size is not None else (mask.shape[1], mask.shape[0])
    out = []
    for pts in mask_to_polygons(mask, min_area=min_area, tolerance=tolerance):
        # pixel centres of the contour → percent of the image
        pct = (pts + 0.5 + np.asarray(origin, dtype=np.float64)) / np.array([w, h]) * 100
        out.append(
            {
                "id": _id(),
                "from_name": from_name,
                "to_name": to_name,
                "type": "polygonlabels",
                "original_width": int(w),
                "original_height": int(h),
                "image_rotation": 0,
                "value": {"points": pct.round(4).tolist(), "closed": True, "polygonlabels": [str(label)]},
                "score": float(score),
            }
        )
    return out


def drop_padding(
    results: list[dict], valid_width: int, valid_height: int, width: int, height: int
) -> list[dict]:
    """The results of an image of ``width`` × ``height`` whose part right of ``valid_width`` or below
    ``valid_height`` is padding (a slide field crossing the slide's edge), with nothing in the padding:
    a brush's padding pixels erased, a polygon cut to the valid part, a box or point whose centre is in the
    padding dropped (a box on the edge cut to it); results with no geometry (choices) kept. A region left
    with nothing goes.

    >>> box = boxes_to_results([[10, 10, 30, 30], [60, 10, 90, 30], [40, 10, 60, 30]], [0.9] * 3, ["t"] * 3,
    ...                        100, 100, "box", "image")
    >>> [(r["value"]["x"], round(r["value"]["width"], 6)) for r in drop_padding(box, 55, 100, 100, 100)]
    [(10.0, 20.0), (40.0, 15.0)]
    """
    if valid_width >= width and valid_height >= height:
        return results
    vx, vy = valid_width / width * 100, valid_height / height * 100
    out = []
    for r in results:
        value = r.get("value") if isinstance(r, dict) else None
        if not isinstance(value, dict):
            out.append(r)
            continue
        if "rle" in value:
            kept = _brush_cut(value, valid_width, valid_height, width, height)
        elif "points" in value:
            kept = _polygon_cut(value, vx, vy)
        elif "x" in value and "y" in value:
            kept = _box_cut(value, vx, vy)
        else:
            kept = value
        if kept is not None:
            out.append({**r, "value": kept})
    return out


def _brush_cut(value: dict, vw: int, vh: int, width: int, height: int) -> dict | None:
    from converters.rle import rle_to_mask

    mask = rle_to_mask(value["rle"], height, width)
    if not mask[vh:].any() and not mask[:, vw:].any():
        return value
    mask[vh:] = 0
    mask[:, vw:] = 0
    return {**value, "rle": mask_to_rle(mask > 0)} if mask.any() else None


def _polygon_cut(value: dict, vx: float, vy: float) -> dict | None:
    from shapely import Polygon, box

    points = np.asarray(value["points"], dtype=np.float64).reshape(-1, 2)
    if (points[:, 0] <= vx).all() and (points[:, 1] <= vy).all():
        return value
    shape = Polygon(points).buffer(0) if len(points) >= 3 else Polygon()
    cut = shape.intersection(box(0, 0, vx, vy))
    parts = [p for p in getattr(cut, "geoms", [cut]) if p.geom_type == "Polygon" and p.area > 0]
    if not parts:
        return None
    ring = np.asarray(max(parts, key=lambda p: p.area).exterior.coords)[:-1]
    return {**value, "points": ring.round(4).tolist()}


def _box_cut(value: dict, vx: float, vy: float) -> dict | None:
    x, y = float(value["x"]), float(value["y"])
    w, h = float(value.get("width", 0.0)), float(value.get("height", 0.0))
    if value.get("rotation"):  # a rotated box: by its centre, kept as it is
        import math

        t = math.radians(float(value["rotation"]))
        cx = x + (w * math.cos(t) - h * math.sin(t)) / 2
        cy = y + (w * math.sin(t) + h * math.cos(t)) / 2
        return value if cx < vx and cy < vy else None
    if not (x + w / 2 < vx and y + h / 2 < vy):
        return None
    if x + w <= vx and y + h <= vy:
        return value
    return {**value, "width": min(w, vx - x), "height": min(h, vy - y)}


def choices_result(choice: str, score: float, from_name: str, to_name: str) -> dict:
    """A ``choices`` result with the model's probability for it."""
    return {
        "id": _id(),
        "from_name": from_name,
        "to_name": to_name,
        "type": "choices",
        "value": {"choices": [str(choice)]},
        "score": float(score),
    }


def task_score(region_scores: Sequence[float]) -> float:
    """The task's score: the mean of its region scores; 0.0 when the model found nothing.

    Lower means more uncertain, so sorting a project by prediction score ascending puts the tasks a
    pathologist should look at first (the model unsure, or finding nothing) on top.

    >>> task_score([0.9, 0.5]), task_score([])
    (0.7, 0.0)
    """
    scores = [float(s) for s in region_scores]
    return float(np.mean(scores)) if scores else 0.0
