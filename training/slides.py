"""A model version over a whole slide: fields of the slide's tissue at the resolution the model was trained
at, predicted in batches of overlapping tiles, results in slide coordinates (QuPath GeoJSON), an overlay.

- **Resolution.** ``card.extra["mpp"]``, which the trainer records from the dataset when its items carry
  one (fields imported by ``histoloop slides import`` do; ``TrainConfig.extra["mpp"]`` sets it by hand),
  else :data:`DEFAULT_MODEL_MPP` (0.5 µm/px, 20×); ``mpp=`` overrides both.
- **Fields.** The kind's row says how its model goes over a slide (:attr:`training.base.KindSpec.slide`,
  :mod:`training.slide_fields`). segment/detect: fields of ``4 × input_size`` px (``field_size=``) on a
  grid that overlaps by a quarter of the model input; each field is predicted by :mod:`training.inference`
  (tiles with overlap, batched, on the GPU when there is one) and keeps only its own core, so every slide
  pixel is decided by one field. Regions that cross cores are joined
  (:func:`converters.geojson.union_features`); a box belongs to the field that holds its centre. classify:
  one field per model input, not overlapping, in batches: each gets the class probabilities, drawn as a
  heat map.
- **Tissue.** Every result is limited to the slide's tissue (:class:`converters.slides.TissueMap`, glass
  and pen ink left out): regions are cut to it, boxes and classified tiles kept when at least half of them
  is tissue (the kind's :attr:`training.slide_fields.SlideSpec.on_tissue`).
- **Memory.** One field is read (on a background thread, while the model runs on the previous one) and
  dropped after its prediction; what is kept is the vector output. The slide is never held in memory.

>>> from training.artifacts import ModelCard
>>> model_mpp(ModelCard(kind="segment", classes=["tumor"], arch={}, input_size=256, extra={"mpp": 0.25}))
0.25
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.geojson import clip_features, shapely_of, write_geojson
from converters.slides import Field, Slide, TissueMap, open_slide, read_field
from training.artifacts import ModelCard
from training.kinds import spec
from training.slide_fields import ON_TISSUE, FieldRun, Heat, SlideSpec

DEFAULT_MODEL_MPP = 0.5
"""The resolution a model is taken to be trained at when its card records none (µm/px; 20×)."""
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


def grid_fields(
    slide: Slide, size: int, mpp: float, overlap: int, min_tissue: float, tissue: TissueMap | None = None
) -> list[Field]:
    """Fields covering the slide's tissue to its edges (the last row and column may reach past the slide:
    read as white), ``overlap`` field px between neighbours; a field is kept when at least ``min_tissue`` of
    its part on the slide is tissue (``tissue``: the slide's :class:`TissueMap`, made when not given)."""
    tissue = tissue or TissueMap.of(slide)
    probe = Field(0, 0, size, mpp, slide.mpp)
    step = (size - overlap) * probe.downsample
    W, H = slide.dimensions
    xs = np.arange(0, max(W - probe.extent, 0) + step, step)
    ys = np.arange(0, max(H - probe.extent, 0) + step, step)
    out = []
    for y in ys:
        for x in xs:
            x0, y0 = round(x), round(y)
            frac = tissue.fraction(x0, y0, min(W, x0 + probe.extent), min(H, y0 + probe.extent))
            if frac >= min_tissue and frac > 0:
                out.append(Field(x0, y0, size, mpp, slide.mpp))
    return out


def _heat_on_tissue(heat: Heat, tissue: TissueMap, slide: Slide) -> Heat:
    """The fields of the heat map with at least :data:`ON_TISSUE` of their part on the slide on tissue."""
    W, H = slide.dimensions
    return [
        (f, p)
        for f, p in heat
        if tissue.fraction(f.x, f.y, min(W, f.x + f.extent), min(H, f.y + f.extent)) >= ON_TISSUE
    ]


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

    ``predictor``: an already loaded :func:`training.versions.load_model` (several slides, one model)."""
    from training.runtime import resolve_device
    from training.versions import load_model

    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if predictor is None:
        predictor = load_model(Path(version_dir), device=resolve_device(device))
    card: ModelCard = predictor.card
    reading = spec(card.kind).slide
    res = model_mpp(card, mpp)
    timing = {"read": 0.0, "model": 0.0}
    with open_slide(slide_path, reader=reader, mpp=slide_mpp) as slide:
        stem = Path(slide_path).stem
        size, overlap = reading.grid(card, field_size)
        tissue = TissueMap.of(slide)
        fields = grid_fields(slide, size, res, overlap, min_tissue, tissue)
        run = FieldRun(predictor, card, fields, overlap, threshold, min_score, timing, progress)
        features, heat = reading.predict(run, _prefetch(slide, fields, timing))
        features = clip_features(features, *slide.dimensions)  # the last fields reach past the edge
        features = reading.on_tissue(features, tissue)  # nothing on glass or pen ink
        heat = _heat_on_tissue(heat, tissue, slide)
        outputs = {"geojson": str(out_dir / f"{stem}.{card.kind}.geojson")}
        meta = {
            "slide": Path(slide_path).name,
            "kind": card.kind,
            "model_version": version_label,
            "mpp": res,
            "slide_mpp": slide.mpp,
        }
        write_geojson(outputs["geojson"], features, **meta)
        thumb, tds = slide.thumbnail(OVERLAY_MAX)
        outputs["overlay"] = str(out_dir / f"{stem}.{card.kind}.overlay.png")
        _write_png(_overlay(thumb, tds, features, reading, card), Path(outputs["overlay"]))
        if reading.heatmap is not None:
            outputs["heatmap"] = str(out_dir / f"{stem}.{card.kind}.heatmap.png")
            _write_png(reading.heatmap(heat, slide), Path(outputs["heatmap"]))
    result = SlideResult(
        slide=Path(slide_path).name,
        kind=card.kind,
        version=version_label,
        mpp=res,
        field_size=size,
        fields=len(fields),
        features=len(features),
        seconds=time.perf_counter() - start,
        read_seconds=timing["read"],
        model_seconds=timing["model"],
        outputs=outputs,
    )
    (out_dir / f"{stem}.{card.kind}.json").write_text(json.dumps(result.to_dict(), indent=1))
    return result


def _overlay(thumb: np.ndarray, ds: float, features, reading: SlideSpec, card: ModelCard) -> np.ndarray:
    """The slide's thumbnail with the results drawn on it as the kind draws them (regions filled at 40 %,
    boxes outlined, tiles in heat colours)."""
    import cv2

    img = thumb.copy()
    layer = img.copy()
    for feat in features:
        props = feat["properties"]
        shape = shapely_of(feat)
        for part in getattr(shape, "geoms", [shape]):
            rings = [np.asarray(part.exterior.coords) / ds] + [
                np.asarray(r.coords) / ds for r in part.interiors
            ]
            pts = [np.round(r).astype(np.int32) for r in rings]
            reading.draw(img, layer, pts, props, card)
    if reading.blend:
        img = cv2.addWeighted(layer, 0.4, img, 0.6, 0)
    return img


def _write_png(image: np.ndarray, path: Path) -> None:
    import os

    from PIL import Image

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        Image.fromarray(image).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
