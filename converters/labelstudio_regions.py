"""One annotation's results → what a dataset item needs: YOLO lines, a class-index mask, or a class.

Rules: a rectangle's ``rotation`` is honoured (its axis-aligned bounding box for detect, its corners for
OBB); a polygon gives its bounding box (detect), its minimum-area rectangle (OBB), normalised points
(yolo-segment) or filled pixels (masks); a brush gives its contours (yolo-segment) or pixels (masks).
Coordinates outside the image are clipped (a warning; an oriented box's corners too, so that every
written coordinate lies in [0, 1]); a region with a label not in the config, a zero-area box, a bad RLE,
or numbers that are missing, not numbers or not finite (NaN, infinity, too large for a float) is skipped
with the reason — a ``nan`` is never written, and never reported as "clipped"; when an annotation had
regions and none was usable the whole item is skipped (an empty label file would teach "background").
Anything else wrong with one region (a label that is a list, a ``from_name`` that is not a string...)
skips that region with the reason, never the batch. For masks, overlapping regions take the class of
the later region.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from converters.dataset import MIN_EXTENT, LabelValueError, box_line, format_line, points_line
from converters.regions import (
    LabelConfig,
    RegionError,
    brush_mask,
    image_size_of,
    number,
    polygon_points,
    rasterize,
    rect_corners,
    short,
)
from converters.report import ConversionReport

logger = logging.getLogger(__name__)

KIND_TYPES = {
    "detect": ("rectanglelabels", "polygonlabels"),
    "obb": ("rectanglelabels", "polygonlabels"),
    "yolo-segment": ("polygonlabels", "brushlabels"),
    "segment": ("polygonlabels", "brushlabels"),
    "classify": ("choices",),
}


@dataclass
class ItemLabels:
    lines: list[str] = field(default_factory=list)
    mask: np.ndarray | None = None
    binary: dict[str, np.ndarray] = field(default_factory=dict)
    instances: np.ndarray | None = None
    """segment: (H, W) uint16, one id per region (a polygon or a brush stroke), later regions on top."""
    cls: str | None = None
    regions: int = 0


def _size(result: dict, size: tuple[int, int] | None) -> tuple[int, int]:
    s = image_size_of(result) or size
    if s is None:
        raise RegionError("no original_width/original_height in the result and no image to measure")
    return s


def _detect_line(rtype: str, value: dict, result: dict, cid: int, size, obb: bool, warn) -> str:
    if rtype == "rectanglelabels" and not obb and not value.get("rotation"):
        # unrotated: straight from percent (no image size needed), as label_studio_sdk computes it
        x, y, w, h = (number(value, k) for k in ("x", "y", "width", "height"))
        if not (w >= MIN_PERCENT and h >= MIN_PERCENT):
            raise RegionError(f"zero-area rectangle ({w:.3g}% x {h:.3g}%)")
        if x >= 0 and y >= 0 and x + w <= 100 and y + h <= 100:
            return f"{cid} {(x + w / 2) / 100:.6f} {(y + h / 2) / 100:.6f} {w / 100:.6f} {h / 100:.6f}"
        x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, 100.0), min(y + h, 100.0)
        if not (x1 - x0 >= MIN_PERCENT and y1 - y0 >= MIN_PERCENT):
            raise RegionError("rectangle lies outside the image")
        warn("rectangle clipped to the image")
        return format_line(cid, ((x0 + x1) / 200, (y0 + y1) / 200, (x1 - x0) / 100, (y1 - y0) / 100))
    W, H = _size(result, size)
    if rtype == "rectanglelabels":
        corners = rect_corners(value, W, H)
    else:
        corners = polygon_points(value, W, H)
        if obb:
            import cv2

            from converters.tiling import clip_polygon

            inside = clip_polygon(corners, (0, 0, W, H))  # bounded before cv2's float32
            if len(inside) < 3:
                raise RegionError("polygon lies outside the image")
            corners = cv2.boxPoints(cv2.minAreaRect(inside.astype(np.float32))).astype(np.float64)
    if obb:
        clipped = np.clip(corners, 0, [W, H])
        if _area(clipped) <= 0:
            raise RegionError("oriented box lies outside the image or has zero area")
        if np.abs(clipped - corners).max() > 1e-6:
            warn("oriented box clipped to the image")
        return points_line(cid, clipped / [W, H])
    box = np.concatenate([corners.min(0), corners.max(0)])
    clipped = np.clip(box, 0, [W, H, W, H])
    if clipped[2] - clipped[0] <= 0 or clipped[3] - clipped[1] <= 0:
        raise RegionError("box lies outside the image or has zero area")
    if np.abs(clipped - box).max() > 1e-9:
        warn("box clipped to the image")
    x0, y0, x1, y1 = clipped
    return box_line(cid, x0, y0, x1, y1, W, H)


def _area(points: np.ndarray) -> float:
    """The (absolute) area of a polygon (K, 2), by the shoelace formula."""
    x, y = points[:, 0], points[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2


class _Region:
    """A region's name ('task 3 (annotation 5) region abc', built only when printed) and its warnings."""

    __slots__ = ("report", "where", "rid")

    def __init__(self, report: ConversionReport, where: str, rid) -> None:
        self.report, self.where, self.rid = report, where, rid

    def __str__(self) -> str:
        return f"{self.where} region {self.rid}"

    def __call__(self, msg: str) -> None:
        self.report.warn(str(self), msg)


def _segment_lines(rtype: str, value: dict, result: dict, cid: int, size, warn) -> list[str]:
    if rtype == "polygonlabels":
        W, H = image_size_of(result) or size or (100, 100)  # percent points need no size
        pts = polygon_points(value, W, H) / [W, H]
        if pts.min() < 0 or pts.max() > 1:
            pts = np.clip(pts, 0, 1)
            if _area(pts) <= 0:
                raise RegionError("polygon lies outside the image")
            warn("polygon vertices clipped to the image")
        elif _area(pts) <= 0:
            raise RegionError("zero-area polygon (its points are on one line)")
        return [points_line(cid, pts)]
    from converters.predictions import mask_to_polygons

    W, H = _size(result, size)
    polys = mask_to_polygons(brush_mask(value, W, H), min_area=1.0, tolerance=0.5)
    if not polys:
        raise RegionError("brush region is empty")
    return [points_line(cid, np.clip(p / [W, H], 0, 1)) for p in polys]


_NUMBER = (float, int)
MIN_PERCENT = MIN_EXTENT * 100
"""The smallest rectangle side (percent of the image) written: 1e-6 of the image, what 6 decimals say."""


def _plain_rectangles(results: list, accepted, index: dict[str, int]) -> list[str] | None:
    """The common case, fast: only unrotated, valid, single-label rectangles inside the image.

    Returns None as soon as a result is anything else; the general path then converts the annotation
    (same output for these rectangles, plus the checks and messages for the rest).
    """
    lines = []
    for r in results:
        if type(r) is not dict or r.get("type") != "rectanglelabels":
            return None
        if accepted is not None:
            from_name = r.get("from_name")
            if type(from_name) is not str or (from_name, "rectanglelabels") not in accepted:
                return None
        v = r.get("value")
        if type(v) is not dict or v.get("rotation"):
            return None
        labels = v.get("rectanglelabels")
        if type(labels) is not list or len(labels) != 1 or type(labels[0]) is not str:
            return None
        cid = index.get(labels[0])
        x, y, w, h = v.get("x"), v.get("y"), v.get("width"), v.get("height")
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
    return lines


def convert_regions(
    results: list[dict],
    kind: str,
    config: LabelConfig,
    classes: list[str],
    size: tuple[int, int] | None,
    where: str,
    report: ConversionReport,
) -> ItemLabels | None:
    """Convert one annotation's results; None when the item must be skipped (recorded in ``report``)."""
    types = KIND_TYPES[kind]
    index = {c: i for i, c in enumerate(classes)}
    accepted = config.accepted_pairs()
    if kind == "detect":
        lines = _plain_rectangles(results, accepted, index)
        if lines is not None:
            return ItemLabels(lines=lines, regions=len(lines))
    out = ItemLabels()
    attempted = 0
    shapes: list[tuple[str, object, int]] = []  # segment: (type, geometry, class index)
    mask_size = size
    for n, r in enumerate(results):
        if type(r) is not dict:
            report.skip(f"{where} result #{n}", f"not a JSON object (a {type(r).__name__})")
            attempted += 1
            continue
        rtype = r.get("type")
        if rtype not in types:
            rtype = str(rtype).lower()
            if rtype not in types:
                continue
        attempted += 1
        rid = warn = _Region(report, where, r.get("id", n))
        try:
            mask_size = _convert_region(r, rtype, kind, config, index, size, mask_size, out, shapes, warn)
        except (RegionError, LabelValueError) as exc:
            report.skip(rid, str(exc))
        except (ValueError, TypeError, ArithmeticError, LookupError, MemoryError) as exc:
            logger.debug("region %s", rid, exc_info=True)
            report.skip(rid, f"cannot be converted ({type(exc).__name__}: {exc})")
    if kind == "classify" and out.cls is None:
        report.skip(where, "no choice for classification" if not attempted else "no usable choice")
        return None
    if attempted and not out.regions:
        report.skip(where, f"none of its {attempted} regions could be converted")
        return None
    if kind == "segment":
        if mask_size is None:
            report.skip(where, "no regions and no image to size an empty mask")
            return None
        W, H = mask_size
        out.mask = _paint(shapes, H, W)
        out.instances = _instances(shapes, H, W)
        for i, c in enumerate(classes):
            out.binary[c] = _class_mask(shapes, i, H, W)
    return out


def _convert_region(
    r: dict, rtype: str, kind: str, config: LabelConfig, index: dict[str, int], size, mask_size,
    out: ItemLabels, shapes: list, warn: _Region,
) -> tuple[int, int] | None:  # fmt: skip
    """Convert one region into ``out`` (or ``shapes``); returns the mask size so far. Raises RegionError."""
    accepted = config.accepted_pairs()
    from_name = r.get("from_name", "")
    if accepted is not None and (not isinstance(from_name, str) or (from_name, rtype) not in accepted):
        raise RegionError(f"{short(from_name)} is not a {rtype} tag of the label config")
    value = r.get("value")
    if not isinstance(value, dict):
        raise RegionError("result without a value")
    labels = value.get(rtype) or []
    if not isinstance(labels, list) or not labels:
        raise RegionError(f"no {rtype} label")
    for label in labels:
        if not isinstance(label, str):
            raise RegionError(f"label {short(label)} is not a string")
    if kind == "classify":
        if len(labels) != 1:
            raise RegionError(f"{len(labels)} choices; a classification item needs exactly one")
        if labels[0] not in index:
            raise RegionError(config.why_not_a_class(labels[0], kind))
        if out.cls is not None and out.cls != labels[0]:
            raise RegionError(f"a second choice '{labels[0]}' (already '{out.cls}')")
        out.cls = labels[0]
        out.regions += 1
        return mask_size
    for label in labels:
        if label not in index:
            raise RegionError(config.why_not_a_class(label, kind))
    lines: list[str] = []  # added (like new_shapes) only when every label of the region converted
    new_shapes: list[tuple[str, object, int]] = []
    for label in labels:
        cid = index[label]
        if kind in ("detect", "obb"):
            lines.append(_detect_line(rtype, value, r, cid, size, kind == "obb", warn))
        elif kind == "yolo-segment":
            lines.extend(_segment_lines(rtype, value, r, cid, size, warn))
        else:
            W, H = _size(r, size)
            if mask_size is not None and (W, H) != tuple(mask_size):
                raise RegionError(f"drawn on a {W}x{H} image, but the image is {mask_size[0]}x{mask_size[1]}")
            mask_size = (W, H)
            geom = brush_mask(value, W, H) if rtype == "brushlabels" else polygon_points(value, W, H)
            if rtype == "polygonlabels" and (geom.min() < 0 or (geom > [W, H]).any()):
                warn("polygon vertices clipped to the image")
                geom = np.clip(geom, 0, [W, H])
            new_shapes.append((rtype, geom, cid))
    out.lines.extend(lines)
    shapes.extend(new_shapes)
    out.regions += len(labels)
    return mask_size


def _paint(shapes, H: int, W: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    batch: list = []
    for rtype, geom, cid in shapes:
        if rtype == "polygonlabels":
            batch.append((geom, cid + 1))
            continue
        if batch:
            layer = rasterize(batch, H, W)
            mask = np.where(layer > 0, layer, mask)
            batch = []
        mask[geom] = cid + 1
    if batch:
        layer = rasterize(batch, H, W)
        mask = np.where(layer > 0, layer, mask)
    return mask


def _instances(shapes, H: int, W: int) -> np.ndarray:
    """One id per region (1..N in order; later regions on top), drawn as :func:`_paint` draws the mask."""
    from converters.regions import polygon_window

    inst = np.zeros((H, W), np.uint16)
    for k, (rtype, geom, _) in enumerate(shapes[:65535], 1):
        if rtype == "polygonlabels":
            win = polygon_window(geom, H, W)
            if win is not None:
                rows, cols, inside = win
                inst[rows, cols][inside] = k
        else:
            inst[geom] = k
    return inst


def _class_mask(shapes, cid: int, H: int, W: int) -> np.ndarray:
    polys = [(g, 1) for t, g, c in shapes if c == cid and t == "polygonlabels"]
    mask = rasterize(polys, H, W).astype(bool) if polys else np.zeros((H, W), bool)
    for t, g, c in shapes:
        if c == cid and t == "brushlabels":
            mask |= g
    return mask
