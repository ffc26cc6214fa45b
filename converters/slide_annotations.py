"""Approved Label Studio annotations on slide fields → QuPath GeoJSON in slide coordinates.

A field task's data (written by ``histoloop slides import``) holds the field's position and resolution,
so a rectangle, polygon or brush drawn on the field lands on the same slide pixels (:class:`Field`), and a
choice becomes the field's square with that classification. Which annotation counts is the project's
approval rule (:func:`converters.labelstudio.select_annotations`). Results that cannot be placed (no
field data, bad numbers, a bad RLE) are reported with the task id and skipped.

>>> task = {"id": 7, "data": {"slide": "S1.svs", "slide_id": "ab", "x": 1000, "y": 2000, "size": 100,
...         "mpp": 0.5, "slide_mpp": 0.25}, "annotations": [{"id": 3, "result": [{"type": "rectanglelabels",
...         "original_width": 100, "original_height": 100, "value": {"x": 10, "y": 20, "width": 30,
...         "height": 40, "rectanglelabels": ["tumor"]}}]}]}
>>> by_slide, report = annotations_to_features([task])
>>> f = by_slide["S1.svs"][0]
>>> f["geometry"]["coordinates"][0][:3], f["properties"]["classification"]["name"], report.skipped
([[1020.0, 2040.0], [1080.0, 2040.0], [1080.0, 2120.0]], 'tumor', [])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from converters.geojson import box_geometry, feature, mask_polygons, polygon_geometry
from converters.labelstudio import select_annotations
from converters.regions import RegionError, brush_mask, image_size_of, polygon_points, rect_corners
from converters.report import ConversionReport
from converters.slides import Field
from kernel.tags import LABEL_KEYS


def field_of(data: dict[str, Any]) -> Field:
    """The :class:`Field` a task's data describes; ``RegionError`` when it is not a slide field."""
    try:
        return Field(
            x=int(data["x"]),
            y=int(data["y"]),
            size=int(data["size"]),
            mpp=float(data["mpp"]),
            slide_mpp=float(data["slide_mpp"]),
        )
    except (KeyError, TypeError, ValueError):
        raise RegionError("not a slide field (no x/y/size/mpp/slide_mpp in its data)") from None


def _label(value: dict[str, Any]) -> str | None:
    for key in LABEL_KEYS:
        labels = value.get(key)
        if isinstance(labels, list) and labels:
            return str(labels[0])
    return None


def result_features(result: dict[str, Any], f: Field, props: dict[str, Any]) -> list[dict[str, Any]]:
    """One Label Studio result on field ``f`` → features in slide coordinates (``RegionError`` if unusable)."""
    rtype, value = result.get("type"), result.get("value") or {}
    name = _label(value)
    if rtype == "choices":
        x1, y1 = f.x + f.extent, f.y + f.extent
        return [feature(box_geometry(f.x, f.y, x1, y1), name, object_type="annotation", properties=props)]
    w, h = image_size_of(result) or (f.size, f.size)
    if rtype == "rectanglelabels":
        pts = f.to_slide(rect_corners(value, w, h))
        ring = [[float(a), float(b)] for a, b in [*pts, pts[0]]]
        return [feature({"type": "Polygon", "coordinates": [ring]}, name, properties=props)]
    if rtype == "polygonlabels":
        pts = f.to_slide(polygon_points(value, w, h))
        ring = [[float(a), float(b)] for a, b in [*pts, pts[0]]]
        return [feature({"type": "Polygon", "coordinates": [ring]}, name, properties=props)]
    if rtype == "brushlabels":
        mask = brush_mask(value, w, h)
        return [feature(polygon_geometry(p, f.to_slide), name, properties=props) for p in mask_polygons(mask)]
    raise RegionError(f"result type {rtype!r} has no place on a slide")


def annotations_to_features(
    tasks: Iterable[dict[str, Any]], approval: str = "submitted", report: ConversionReport | None = None
) -> tuple[dict[str, list[dict[str, Any]]], ConversionReport]:
    """The approved annotations of slide-field tasks as GeoJSON features, grouped by slide file name."""
    report = report or ConversionReport()
    out: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        tid = task.get("id")
        data = task.get("data") or {}
        try:
            f = field_of(data)
        except RegionError as exc:
            report.skip(f"task {tid}", str(exc))
            continue
        slide = str(data.get("slide") or data.get("slide_id") or "slide")
        for ann in select_annotations(task, approval):
            props = {"task": tid, "annotation": ann.get("id"), "slide_id": data.get("slide_id")}
            found = 0
            for result in ann.get("result") or []:
                if not isinstance(result, dict):
                    continue
                try:
                    feats = result_features(result, f, props)
                except (RegionError, ValueError) as exc:
                    report.skip(f"task {tid} annotation {ann.get('id')}", str(exc))
                    continue
                out.setdefault(slide, []).extend(feats)
                found += len(feats)
            if found:
                report.add_converted(regions=found)
    return out, report
