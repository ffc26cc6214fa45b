"""``yolo-segment``: YOLO polygons, one ``<class> <x1> <y1> <x2> <y2> ...`` line (normalised) per object.

A polygon gives its points (clipped to the image: a warning), a brush each outer contour of its mask.
Tiles keep what of a polygon lies inside them; Aperio polygons keep their points. The ground truth is
one brush region per polygon (a specialist draws one region per nucleus), which is how a replay of
``segment`` reads a source whose objects are polygons.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from converters.dataset import points_line
from converters.kinds import DatasetSpec
from converters.labelstudio_regions import LineReader, drawn_size
from converters.layout import DatasetLayout
from converters.pathology import PolygonLines
from converters.regions import RegionError, brush_mask, has_area, image_size_of, polygon_points
from converters.tiling import LineTiler, clip_polygon
from kernel.tags import TAGS

POLYGON = TAGS["PolygonLabels"].result_type


def region_lines(
    rtype: str, value: dict, result: dict, cid: int, size: tuple[int, int] | None, warn: Callable[[str], None]
) -> list[str]:
    """The polygon lines of a polygon region (its points) or a brush region (its outer contours)."""
    if rtype == POLYGON:
        W, H = image_size_of(result) or size or (100, 100)  # percent points need no size
        pts = polygon_points(value, W, H) / [W, H]
        if pts.min() < 0 or pts.max() > 1:
            pts = np.clip(pts, 0, 1)
            if not has_area(pts):
                raise RegionError("polygon lies outside the image")
            warn("polygon vertices clipped to the image")
        return [points_line(cid, pts)]
    from converters.predictions import mask_to_polygons

    W, H = drawn_size(result, size)
    polys = mask_to_polygons(brush_mask(value, W, H), min_area=1.0, tolerance=0.5)
    if not polys:
        raise RegionError("brush region is empty")
    return [points_line(cid, np.clip(p / [W, H], 0, 1)) for p in polys]


def cut_polygon(
    cid: int, v: np.ndarray, win: tuple[int, int, int, int], w: int, h: int, min_visible: float
) -> list[str]:
    """A polygon line cut to a tile window (none when nothing of it is inside)."""
    x0, y0, x1, y1 = win
    poly = clip_polygon(v.reshape(-1, 2) * [w, h], win)
    return [points_line(cid, np.clip(poly / [x1 - x0, y1 - y0], 0, 1))] if len(poly) else []


def polygon_points_line(cid: int, points: np.ndarray, width: int, height: int) -> list[str]:
    """The polygon line of a pixel polygon inside the image."""
    return [points_line(cid, points / [width, height])]


def polygon_truth(
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
    """One brush result per polygon of the item's label file (one region per object)."""
    from converters.predictions import mask_to_brush_result
    from converters.regions import rasterize

    results = []
    for line in layout.label(split, stem).read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        pts = np.array([float(v) for v in parts[1:]]).reshape(-1, 2) * [w, h]
        if len(pts) < 3:
            continue
        mask = rasterize([(pts, 1)], h, w) > 0
        if mask.any():
            results.append(mask_to_brush_result(mask, classes[int(parts[0])], 1.0, from_name, to_name))
    return results


SPEC = DatasetSpec(
    kind="yolo-segment",
    regions=partial(LineReader, lines=region_lines),
    yolo=True,
    tiler=LineTiler(values=lambda n: n >= 6 and n % 2 == 0, cut=cut_polygon),
    polygons=PolygonLines(polygon_points_line),
    truth=polygon_truth,
    truth_tag="BrushLabels",
    replays="segment",
)
