"""``obb``: YOLO oriented boxes, one ``<class> <x1> <y1> ... <x4> <y4>`` line (normalised) per object.

A rectangle gives its four corners (its rotation honoured), a polygon its minimum-area rectangle; the
corners are clipped to the image (a warning) so that every written coordinate lies in [0, 1]. Nothing
else makes oriented boxes: an ``obb`` dataset is not tiled, and has no ground truth to replay of its own
(its boxes are read as polygons).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from converters.dataset import points_line
from converters.kinds import DatasetSpec
from converters.kinds.yolo_segment import polygon_truth
from converters.labelstudio_regions import LineReader, drawn_size, polygon_area
from converters.regions import RegionError, polygon_points, rect_corners
from converters.tiling import clip_polygon
from kernel.tags import TAGS

RECTANGLE = TAGS["RectangleLabels"].result_type


def region_lines(
    rtype: str, value: dict, result: dict, cid: int, size: tuple[int, int] | None, warn: Callable[[str], None]
) -> list[str]:
    """The oriented-box line of a rectangle or polygon region for class ``cid``."""
    W, H = drawn_size(result, size)
    if rtype == RECTANGLE:
        corners = rect_corners(value, W, H)
    else:
        import cv2

        inside = clip_polygon(polygon_points(value, W, H), (0, 0, W, H))  # bounded before cv2's float32
        if len(inside) < 3:
            raise RegionError("polygon lies outside the image")
        corners = cv2.boxPoints(cv2.minAreaRect(inside.astype(np.float32))).astype(np.float64)
    clipped = np.clip(corners, 0, [W, H])
    if polygon_area(clipped) <= 0:
        raise RegionError("oriented box lies outside the image or has zero area")
    if np.abs(clipped - corners).max() > 1e-6:
        warn("oriented box clipped to the image")
    return [points_line(cid, clipped / [W, H])]


SPEC = DatasetSpec(
    kind="obb",
    regions=partial(LineReader, lines=region_lines),
    yolo=True,
    truth=polygon_truth,
    truth_tag="BrushLabels",
)
