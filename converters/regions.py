"""Label Studio results → pixel geometry.

Label Studio stores a rectangle as its top-left corner, width and height in percent of the image, rotated
by ``rotation`` degrees (clockwise on screen) about that corner; polygons as points in percent; brushes as
RLE of the RGBA mask (:mod:`converters.rle`). These functions turn them into pixels, checking each one;
a bad region raises :class:`RegionError` with the reason (the caller names the task).

>>> v = {"x": 10, "y": 20, "width": 30, "height": 40, "rotation": 0}
>>> rect_corners(v, 200, 100).tolist()
[[20.0, 20.0], [80.0, 20.0], [80.0, 60.0], [20.0, 60.0]]
"""

from __future__ import annotations

import math

import numpy as np

from converters.rle import rle_to_mask

MAX_IMAGE_PIXELS = 16384 * 16384
MAX_POLYGON_VERTICES = 10_000
"""A polygon with more vertices is refused: hand-drawn outlines have far fewer, and a million-vertex
polygon would be an 18 MB label line (and a slow rasterisation) for no gain."""
"""The largest image (width x height) a result may say it was drawn on (``converters.images``' default)."""


class RegionError(ValueError):
    """A result that cannot be converted; the message says why."""


def finite_number(value: object) -> float | None:
    """``value`` as a float when it is a real, finite number (not a bool, not a string), else None.

    >>> finite_number(3), finite_number(2.5), finite_number(float("nan")), finite_number(10**400)
    (3.0, 2.5, None, None)
    >>> finite_number(True), finite_number("1")
    (None, None)
    """
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def short(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters (for messages about arbitrary input)."""
    try:
        text = repr(value)
    except Exception:  # e.g. an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def image_size_of(result: dict) -> tuple[int, int] | None:
    """The (width, height) a result was drawn on; None when absent. ``RegionError`` when it is there but
    not a usable size (not finite, under 1 px, or more than :data:`MAX_IMAGE_PIXELS`)."""
    w, h = result.get("original_width"), result.get("original_height")
    if w is None or h is None:
        return None
    fw, fh = finite_number(w), finite_number(h)
    if fw is None or fh is None or fw < 1 or fh < 1 or fw * fh > MAX_IMAGE_PIXELS:
        raise RegionError(f"original_width/original_height {short(w)} x {short(h)} is not an image size")
    return int(fw), int(fh)


def number(value: dict, key: str) -> float:
    """``value[key]`` as a finite float; ``RegionError`` naming the key when it is missing or not one."""
    v = value.get(key)
    f = finite_number(v)
    if f is None:
        what = "missing" if v is None else "not a finite number"
        raise RegionError(f"'{key}' is {what} ({short(v)})")
    return f


def rotation_of(value: dict) -> float:
    """A rectangle's ``rotation`` in degrees (0 when absent); ``RegionError`` when it is not a finite number."""
    r = value.get("rotation")
    return 0.0 if r is None else number(value, "rotation")


def rect_corners(value: dict, width: float, height: float) -> np.ndarray:
    """The 4 corners (4, 2) in pixels, in Label Studio's order: top-left, top-right, bottom-right, bottom-left."""
    x, y = number(value, "x") / 100 * width, number(value, "y") / 100 * height
    w, h = number(value, "width") / 100 * width, number(value, "height") / 100 * height
    if w <= 0 or h <= 0:
        raise RegionError(f"zero-area rectangle ({w:.3g}x{h:.3g} px)")
    r = math.radians(rotation_of(value))
    c, s = math.cos(r), math.sin(r)
    with np.errstate(over="ignore", invalid="ignore"):
        corners = np.array(
            [[x, y], [x + w * c, y + w * s], [x + w * c - h * s, y + w * s + h * c], [x - h * s, y + h * c]]
        )
    if not np.isfinite(corners).all():
        raise RegionError("rectangle coordinates are too large to be finite in pixels")
    return corners


def rect_xyxy(value: dict, width: float, height: float) -> np.ndarray:
    """The axis-aligned box (x0, y0, x1, y1) in pixels of a (possibly rotated) rectangle."""
    pts = rect_corners(value, width, height)
    return np.concatenate([pts.min(0), pts.max(0)])


def polygon_points(value: dict, width: float, height: float) -> np.ndarray:
    """Polygon vertices (K, 2) in pixels, of a polygon every target can use.

    One rule for every converter target (boxes, oriented boxes, YOLO polygons, masks, slides): a polygon
    whose points lie on one line (or on one point) has no area and is refused; one whose extent does not
    overlap the image is refused; a self-crossing polygon is kept (its outline encloses area). Vertices
    outside the image are the caller's to clip, with a warning."""
    pts = value.get("points")
    if isinstance(pts, list) and len(pts) > MAX_POLYGON_VERTICES:
        raise RegionError(too_many_vertices(len(pts)))
    try:
        arr = np.asarray(pts, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise RegionError("polygon points are not finite numbers") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 3:
        raise RegionError(f"a polygon needs at least 3 (x, y) points, got {np.shape(pts)}")
    if not np.isfinite(arr).all():
        raise RegionError("polygon points are not finite numbers")
    with np.errstate(over="ignore"):
        px = arr / 100 * np.array([width, height])
    if not np.isfinite(px).all():
        raise RegionError("polygon points are not finite numbers (too large)")
    if not has_area(px):
        raise RegionError("zero-area polygon (its points are on one line)")
    low, high = px.min(0), px.max(0)
    if low[0] >= width or low[1] >= height or high[0] <= 0 or high[1] <= 0:
        raise RegionError("polygon lies outside the image")
    return px


def has_area(points: np.ndarray) -> bool:
    """Whether polygon vertices (K, 2) span an area: not all on one line or one point (a self-crossing
    outline, whose signed areas may cancel, spans one).

    >>> has_area(np.array([[0, 0], [1, 1], [2, 2.0]])), has_area(np.array([[0, 0], [2, 0], [0, 2], [2, 2.0]]))
    (False, True)
    """
    centred = np.asarray(points, np.float64) - np.mean(points, axis=0)
    scale = float(np.abs(centred).max())
    if scale == 0:
        return False
    return bool(np.linalg.svd(centred / scale, compute_uv=False)[-1] > 1e-9)


def too_many_vertices(n: int) -> str:
    return f"a polygon of {n} vertices, more than the limit of {MAX_POLYGON_VERTICES}"


def clip_xyxy(box: np.ndarray, width: float, height: float) -> tuple[np.ndarray, bool]:
    """Clip a box to the image; returns (box, whether it was changed). Raises when nothing remains."""
    clipped = np.clip(box, 0, [width, height, width, height])
    if clipped[2] - clipped[0] <= 0 or clipped[3] - clipped[1] <= 0:
        raise RegionError("box lies outside the image or has zero area")
    return clipped, bool(np.any(np.abs(clipped - box) > 1e-9))


def brush_mask(value: dict, width: int, height: int) -> np.ndarray:
    """A brush region as a bool (H, W) mask."""
    if value.get("format", "rle") != "rle" or "rle" not in value:
        raise RegionError("brush region without RLE")
    try:
        return rle_to_mask(value["rle"], height, width) > 0
    except ValueError as exc:
        raise RegionError(f"bad RLE: {exc}") from None


def polygon_window(points_px: np.ndarray, height: int, width: int) -> tuple[slice, slice, np.ndarray] | None:
    """Which pixels a polygon covers: (rows, cols, bool mask of that window), or None when it covers none.

    A pixel counts when its centre lies inside the polygon, so the pixel count matches the polygon's
    area (MoNuSeg's ``Area`` within about 1 %); vertices outside the image are effectively clipped.
    """
    from matplotlib.path import Path as MplPath

    pts = np.asarray(points_px, dtype=np.float64)
    x0, y0 = np.maximum(np.floor(pts.min(0)).astype(int), 0)
    x1 = min(int(np.ceil(pts[:, 0].max())), int(width))
    y1 = min(int(np.ceil(pts[:, 1].max())), int(height))
    if x1 <= x0 or y1 <= y0:
        return None
    path = MplPath(pts)
    inside = np.empty((y1 - y0, x1 - x0), bool)
    xs = np.arange(x0, x1) + 0.5
    step = max(1, (1 << 20) // (x1 - x0))  # rows per block: bounded memory for image-sized polygons
    for r0 in range(y0, y1, step):
        r1 = min(r0 + step, y1)
        centres = np.column_stack([np.tile(xs, r1 - r0), np.repeat(np.arange(r0, r1) + 0.5, x1 - x0)])
        inside[r0 - y0 : r1 - y0] = path.contains_points(centres).reshape(r1 - r0, x1 - x0)
    return slice(y0, y1), slice(x0, x1), inside


def rasterize(polygons: list[tuple[np.ndarray, int]], height: int, width: int) -> np.ndarray:
    """Paint (pixel vertices, value) polygons in order into a (H, W) uint8 mask; later ones on top."""
    mask = np.zeros((int(height), int(width)), np.uint8)
    for pts, value in polygons:
        win = polygon_window(pts, height, width)
        if win is not None:
            rows, cols, inside = win
            mask[rows, cols][inside] = value
    return mask
