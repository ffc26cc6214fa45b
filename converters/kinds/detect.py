"""``detect``: YOLO boxes, one ``<class> <cx> <cy> <w> <h>`` line (normalised) per object.

A rectangle gives its axis-aligned bounding box (a rotated one: the box around its corners), a polygon
its bounding box; boxes are clipped to the image (a warning). Tiles keep a box cut at their border when
at least ``min_visible`` of its area remains. Aperio polygons give their boxes, BreCaHAD centres boxes
of a fixed size; the ground truth is a ``RectangleLabels`` result per box.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from converters.dataset import box_line, format_line
from converters.kinds import DatasetSpec, ItemLabels
from converters.labelstudio_regions import MIN_PERCENT, LineReader, drawn_size
from converters.layout import DatasetLayout
from converters.pathology import PolygonLines, points_to_boxes
from converters.regions import RegionError, number, polygon_points, rect_corners
from converters.tiling import LineTiler, clip_boxes
from kernel.tags import TAGS

RECTANGLE = TAGS["RectangleLabels"].result_type
_NUMBER = (float, int)


def region_lines(
    rtype: str, value: dict, result: dict, cid: int, size: tuple[int, int] | None, warn: Callable[[str], None]
) -> list[str]:
    """The box line of a rectangle or polygon region for class ``cid``."""
    if rtype == RECTANGLE and not value.get("rotation"):
        # unrotated: straight from percent (no image size needed), as label_studio_sdk computes it
        x, y, w, h = (number(value, k) for k in ("x", "y", "width", "height"))
        if not (w >= MIN_PERCENT and h >= MIN_PERCENT):
            raise RegionError(f"zero-area rectangle ({w:.3g}% x {h:.3g}%)")
        if x >= 0 and y >= 0 and x + w <= 100 and y + h <= 100:
            return [f"{cid} {(x + w / 2) / 100:.6f} {(y + h / 2) / 100:.6f} {w / 100:.6f} {h / 100:.6f}"]
        x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, 100.0), min(y + h, 100.0)
        if not (x1 - x0 >= MIN_PERCENT and y1 - y0 >= MIN_PERCENT):
            raise RegionError("rectangle lies outside the image")
        warn("rectangle clipped to the image")
        return [format_line(cid, ((x0 + x1) / 200, (y0 + y1) / 200, (x1 - x0) / 100, (y1 - y0) / 100))]
    W, H = drawn_size(result, size)
    corners = rect_corners(value, W, H) if rtype == RECTANGLE else polygon_points(value, W, H)
    box = np.concatenate([corners.min(0), corners.max(0)])
    clipped = np.clip(box, 0, [W, H, W, H])
    if clipped[2] - clipped[0] <= 0 or clipped[3] - clipped[1] <= 0:
        raise RegionError("box lies outside the image or has zero area")
    if np.abs(clipped - box).max() > 1e-9:
        warn("box clipped to the image")
    x0, y0, x1, y1 = clipped
    return [box_line(cid, x0, y0, x1, y1, W, H)]


def plain_rectangles(
    results: list[Any], accepted: frozenset[tuple[str, str]] | None, index: dict[str, int]
) -> list[str] | None:
    """The common case, fast: only unrotated, valid, single-label rectangles inside the image.

    Returns None as soon as a result is anything else; the general path then converts the annotation
    (same output for these rectangles, plus the checks and messages for the rest).
    """
    lines = []
    try:
        for r in results:
            if type(r) is not dict or r["type"] != RECTANGLE:
                return None
            # a from_name that is not a string (a list: TypeError) is never one of the config's
            if accepted is not None and (r["from_name"], RECTANGLE) not in accepted:
                return None
            v = r["value"]
            if type(v) is not dict or v.get("rotation"):
                return None
            labels = v[RECTANGLE]
            if type(labels) is not list or len(labels) != 1:
                return None
            cid = index.get(labels[0]) if type(labels[0]) is str else None
            x, y, w, h = v["x"], v["y"], v["width"], v["height"]
            if (
                cid is None
                or type(x) not in _NUMBER
                or type(y) not in _NUMBER
                or type(w) not in _NUMBER
                or type(h) not in _NUMBER
                or not (  # each bounded first: a huge int never meets a float in an addition (OverflowError)
                    MIN_PERCENT <= w <= 100
                    and MIN_PERCENT <= h <= 100
                    and 0 <= x <= 100
                    and 0 <= y <= 100
                    and x + w <= 100
                    and y + h <= 100
                )
            ):
                return None
            lines.append(f"{cid} {(x + w / 2) / 100:.6f} {(y + h / 2) / 100:.6f} {w / 100:.6f} {h / 100:.6f}")
    except (KeyError, TypeError):  # a key missing, or not hashable: the general path says what is wrong
        return None
    return lines


def cut_box(
    cid: int, v: np.ndarray, win: tuple[int, int, int, int], w: int, h: int, min_visible: float
) -> list[str]:
    """A box line cut to a tile window: kept when at least ``min_visible`` of its area is inside."""
    x0, y0, x1, y1 = win
    box = np.array(
        [(v[0] - v[2] / 2) * w, (v[1] - v[3] / 2) * h, (v[0] + v[2] / 2) * w, (v[1] + v[3] / 2) * h]
    )
    kept, _ = clip_boxes(box[None], win, min_visible)
    return [box_line(cid, bx0, by0, bx1, by1, x1 - x0, y1 - y0) for bx0, by0, bx1, by1 in kept]


def polygon_box(cid: int, points: np.ndarray, width: int, height: int) -> list[str]:
    """The box line of a pixel polygon inside the image."""
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    return [box_line(cid, x0, y0, x1, y1, width, height)]


def point_boxes(
    points: dict[str, np.ndarray], classes: list[str], width: int, height: int, box_size: float, radius: float
) -> ItemLabels:
    """A box of ``box_size`` px around each nucleus centre."""
    boxes = points_to_boxes(points, classes, width, height, box_size)
    return ItemLabels(lines=[box_line(c, x0, y0, x1, y1, width, height) for c, x0, y0, x1, y1 in boxes])


def box_truth(
    classes: list[str],
    layout: DatasetLayout,
    split: str,
    stem: str,
    extra: dict[str, Any],
    w: int,
    h: int,
    from_name: str,
    to_name: str,
) -> list[dict[str, Any]]:
    """One rectangle result per box of the item's label file."""
    from converters.predictions import boxes_to_results

    lines = [line.split() for line in layout.label(split, stem).read_text().splitlines() if line.strip()]
    boxes, names = [], []
    for parts in lines:
        cx, cy, bw, bh = (float(v) for v in parts[1:5])
        boxes.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
        names.append(classes[int(parts[0])])
    return boxes_to_results(
        np.array(boxes).reshape(-1, 4), [1.0] * len(boxes), names, w, h, from_name, to_name
    )


SPEC = DatasetSpec(
    kind="detect",
    regions=partial(LineReader, lines=region_lines),
    plain_lines=plain_rectangles,
    yolo=True,
    tiler=LineTiler(values=lambda n: n == 4, cut=cut_box),
    polygons=PolygonLines(polygon_box),
    points=point_boxes,
    truth=box_truth,
    truth_tag="RectangleLabels",
    replays="detect",
)
