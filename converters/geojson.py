"""QuPath-compatible GeoJSON: masks (polygons with their holes), boxes and whole fields as features in
slide coordinates (level-0 pixels), with a classification name and colour and measurements.

QuPath (0.3 and later: *File → Import objects*, or drag the file onto the viewer) reads a
``FeatureCollection`` whose features carry ``properties.objectType`` (``annotation`` for what people drew;
``detection`` for what a model found), ``properties.classification = {"name", "color": [r, g, b]}`` and
``properties.measurements = {name: number}`` (the model's score lands there).

Masks are traced with OpenCV (``RETR_CCOMP``: outer boundaries and the holes inside them, so a gland's
lumen stays a hole) and grown by half a pixel with shapely, so a polygon follows the pixel edges (its
area is the pixel count, give or take a quarter pixel at each diagonal step of the outline) and the pieces
of one region cut by field borders join (:func:`union_features`).

>>> m = np.zeros((40, 40), bool); m[5:35, 5:35] = True; m[15:25, 15:25] = False      # a ring
>>> [len(p.interiors) for p in mask_polygons(m)], mask_polygons(m)[0].area
([1], 801.0)
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
]
"""Colours for classes that do not name their own (Sasha Trubetskoy's distinct colours)."""
NAMED = {
    "tumor": (200, 0, 0),
    "tumour": (200, 0, 0),
    "malignant": (200, 0, 0),
    "benign": (0, 150, 0),
    "stroma": (150, 200, 150),
    "necrosis": (50, 50, 50),
    "lymphocyte": (0, 0, 180),
}


def class_color(name: str, classes: Sequence[str] | None = None) -> list[int]:
    """A stable RGB colour for a class: a conventional one for common names, else by its index or a hash.

    >>> class_color("Tumor"), class_color("gland", ["gland", "lumen"])
    ([200, 0, 0], [230, 25, 75])
    """
    if name.lower() in NAMED:
        return list(NAMED[name.lower()])
    if classes is not None and name in classes:
        return list(PALETTE[list(classes).index(name) % len(PALETTE)])
    return list(
        PALETTE[int(hashlib.md5(name.encode(), usedforsecurity=False).hexdigest(), 16) % len(PALETTE)]
    )


def feature(
    geometry: dict[str, Any],
    name: str | None,
    *,
    color: Sequence[int] | None = None,
    measurements: dict[str, float] | None = None,
    object_type: str = "annotation",
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One QuPath GeoJSON feature (``properties`` adds keys of your own, e.g. the Label Studio task id)."""
    props: dict[str, Any] = {"objectType": object_type}
    if name is not None:
        props["classification"] = {"name": name, "color": list(color or class_color(name))}
    if measurements:
        props["measurements"] = {k: float(v) for k, v in measurements.items()}
    props.update(properties or {})
    return {"type": "Feature", "id": str(uuid.uuid4()), "geometry": geometry, "properties": props}


def box_geometry(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    """A rectangle as a closed GeoJSON polygon."""
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Polygon", "coordinates": [[[float(a), float(b)] for a, b in ring]]}


def mask_polygons(mask: np.ndarray, min_area: float = 4.0, tolerance: float = 0.0) -> list[Any]:
    """The regions of a (H, W) mask as shapely polygons with holes, in pixel-edge coordinates
    (pixel ``(row, col)`` is the square ``[col, col+1] × [row, row+1]``); ``tolerance`` simplifies (px)."""
    import cv2

    m = (np.asarray(mask) > 0).astype(np.uint8)
    if not m.any():
        return []
    contours, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    hierarchy = hierarchy[0]
    out = []
    for i, c in enumerate(contours):
        if hierarchy[i][3] != -1:  # a hole: added to its parent below
            continue
        holes = []
        child = hierarchy[i][2]
        while child != -1:
            holes.append(contours[child])
            child = hierarchy[child][0]
        poly = _grow(_ring(c), [_ring(h) for h in holes])
        for part in getattr(poly, "geoms", [poly]):
            p = part.simplify(tolerance, preserve_topology=True) if tolerance > 0 else part
            if p.area >= min_area:
                out.append(p)
    return out


def _ring(contour: np.ndarray) -> np.ndarray:
    return contour.reshape(-1, 2).astype(np.float64) + 0.5  # pixel centres


def _grow(outer: np.ndarray, holes: list[np.ndarray]) -> Any:
    """Centre-line contours → the pixel-edge outline: the outer ring grown by half a pixel, holes shrunk."""
    from shapely.geometry import LineString, Point, Polygon

    def solid(ring: np.ndarray) -> Any:
        if len(ring) >= 3:
            p = Polygon(ring)
            if p.is_valid and p.area > 0:
                return p.buffer(0.5, join_style="mitre", mitre_limit=2.0)
            return p.buffer(0).union(LineString(ring).buffer(0.5, cap_style="square", join_style="mitre"))
        if len(ring) == 2:
            return LineString(ring).buffer(0.5, cap_style="square", join_style="mitre")
        return Point(ring[0]).buffer(0.5, cap_style="square")

    from shapely import unary_union

    shape = solid(outer)
    cut = []
    for h in holes:
        if len(h) >= 3:
            hole = Polygon(h)
            if hole.is_valid and hole.area > 0:
                # the hole's contour runs through the centres of the tissue pixels around it
                cut.append(hole.buffer(-0.5, join_style="mitre", mitre_limit=2.0))
    return shape.difference(unary_union(cut)) if cut else shape  # all holes at once: thousands stay fast


def polygon_geometry(
    polygon: Any, transform: Callable[[np.ndarray], np.ndarray] | None = None
) -> dict[str, Any]:
    """A shapely (Multi)Polygon → a GeoJSON geometry, points mapped through ``transform`` ((K, 2) → (K, 2))."""
    from shapely.geometry import mapping

    if transform is not None:
        from shapely import transform as shp_transform

        polygon = shp_transform(polygon, transform)
    geom = mapping(polygon.buffer(0) if not polygon.is_valid else polygon)
    return json.loads(json.dumps(geom))  # tuples → lists


def shapely_of(feature_: dict[str, Any]) -> Any:
    from shapely.geometry import shape

    return shape(feature_["geometry"])


def union_features(
    features: Iterable[dict[str, Any]], object_type: str = "detection"
) -> list[dict[str, Any]]:
    """Join the pieces of one region that field borders cut, per class (shapely's union); each connected
    result becomes one feature, with the area-weighted mean of the pieces' measurements."""
    from shapely import unary_union
    from shapely.geometry import mapping

    by_class: dict[str, list[dict[str, Any]]] = {}
    for f in features:
        by_class.setdefault((f["properties"].get("classification") or {}).get("name", ""), []).append(f)
    out = []
    for name, group in by_class.items():
        shapes = [shapely_of(f) for f in group]
        merged = unary_union(shapes)
        for part in getattr(merged, "geoms", [merged]):
            if part.is_empty or part.area <= 0:
                continue
            weights, sums = 0.0, {}
            for f, s in zip(group, shapes, strict=True):
                if not s.intersects(part):
                    continue
                w = s.area
                weights += w
                for k, v in (f["properties"].get("measurements") or {}).items():
                    sums[k] = sums.get(k, 0.0) + w * v
            color = (group[0]["properties"].get("classification") or {}).get("color")
            geom = json.loads(json.dumps(mapping(part)))
            out.append(
                feature(
                    geom,
                    name or None,
                    color=color,
                    object_type=object_type,
                    measurements={k: v / weights for k, v in sums.items()} if weights else None,
                )
            )
    return out


def clip_features(features: Iterable[dict[str, Any]], width: float, height: float) -> list[dict[str, Any]]:
    """The features cut to the slide's rectangle ``[0, width] × [0, height]`` (those left empty dropped)."""
    from shapely.geometry import box, mapping

    frame = box(0, 0, width, height)
    out = []
    for f in features:
        s = shapely_of(f)
        if frame.contains(s):
            out.append(f)
            continue
        cut = s.intersection(frame)
        if cut.is_empty or cut.area <= 0:
            continue
        out.append({**f, "geometry": json.loads(json.dumps(mapping(cut)))})
    return out


def feature_collection(features: Iterable[dict[str, Any]], **properties: Any) -> dict[str, Any]:
    fc: dict[str, Any] = {"type": "FeatureCollection", "features": list(features)}
    if properties:
        fc["properties"] = properties
    return fc


def write_geojson(path: str | Path, features: Iterable[dict[str, Any]], **properties: Any) -> Path:
    """Write a FeatureCollection (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(feature_collection(features, **properties)))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_geojson(path: str | Path) -> list[dict[str, Any]]:
    """The features of a GeoJSON file (a FeatureCollection, a list of features, or one feature)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable GeoJSON: {exc}") from exc
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        return list(data.get("features") or [])
    if isinstance(data, dict) and data.get("type") == "Feature":
        return [data]
    if isinstance(data, list):
        return data
    raise ValueError(f"{path}: neither a Feature nor a FeatureCollection")
