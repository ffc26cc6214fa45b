"""A model version over a whole slide: fields of the slide's tissue at the resolution the model was trained
at, predicted in batches of overlapping tiles, results in slide coordinates (QuPath GeoJSON), an overlay.

- **Resolution.** ``card.extra["mpp"]``, which the trainer records from the dataset when its items carry
  one (fields imported by ``histoloop slides import`` do; ``TrainConfig.extra["mpp"]`` sets it by hand),
  else :data:`DEFAULT_MODEL_MPP` (0.5 µm/px, 20×); ``mpp=`` overrides both.
- **Fields.** segment/detect: fields of ``4 × input_size`` px (``field_size=``) on a grid that overlaps by a
  quarter of the model input; each field is predicted by :mod:`training.inference` (tiles with overlap,
  batched, on the GPU when there is one) and keeps only its own core, so every slide pixel is decided by
  one field. Regions that cross cores are joined (:func:`converters.geojson.union_features`); a box
  belongs to the field that holds its centre. classify: one field per model input, not overlapping, in
  batches: each gets the class probabilities, drawn as a heat map.
- **Memory.** One field is read (on a background thread, while the model runs on the previous one) and
  dropped after its prediction; what is kept is the vector output. The slide is never held in memory.

>>> from training.artifacts import ModelCard
>>> model_mpp(ModelCard(kind="segment", classes=["tumor"], arch={}, input_size=256, extra={"mpp": 0.25}))
0.25
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.geojson import (
    box_geometry,
    class_color,
    clip_features,
    feature,
    mask_polygons,
    polygon_geometry,
    shapely_of,
    union_features,
    write_geojson,
)
from converters.slides import Field, Slide, open_slide, read_field, tissue_mask
from training.artifacts import ModelCard

DEFAULT_MODEL_MPP = 0.5
"""The resolution a model is taken to be trained at when its card records none (µm/px; 20×)."""
CLASSIFY_BATCH = 16
MIN_REGION_PX = 16
"""segment: regions smaller than this (field pixels) are dropped before they are traced."""
OVERLAY_MAX = 2048


def model_mpp(card: ModelCard, override: float | None = None) -> float:
    """The resolution (µm/px) fields are read at for this model (see the module docstring)."""
    return float(override or card.extra.get("mpp") or DEFAULT_MODEL_MPP)


@dataclass
class SlideResult:
    slide: str
    kind: str
    version: str
    mpp: float
    field_size: int
    fields: int
    features: int
    seconds: float
    read_seconds: float
    """Time spent reading and decoding fields (on the reader thread)."""
    model_seconds: float
    """Time spent in the model (tiling, forward passes, outputs)."""
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def fields_per_second(self) -> float:
        return self.fields / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fields_per_second": round(self.fields_per_second, 3)}


def grid_fields(slide: Slide, size: int, mpp: float, overlap: int, min_tissue: float) -> list[Field]:
    """Fields covering the slide's tissue to its edges (the last row and column may reach past the slide:
    read as white), ``overlap`` field px between neighbours."""
    thumb, ds = slide.thumbnail()
    mask = tissue_mask(thumb)
    probe = Field(0, 0, size, mpp, slide.mpp)
    step = (size - overlap) * probe.downsample
    W, H = slide.dimensions
    xs = np.arange(0, max(W - probe.extent, 0) + step, step)
    ys = np.arange(0, max(H - probe.extent, 0) + step, step)
    keep = {(f.x, f.y) for f in _tissue_at(slide, size, mpp, xs, ys, (mask, ds), min_tissue)}
    return [Field(int(round(x)), int(round(y)), size, mpp, slide.mpp) for y in ys for x in xs
            if (int(round(x)), int(round(y))) in keep]  # fmt: skip


def _tissue_at(slide, size, mpp, xs, ys, mask, min_tissue) -> list[Field]:
    m, mds = mask
    integral = np.pad(m.astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    extent = Field(0, 0, size, mpp, slide.mpp).extent
    out = []
    for y in ys:
        for x in xs:
            x0, y0 = min(m.shape[1] - 1, int(x / mds)), min(m.shape[0] - 1, int(y / mds))
            x1 = min(m.shape[1], max(x0 + 1, math.ceil((x + extent) / mds)))
            y1 = min(m.shape[0], max(y0 + 1, math.ceil((y + extent) / mds)))
            covered = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
            if covered / ((x1 - x0) * (y1 - y0)) >= min_tissue and covered > 0:
                out.append(Field(int(round(x)), int(round(y)), size, mpp, slide.mpp))
    return out


def _prefetch(
    slide: Slide, fields: Sequence[Field], timing: dict[str, float]
) -> Iterator[tuple[Field, np.ndarray]]:
    """Fields read one ahead on a background thread (decoding releases the GIL)."""

    def read(f: Field) -> np.ndarray:
        t = time.perf_counter()
        img = read_field(slide, f)
        timing["read"] += time.perf_counter() - t
        return img

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(read, fields[0]) if fields else None
        for i, f in enumerate(fields):
            img = pending.result()  # type: ignore[union-attr]
            pending = pool.submit(read, fields[i + 1]) if i + 1 < len(fields) else None
            yield f, img


def _core(f: Field, xs: dict[int, int], ys: dict[int, int], overlap: int) -> tuple[int, int, int, int]:
    """The part of field ``f`` (field px: c0, r0, c1, r1) it decides: half the overlap in from each side that
    has a neighbour in the grid, plus one pixel so pieces of a region cut there overlap and join."""
    lo, hi = overlap // 2, f.size - (overlap - overlap // 2)
    i, j = xs[f.x], ys[f.y]
    c0 = 0 if i == 0 else max(0, lo - 1)
    r0 = 0 if j == 0 else max(0, lo - 1)
    c1 = f.size if i == max(xs.values()) else min(f.size, hi + 1)
    r1 = f.size if j == max(ys.values()) else min(f.size, hi + 1)
    return c0, r0, c1, r1


def predict_slide(
    slide_path: str | Path,
    version_dir: str | Path,
    out_dir: str | Path,
    *,
    device: str = "auto",
    mpp: float | None = None,
    field_size: int | None = None,
    min_tissue: float = 0.05,
    threshold: float = 0.5,
    min_score: float = 0.25,
    reader: str = "auto",
    slide_mpp: float | None = None,
    version_label: str = "",
    predictor: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> SlideResult:
    """Run the version in ``version_dir`` over the slide's tissue; write ``<stem>.<kind>.geojson``,
    ``<stem>.<kind>.overlay.png`` (and for classify ``<stem>.classify.heatmap.png``) into ``out_dir``.

    ``predictor``: an already loaded :func:`training.inference.load_model` (several slides, one model)."""
    from training.inference import load_model
    from training.runtime import resolve_device

    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if predictor is None:
        predictor = load_model(Path(version_dir), device=resolve_device(device))
    card: ModelCard = predictor.card
    res = model_mpp(card, mpp)
    timing = {"read": 0.0, "model": 0.0}
    with open_slide(slide_path, reader=reader, mpp=slide_mpp) as slide:
        stem = Path(slide_path).stem
        if card.kind == "classify":
            size = field_size or int(card.extra.get("field_size") or card.input_size)
            overlap = 0
        else:
            size = field_size or 4 * card.input_size
            overlap = max(0, card.input_size // 4)
        fields = grid_fields(slide, size, res, overlap, min_tissue)
        xs = {x: i for i, x in enumerate(sorted({f.x for f in fields}))}
        ys = {y: i for i, y in enumerate(sorted({f.y for f in fields}))}
        features: list[dict[str, Any]] = []
        heat: list[tuple[Field, np.ndarray]] = []
        stream = _prefetch(slide, fields, timing)
        done = 0
        if card.kind == "classify":
            batch: list[tuple[Field, np.ndarray]] = []
            for f, img in stream:
                batch.append((f, img))
                if len(batch) == CLASSIFY_BATCH:
                    heat += _classify(predictor, batch, timing)
                    done += len(batch)
                    batch = []
                    if progress:
                        progress(done, len(fields))
            if batch:
                heat += _classify(predictor, batch, timing)
                if progress:
                    progress(len(fields), len(fields))
            features = [_field_feature(f, p, card.classes) for f, p in heat]
        else:
            pieces: list[dict[str, Any]] = []
            for f, img in stream:
                t = time.perf_counter()
                core = _core(f, xs, ys, overlap)
                if card.kind == "segment":
                    pieces += _segment_features(predictor.predict(img), f, core, threshold, min_score)
                else:
                    features += _detect_features(predictor.predict(img), f, core, min_score)
                timing["model"] += time.perf_counter() - t
                done += 1
                if progress:
                    progress(done, len(fields))
            if pieces:
                features = union_features(pieces, object_type="detection")
        features = clip_features(features, *slide.dimensions)  # the last fields reach past the edge
        outputs = {"geojson": str(out_dir / f"{stem}.{card.kind}.geojson")}
        meta = {"slide": Path(slide_path).name, "kind": card.kind, "model_version": version_label, "mpp": res,
                "slide_mpp": slide.mpp}  # fmt: skip
        write_geojson(outputs["geojson"], features, **meta)
        thumb, tds = slide.thumbnail(OVERLAY_MAX)
        outputs["overlay"] = str(out_dir / f"{stem}.{card.kind}.overlay.png")
        _write_png(_overlay(thumb, tds, features, heat, card), Path(outputs["overlay"]))
        if card.kind == "classify":
            outputs["heatmap"] = str(out_dir / f"{stem}.classify.heatmap.png")
            _write_png(_heatmap(heat, slide), Path(outputs["heatmap"]))
    result = SlideResult(
        slide=Path(slide_path).name, kind=card.kind, version=version_label, mpp=res, field_size=size,
        fields=len(fields), features=len(features), seconds=time.perf_counter() - start,
        read_seconds=timing["read"], model_seconds=timing["model"], outputs=outputs,
    )  # fmt: skip
    (out_dir / f"{stem}.{card.kind}.json").write_text(json.dumps(result.to_dict(), indent=1))
    return result


def _segment_features(seg: Any, f: Field, core, threshold: float, min_score: float) -> list[dict[str, Any]]:
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
            out.append(feature(geom, name, color=class_color(name, seg.classes), object_type="detection",
                               measurements={"score": score}))  # fmt: skip
    return out


def _detect_features(det: Any, f: Field, core, min_score: float) -> list[dict[str, Any]]:
    c0, r0, c1, r1 = core
    out = []
    for box, score, label in zip(det.boxes, det.scores, det.labels, strict=True):
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if score < min_score or not (c0 <= cx < c1 and r0 <= cy < r1):
            continue
        (x0, y0), (x1, y1) = f.to_slide(np.array([[box[0], box[1]], [box[2], box[3]]]))
        name = det.classes[int(label)]
        out.append(feature(box_geometry(x0, y0, x1, y1), name, color=class_color(name, det.classes),
                           object_type="detection", measurements={"score": float(score)}))  # fmt: skip
    return out


def _classify(predictor: Any, batch: list[tuple[Field, np.ndarray]], timing: dict[str, float]):
    t = time.perf_counter()
    probs = [scores.probs for scores in predictor.predict_many([img for _, img in batch])]
    timing["model"] += time.perf_counter() - t
    return [(f, p) for (f, _), p in zip(batch, probs, strict=True)]


def _field_feature(f: Field, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    top = int(np.argmax(probs))
    x1, y1 = f.x + f.extent, f.y + f.extent
    return feature(
        box_geometry(f.x, f.y, x1, y1), classes[top], color=class_color(classes[top], classes),
        object_type="tile", measurements={"score": float(probs[top]), **{f"p({c})": float(p) for c, p in
                                                                           zip(classes, probs, strict=True)}},
    )  # fmt: skip


def _overlay(thumb: np.ndarray, ds: float, features, heat, card: ModelCard) -> np.ndarray:
    """The slide's thumbnail with the results drawn on it (regions filled at 40 %, boxes outlined)."""
    import cv2

    img = thumb.copy()
    layer = img.copy()
    for feat in features:
        props = feat["properties"]
        color = tuple(int(c) for c in (props.get("classification") or {}).get("color", (255, 0, 0)))
        shape = shapely_of(feat)
        for part in getattr(shape, "geoms", [shape]):
            rings = [np.asarray(part.exterior.coords) / ds] + [
                np.asarray(r.coords) / ds for r in part.interiors
            ]
            pts = [np.round(r).astype(np.int32) for r in rings]
            if card.kind == "detect":
                cv2.polylines(img, pts[:1], True, color, 1)
            elif card.kind == "classify":
                alpha = float((props.get("measurements") or {}).get(f"p({card.classes[-1]})", 0.0))
                cv2.fillPoly(layer, pts[:1], _heat_color(alpha))
            else:
                cv2.fillPoly(layer, pts, color)
                cv2.polylines(img, pts, True, color, 1)
    if card.kind != "detect":
        img = cv2.addWeighted(layer, 0.4, img, 0.6, 0)
    return img


def _heat_color(p: float) -> tuple[int, int, int]:
    from matplotlib import colormaps

    r, g, b, _ = colormaps["inferno"](float(np.clip(p, 0, 1)))
    return int(r * 255), int(g * 255), int(b * 255)


def _heatmap(heat, slide: Slide, cell: int = 8) -> np.ndarray:
    """One cell per field of the slide's grid: the probability of the last class (e.g. ``malignant``);
    grey where there is no tissue."""
    if not heat:
        return np.full((cell, cell, 3), 128, np.uint8)
    extent = heat[0][0].extent
    W, H = slide.dimensions
    grid = np.full((max(1, math.ceil(H / extent)), max(1, math.ceil(W / extent)), 3), 128, np.uint8)
    for f, probs in heat:
        grid[round(f.y / extent), round(f.x / extent)] = _heat_color(float(probs[-1]))
    return np.repeat(np.repeat(grid, cell, axis=0), cell, axis=1)


def _write_png(image: np.ndarray, path: Path) -> None:
    import os

    from PIL import Image

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        Image.fromarray(image).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
