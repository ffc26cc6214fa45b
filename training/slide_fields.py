"""What a model makes of the fields of a whole slide, per output type, and how it is drawn: the
:class:`SlideSpec` a kind's row names (:attr:`training.base.KindSpec.slide`) and
:func:`training.slides.predict_slide` follows.

- :data:`REGION_FIELDS` (segmentation maps): fields of ``4 × input_size`` px on a grid that overlaps by a
  quarter of the model input; each field keeps only the regions in its own core (:meth:`FieldRun.core`),
  so every slide pixel is decided by one field, and regions that cross cores are joined
  (:func:`converters.geojson.union_features`). Drawn filled at 40 % with their outline.
- :data:`BOX_FIELDS` (detections): the same grid; a box belongs to the field that holds its centre. Drawn
  outlined.
- :data:`CLASS_TILES` (class scores): one field per model input (``card.extra["field_size"]`` when set),
  not overlapping, predicted :data:`CLASSIFY_BATCH` at a time; each field is a tile with the class
  probabilities, drawn as a heat map of the last class, and a heat map image of its own.

Every result is limited to the slide's tissue (:class:`converters.slides.TissueMap`: no glass, no pen ink):
regions are cut to it, boxes and tiles kept when at least half of them is tissue (:attr:`SlideSpec.on_tissue`).

>>> from training.artifacts import ModelCard
>>> card = ModelCard(kind="segment", classes=["tumor"], arch={}, input_size=256)
>>> REGION_FIELDS.grid(card, None), CLASS_TILES.grid(card, None), BOX_FIELDS.grid(card, 512)
((1024, 64), (256, 0), (512, 64))
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converters.geojson import (
    box_geometry,
    class_color,
    feature,
    mask_polygons,
    polygon_geometry,
    shapely_of,
    union_features,
)
from converters.slides import Field, Slide, TissueMap
from training.artifacts import ModelCard

CLASSIFY_BATCH = 16
MIN_REGION_PX = 16
"""Regions smaller than this (field pixels) are dropped before they are traced."""

Heat = list[tuple[Field, np.ndarray]]
"""Per field, the class probabilities (fields predicted as tiles of :data:`CLASS_TILES`)."""
Stream = Iterable[tuple[Field, np.ndarray]]
"""The fields of a slide as they are read, with their pixels."""
Found = tuple[list[dict[str, Any]], Heat]
"""The features (GeoJSON, slide coordinates) of the fields read, and their :data:`Heat` (empty when none)."""


@dataclass
class FieldRun:
    """One slide's prediction as a :class:`SlideSpec` sees it: the loaded predictor, the fields of the
    grid, the thresholds, where the model's time and the progress go."""

    predictor: Any
    card: ModelCard
    fields: Sequence[Field]
    overlap: int
    threshold: float
    min_score: float
    timing: dict[str, float]
    progress: Callable[[int, int], None] | None = None
    _xs: dict[int, int] = field(init=False, repr=False)
    _ys: dict[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._xs = {x: i for i, x in enumerate(sorted({f.x for f in self.fields}))}
        self._ys = {y: i for i, y in enumerate(sorted({f.y for f in self.fields}))}

    def core(self, f: Field) -> tuple[int, int, int, int]:
        """The part of field ``f`` (field px: c0, r0, c1, r1) it decides: half the overlap in from each side
        that has a neighbour in the grid, plus one pixel so pieces of a region cut there overlap and join."""
        overlap = self.overlap
        lo, hi = overlap // 2, f.size - (overlap - overlap // 2)
        i, j = self._xs[f.x], self._ys[f.y]
        c0 = 0 if i == 0 else max(0, lo - 1)
        r0 = 0 if j == 0 else max(0, lo - 1)
        c1 = f.size if i == max(self._xs.values()) else min(f.size, hi + 1)
        r1 = f.size if j == max(self._ys.values()) else min(f.size, hi + 1)
        return c0, r0, c1, r1

    def report(self, done: int) -> None:
        if self.progress:
            self.progress(done, len(self.fields))


Drawer = Callable[[np.ndarray, np.ndarray, list[np.ndarray], dict[str, Any], ModelCard], None]


@dataclass(frozen=True)
class SlideSpec:
    """How one kind's model goes over a slide (see the module docstring)."""

    grid: Callable[[ModelCard, int | None], tuple[int, int]]
    """(field size, overlap) in field px for a card; the first is the ``field_size`` asked for when one is."""
    predict: Callable[[FieldRun, Stream], Found]
    """What the model finds in the fields read."""
    draw: Drawer
    """Draws one feature's rings (thumbnail px) on the thumbnail (outlines) or on the layer blended into it."""
    on_tissue: Callable[[list[dict[str, Any]], TissueMap], list[dict[str, Any]]]
    """What of the features (slide coordinates) is kept on the slide's tissue: regions cut to it
    (:func:`cut_to_tissue`), boxes and tiles kept when at least half of them is tissue
    (:func:`half_on_tissue`)."""
    blend: bool = True
    """Whether the layer is blended into the thumbnail at 40 % (nothing is drawn on it otherwise)."""
    heatmap: Callable[[Heat, Slide], np.ndarray] | None = None
    """The heat map image of the fields' probabilities written beside the overlay, when the kind has one."""


# -- on tissue --------------------------------------------------------------------------------------------
ON_TISSUE = 0.5
"""A box or a classified tile is kept when at least this fraction of it is tissue."""


def cut_to_tissue(features: list[dict[str, Any]], tissue: TissueMap) -> list[dict[str, Any]]:
    """Each region cut to the tissue (pen ink and glass are not); regions left with no area dropped."""
    from shapely import MultiPolygon
    from shapely.geometry import mapping

    out = []
    for f in features:
        shape = shapely_of(f)
        cut = tissue.clip(shape)
        if cut is shape:
            out.append(f)
            continue
        parts = [p for p in getattr(cut, "geoms", [cut]) if p.geom_type == "Polygon" and p.area > 0]
        if parts:
            geom = parts[0] if len(parts) == 1 else MultiPolygon(parts)
            out.append({**f, "geometry": _plain(mapping(geom))})
    return out


def half_on_tissue(features: list[dict[str, Any]], tissue: TissueMap) -> list[dict[str, Any]]:
    """The boxes or tiles of which at least :data:`ON_TISSUE` is tissue (by their bounding rectangles)."""
    return [f for f in features if tissue.fraction(*shapely_of(f).bounds) >= ON_TISSUE]


def _plain(value: Any) -> Any:
    """shapely's ``mapping`` (tuples) as JSON's lists and floats."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


# -- the grids ----------------------------------------------------------------------------------------
def tiled_grid(card: ModelCard, field_size: int | None) -> tuple[int, int]:
    """Fields of four model inputs, overlapping by a quarter of one (predicted by tiles with overlap)."""
    return field_size or 4 * card.input_size, max(0, card.input_size // 4)


def tile_grid(card: ModelCard, field_size: int | None) -> tuple[int, int]:
    """One field per model input (or ``card.extra["field_size"]``), not overlapping."""
    return field_size or int(card.extra.get("field_size") or card.input_size), 0


# -- the predictions ----------------------------------------------------------------------------------
def _each_field(
    run: FieldRun,
    stream: Stream,
    features_of: Callable[[Any, Field, tuple[int, int, int, int]], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for done, (f, img) in enumerate(stream, 1):
        t = time.perf_counter()
        core = run.core(f)
        out += features_of(run.predictor.predict(img), f, core)
        run.timing["model"] += time.perf_counter() - t
        run.report(done)
    return out


def field_regions(run: FieldRun, stream: Stream) -> Found:
    """Each field's segmentation map traced in its core, the pieces joined across cores."""
    pieces = _each_field(
        run, stream, lambda seg, f, core: _region_features(seg, f, core, run.threshold, run.min_score)
    )
    return (union_features(pieces, object_type="detection") if pieces else []), []


def field_boxes(run: FieldRun, stream: Stream) -> Found:
    """Each field's detections whose centre is in its core."""
    return _each_field(run, stream, lambda det, f, core: _box_features(det, f, core, run.min_score)), []


def tile_scores(run: FieldRun, stream: Stream) -> Found:
    """The fields' class probabilities, :data:`CLASSIFY_BATCH` fields per call; one tile feature each."""
    heat: Heat = []
    batch: list[tuple[Field, np.ndarray]] = []
    done = 0
    for f, img in stream:
        batch.append((f, img))
        if len(batch) == CLASSIFY_BATCH:
            heat += _classify(run.predictor, batch, run.timing)
            done += len(batch)
            batch = []
            run.report(done)
    if batch:
        heat += _classify(run.predictor, batch, run.timing)
        run.report(len(run.fields))
    return [_field_feature(f, p, run.card.classes) for f, p in heat], heat


def _region_features(seg: Any, f: Field, core, threshold: float, min_score: float) -> list[dict[str, Any]]:
    import cv2

    c0, r0, c1, r1 = core
    masks = seg.masks(threshold)
    out = []
    for k, name in enumerate(seg.classes):
        m = masks[k, r0:r1, c0:c1]
        if not m.any():
            continue
        probs = seg.probs[k, r0:r1, c0:c1]
        n, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
        mean = np.bincount(labels.ravel(), probs.ravel(), n) / np.maximum(stats[:, cv2.CC_STAT_AREA], 1)
        # specks and low-score regions go before tracing: a noisy mask has tens of thousands of them
        keep = (stats[:, cv2.CC_STAT_AREA] >= MIN_REGION_PX) & (mean >= min_score)
        keep[0] = False
        m = keep[labels]
        if not m.any():
            continue
        for poly in mask_polygons(m, min_area=4.0, tolerance=0.5):
            p = poly.representative_point()
            score = float(mean[labels[min(int(p.y), m.shape[0] - 1), min(int(p.x), m.shape[1] - 1)]])
            if score < min_score:
                continue
            to_slide = lambda pts, c0=c0, r0=r0: f.to_slide(pts + np.array([c0, r0]))  # noqa: E731
            geom = polygon_geometry(poly, to_slide)
            out.append(
                feature(
                    geom,
                    name,
                    color=class_color(name, seg.classes),
                    object_type="detection",
                    measurements={"score": score},
                )
            )
    return out


def _box_features(det: Any, f: Field, core, min_score: float) -> list[dict[str, Any]]:
    c0, r0, c1, r1 = core
    out = []
    for box, score, label in zip(det.boxes, det.scores, det.labels, strict=True):
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if score < min_score or not (c0 <= cx < c1 and r0 <= cy < r1):
            continue
        (x0, y0), (x1, y1) = f.to_slide(np.array([[box[0], box[1]], [box[2], box[3]]]))
        name = det.classes[int(label)]
        out.append(
            feature(
                box_geometry(x0, y0, x1, y1),
                name,
                color=class_color(name, det.classes),
                object_type="detection",
                measurements={"score": float(score)},
            )
        )
    return out


def _classify(predictor: Any, batch: list[tuple[Field, np.ndarray]], timing: dict[str, float]) -> Heat:
    t = time.perf_counter()
    probs = [scores.probs for scores in predictor.predict_many([img for _, img in batch])]
    timing["model"] += time.perf_counter() - t
    return [(f, p) for (f, _), p in zip(batch, probs, strict=True)]


def _field_feature(f: Field, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    top = int(np.argmax(probs))
    x1, y1 = f.x + f.extent, f.y + f.extent
    return feature(
        box_geometry(f.x, f.y, x1, y1),
        classes[top],
        color=class_color(classes[top], classes),
        object_type="tile",
        measurements={
            "score": float(probs[top]),
            **{f"p({c})": float(p) for c, p in zip(classes, probs, strict=True)},
        },
    )


# -- the drawings -------------------------------------------------------------------------------------
def _color(props: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(c) for c in (props.get("classification") or {}).get("color", (255, 0, 0)))


def draw_outline(
    img: np.ndarray, layer: np.ndarray, pts: list[np.ndarray], props: dict[str, Any], card: ModelCard
) -> None:
    """The outer ring outlined on the thumbnail."""
    import cv2

    cv2.polylines(img, pts[:1], True, _color(props), 1)


def draw_region(
    img: np.ndarray, layer: np.ndarray, pts: list[np.ndarray], props: dict[str, Any], card: ModelCard
) -> None:
    """The region (with its holes) filled on the layer and outlined on the thumbnail."""
    import cv2

    color = _color(props)
    cv2.fillPoly(layer, pts, color)
    cv2.polylines(img, pts, True, color, 1)


def draw_heat(
    img: np.ndarray, layer: np.ndarray, pts: list[np.ndarray], props: dict[str, Any], card: ModelCard
) -> None:
    """The tile filled on the layer in the heat colour of its last class's probability."""
    import cv2

    alpha = float((props.get("measurements") or {}).get(f"p({card.classes[-1]})", 0.0))
    cv2.fillPoly(layer, pts[:1], heat_color(alpha))


def heat_color(p: float) -> tuple[int, int, int]:
    """The ``inferno`` colour of a probability."""
    from matplotlib import colormaps

    r, g, b, _ = colormaps["inferno"](float(np.clip(p, 0, 1)))
    return int(r * 255), int(g * 255), int(b * 255)


def heat_map(heat: Heat, slide: Slide, cell: int = 8) -> np.ndarray:
    """One cell per field of the slide's grid: the probability of the last class (e.g. ``malignant``);
    grey where there is no tissue."""
    if not heat:
        return np.full((cell, cell, 3), 128, np.uint8)
    extent = heat[0][0].extent
    W, H = slide.dimensions
    grid = np.full((max(1, math.ceil(H / extent)), max(1, math.ceil(W / extent)), 3), 128, np.uint8)
    for f, probs in heat:
        grid[round(f.y / extent), round(f.x / extent)] = heat_color(float(probs[-1]))
    return np.repeat(np.repeat(grid, cell, axis=0), cell, axis=1)


REGION_FIELDS = SlideSpec(grid=tiled_grid, predict=field_regions, draw=draw_region, on_tissue=cut_to_tissue)
BOX_FIELDS = SlideSpec(
    grid=tiled_grid, predict=field_boxes, draw=draw_outline, on_tissue=half_on_tissue, blend=False
)
CLASS_TILES = SlideSpec(
    grid=tile_grid, predict=tile_scores, draw=draw_heat, on_tissue=half_on_tissue, heatmap=heat_map
)
