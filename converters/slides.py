"""Whole-slide images: open a slide, find its tissue, cut fields at a chosen physical resolution.

**Reader.** `tiffslide <https://github.com/Bayer-Group/tiffslide>`_ (on tifffile + zarr) is the default: it
reads Aperio SVS, generic pyramidal TIFF with the pyramid as top-level IFDs *or* as SubIFDs (the layout
tifffile, QuPath and bfconvert write), Hamamatsu NDPI, Leica SCN and others, installs as a pure-Python
wheel and reads regions straight into numpy. OpenSlide (``openslide-python`` + ``openslide-bin``, both
wheels) is optional (``pip install 'histoloop[openslide]'``): it opens formats tiffslide does not (MIRAX
.mrxs, VMS/VMU, Ventana BIF, DICOM) and is tried when tiffslide cannot open a file (``reader="auto"``), but
its generic-TIFF reader sees only level 0 of a SubIFD pyramid (../shared/NOTES.md, 2026-12-01), which
would make every low-resolution read decode the full-resolution tiles.

**Coordinates.** Everything is in level-0 pixels of the slide. A field of ``size`` px at ``mpp`` µm/px
covers ``size * downsample`` level-0 px, ``downsample = mpp / slide.mpp``; field pixel ``(u, v)`` is
slide point ``(x + u * downsample, y + v * downsample)`` (:class:`Field`). A field is read from the
pyramid level just finer than it needs and resized (area interpolation), so nothing larger than one
field's region is ever decoded: the slide is never held in memory.

>>> import tempfile
>>> from converters.pyramid import write_pyramid
>>> img = np.full((1024, 1024, 3), 255, np.uint8); img[:, :512] = (200, 120, 180)   # tissue on the left
>>> path = write_pyramid(img, Path(tempfile.mkdtemp()) / "S1.tif", mpp=0.25, levels=(1, 2, 4))
>>> with open_slide(path) as slide:
...     fields = tissue_fields(slide, size=128, mpp=1.0)
...     slide.mpp, slide.level_downsamples, len(fields), read_field(slide, fields[0]).shape
(0.25, (1.0, 2.0, 4.0), 2, (128, 128, 3))
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

READERS = ("auto", "tiffslide", "openslide")
THUMBNAIL_MAX = 2048
"""The tissue mask is computed on a thumbnail whose long side is at most this many pixels."""
BLOCK = 4096
TISSUE_MPP = 2.0
"""The finest resolution (µm/px) tissue is found at: the gaps between cells and the pale parts of the
stroma are glass-like at full resolution; at 2 µm/px they are part of the tissue they lie in."""
"""A level larger than BLOCK² is shrunk into a thumbnail block by block."""


class SlideError(ValueError):
    """A slide that cannot be opened or read, or has no resolution (µm/px) in its metadata."""


@dataclass(frozen=True)
class Field:
    """A square field of a slide: ``size`` px at ``mpp`` µm/px, top-left ``(x, y)`` in level-0 pixels.

    >>> f = Field(x=1000, y=2000, size=512, mpp=0.5, slide_mpp=0.25)
    >>> f.downsample, f.extent, f.to_slide(np.array([[0.0, 0.0], [512.0, 256.0]])).tolist()
    (2.0, 1024.0, [[1000.0, 2000.0], [2024.0, 2512.0]])
    """

    x: int
    y: int
    size: int
    mpp: float
    slide_mpp: float
    tissue: float = 1.0
    """Fraction of the field's part on the slide that the thumbnail's tissue mask covers."""
    valid_width: int | None = None
    """Field px from the left that lie on the slide, for a field crossing the slide's right edge (the rest
    is white padding); None: the whole width."""
    valid_height: int | None = None
    """The same from the top, for a field crossing the slide's bottom edge."""

    @property
    def valid(self) -> tuple[int, int]:
        """(width, height) in field px of the part on the slide (the field's size when it is all on it)."""
        return self.valid_width or self.size, self.valid_height or self.size

    @property
    def padded(self) -> bool:
        """Whether part of the field lies past the slide's right or bottom edge."""
        return self.valid != (self.size, self.size)

    @property
    def downsample(self) -> float:
        """Level-0 pixels per field pixel."""
        return self.mpp / self.slide_mpp

    @property
    def extent(self) -> float:
        """The field's side in level-0 pixels."""
        return self.size * self.downsample

    def to_slide(self, points: np.ndarray) -> np.ndarray:
        """(K, 2) field pixel coordinates (x, y) → level-0 slide coordinates."""
        return np.asarray(points, dtype=np.float64) * self.downsample + np.array([self.x, self.y])

    def to_field(self, points: np.ndarray) -> np.ndarray:
        """(K, 2) level-0 slide coordinates → field pixel coordinates."""
        return (np.asarray(points, dtype=np.float64) - np.array([self.x, self.y])) / self.downsample

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Slide:
    """An open whole-slide image (tiffslide or OpenSlide underneath); use as a context manager."""

    def __init__(self, path: Path, handle: Any, reader: str, mpp: float | None = None) -> None:
        self.path, self._h, self.reader = Path(path), handle, reader
        props = dict(handle.properties)
        found = props.get(f"{reader}.mpp-x") or props.get("openslide.mpp-x") or props.get("tiffslide.mpp-x")
        try:
            self.mpp = float(mpp) if mpp else float(found)
        except (TypeError, ValueError):
            self.mpp = math.nan
        if not (self.mpp > 0 and math.isfinite(self.mpp)):
            raise SlideError(
                f"{self.path.name}: no resolution (µm/px) in the slide's metadata; pass it (--slide-mpp)"
            )
        self.properties = props
        self.dimensions: tuple[int, int] = tuple(int(v) for v in handle.dimensions)  # type: ignore[assignment]
        self.level_dimensions = tuple(tuple(int(v) for v in d) for d in handle.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in handle.level_downsamples)

    @property
    def name(self) -> str:
        return self.path.name

    def best_level(self, downsample: float) -> int:
        """The coarsest level that is still at least as fine as ``downsample`` (1 % tolerance)."""
        ok = [i for i, d in enumerate(self.level_downsamples) if d <= downsample * 1.01]
        return max(ok, key=lambda i: self.level_downsamples[i]) if ok else 0

    def read(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """RGB uint8 (height, width, 3) of ``level`` at level-0 position ``(x, y)``; outside is white."""
        ds = self.level_downsamples[level]
        lw, lh = self.level_dimensions[level]
        lx, ly = x / ds, y / ds  # the part inside the level, read; the rest white glass
        c0, r0 = max(0, -math.floor(lx)), max(0, -math.floor(ly))
        c1, r1 = min(width, lw - math.floor(lx)), min(height, lh - math.floor(ly))
        out = np.full((height, width, 3), 255, np.uint8)
        if c1 <= c0 or r1 <= r0:
            return out
        at = (x + round(c0 * ds), y + round(r0 * ds))
        try:
            if self.reader == "tiffslide":
                arr = self._h.read_region(at, level, (c1 - c0, r1 - r0), as_array=True, padding=False)
            else:
                arr = self._h.read_region(at, level, (c1 - c0, r1 - r0))
            arr = _rgb(np.asarray(arr))
        except Exception as exc:  # decoders raise anything: a clear error naming the slide
            raise SlideError(f"{self.name}: cannot read level {level} at ({x}, {y}): {exc}") from exc
        out[r0 : r0 + arr.shape[0], c0 : c0 + arr.shape[1]] = arr[: r1 - r0, : c1 - c0]
        return out

    def thumbnail(self, max_size: int = THUMBNAIL_MAX) -> tuple[np.ndarray, float]:
        """(RGB thumbnail, its downsample from level 0), read from the coarsest level that is large enough."""
        w, h = self.dimensions
        ds = max(1.0, max(w, h) / max_size)
        level = self.best_level(ds)
        lw, lh = self.level_dimensions[level]
        lds = self.level_downsamples[level]
        tw, th = max(1, round(w / ds)), max(1, round(h / ds))
        if lw * lh <= BLOCK * BLOCK:
            return _resize(self.read(level, 0, 0, lw, lh), tw, th), w / tw
        # a slide without a small enough level: shrink it block by block, never all of it in memory
        out = np.empty((th, tw, 3), np.uint8)
        for r0 in range(0, lh, BLOCK):
            r1 = min(lh, r0 + BLOCK)
            t0, t1 = round(r0 * th / lh), round(r1 * th / lh)
            for c0 in range(0, lw, BLOCK):
                c1 = min(lw, c0 + BLOCK)
                u0, u1 = round(c0 * tw / lw), round(c1 * tw / lw)
                if t1 > t0 and u1 > u0:
                    block = self.read(level, round(c0 * lds), round(r0 * lds), c1 - c0, r1 - r0)
                    out[t0:t1, u0:u1] = _resize(block, u1 - u0, t1 - t0)
        return out, w / tw

    def fingerprint(self) -> str:
        """A short content id (size + first and last MiB): the same slide under another name or path."""
        digest = hashlib.sha256()
        size = self.path.stat().st_size
        digest.update(str(size).encode())
        with open(self.path, "rb") as f:
            digest.update(f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            digest.update(f.read(1 << 20))
        return digest.hexdigest()[:16]

    def close(self) -> None:
        self._h.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 4:  # OpenSlide: premultiplied RGBA, transparent outside the scanned area
        alpha = arr[..., 3:4].astype(np.float32) / 255.0
        arr = (arr[..., :3].astype(np.float32) + 255.0 * (1.0 - alpha)).clip(0, 255)
    return np.ascontiguousarray(arr[..., :3], dtype=np.uint8)


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    if img.shape[1] == width and img.shape[0] == height:
        return img
    import cv2

    shrink = width < img.shape[1]
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _open_with(path: Path, reader: str) -> Any:
    if reader == "tiffslide":
        import tiffslide

        return tiffslide.TiffSlide(path)
    try:
        import openslide
    except ImportError as exc:
        raise SlideError(
            f"{path.name}: OpenSlide is not installed (pip install openslide-python openslide-bin)"
        ) from exc
    return openslide.OpenSlide(str(path))


def open_slide(path: str | Path, reader: str = "auto", mpp: float | None = None) -> Slide:
    """Open a slide; ``reader``: ``tiffslide``, ``openslide`` or ``auto`` (tiffslide, then OpenSlide when it
    is installed). ``mpp`` overrides the metadata's resolution. Raises :class:`SlideError` naming the file."""
    path = Path(path)
    if reader not in READERS:
        raise SlideError(f"unknown slide reader {reader!r} (one of {', '.join(READERS)})")
    if not path.is_file():
        raise SlideError(f"{path}: no such slide file")
    order = ["tiffslide", "openslide"] if reader == "auto" else [reader]
    errors = []
    for name in order:
        try:
            handle = _open_with(path, name)
        except SlideError as exc:
            errors.append(str(exc))
            continue
        except Exception as exc:  # tifffile / OpenSlide raise many types on a bad file
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        try:
            return Slide(path, handle, name, mpp)
        except SlideError:
            handle.close()
            raise
        except Exception as exc:
            handle.close()
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    raise SlideError(f"{path.name}: not a readable slide ({'; '.join(errors)})")


def tissue_mask(thumbnail: np.ndarray, min_saturation: int = 20, min_area: float = 0.0005) -> np.ndarray:
    """(H, W) bool: stained tissue on a thumbnail; glass, pen ink and dust left out (scikit-image).

    Tissue is what is saturated (half Otsu's threshold on HSV saturation, between ``min_saturation`` and
    40 of 255); pen ink is what has a green, cyan or blue hue (H&E is pink to purple) and some saturation,
    or is nearly black (a black marker), grown by two pixels so its edges go too; small specks and small
    holes (under ``min_area`` of the thumbnail) are dropped and filled.

    >>> thumb = np.full((64, 64, 3), 245, np.uint8)
    >>> thumb[8:40, 8:40] = (200, 110, 170)          # eosin-pink tissue
    >>> thumb[48:56, 8:56] = (40, 90, 200)           # a blue pen line
    >>> thumb[20:24, 8:40] = (20, 20, 25)            # a black marker line across the tissue
    >>> m = tissue_mask(thumb)
    >>> bool(m[12, 20]), bool(m[22, 20]), bool(m[50, 30]), bool(m[60, 60])
    (True, False, False, False)
    """
    from skimage.color import rgb2hsv
    from skimage.filters import threshold_otsu
    from skimage.morphology import closing, dilation, opening, remove_small_holes, remove_small_objects

    rgb = np.ascontiguousarray(thumbnail[..., :3])
    hsv = rgb2hsv(rgb)
    hue = hsv[..., 0] * 360.0
    sat = np.round(hsv[..., 1] * 255.0).astype(np.uint8)
    val = rgb.max(axis=2)
    # Otsu splits glass from stain; half of it keeps the pale parts of the tissue too
    otsu = float(threshold_otsu(sat)) if sat.min() != sat.max() else 0.0
    tissue = sat >= min(max(min_saturation, otsu / 2), 40)
    pen = ((hue >= 70) & (hue <= 260) & (sat >= 40)) | (val < 35)
    if pen.any():
        pen = dilation(pen, np.ones((5, 5), bool))
    tissue &= ~pen
    square = np.ones((3, 3), bool)
    m = opening(closing(tissue, square), square)
    smaller = max(1, math.ceil(min_area * m.size))  # objects of fewer pixels go
    m = remove_small_objects(m, max_size=smaller - 1, connectivity=2)
    return remove_small_holes(m, max_size=smaller - 1)


class TissueMap:
    """Where a slide has tissue: :func:`tissue_mask` of its thumbnail and the thumbnail's downsample (level-0
    px per mask px). Asked in level-0 coordinates: the tissue fraction of a rectangle (:meth:`fraction`) and
    the tissue as a shapely geometry (:attr:`geometry`, to cut results to it: :meth:`clip`).

    >>> m = np.zeros((10, 10), bool); m[:, :5] = True     # tissue on the left half, 4 level-0 px per mask px
    >>> t = TissueMap(m, 4.0)
    >>> t.fraction(0, 0, 20, 40), t.fraction(10, 0, 30, 40), t.fraction(20, 0, 40, 40), t.geometry.bounds
    (1.0, 0.5, 0.0, (0.0, 0.0, 20.0, 40.0))
    >>> t.clip(__import__("shapely").box(10, 10, 30, 20)).bounds
    (10.0, 10.0, 20.0, 20.0)
    """

    def __init__(self, mask: np.ndarray, downsample: float) -> None:
        self.mask = np.asarray(mask, dtype=bool)
        self.downsample = float(downsample)
        self._integral = np.pad(self.mask.astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        self._geometry: Any = None
        self._prepared = False

    @classmethod
    def of(cls, slide: Slide) -> TissueMap:
        """The tissue map of a slide, from its thumbnail at :data:`TISSUE_MPP` µm/px or coarser (at most
        :data:`THUMBNAIL_MAX` px on its long side)."""
        long_side = max(slide.dimensions) * slide.mpp / TISSUE_MPP
        thumb, ds = slide.thumbnail(max(1, min(THUMBNAIL_MAX, math.ceil(long_side))))
        return cls(tissue_mask(thumb), ds)

    def fraction(self, x0: float, y0: float, x1: float, y1: float) -> float:
        """The tissue fraction of the level-0 rectangle ``[x0, x1] × [y0, y1]`` (its part outside the mask
        counts as no tissue), to the mask's pixels: a pixel counts by the part of it inside."""
        if x1 <= x0 or y1 <= y0:
            return 0.0
        ds, (h, w) = self.downsample, self.mask.shape
        c0, c1 = np.clip([x0 / ds, x1 / ds], 0, w)
        r0, r1 = np.clip([y0 / ds, y1 / ds], 0, h)
        covered = self._area(c0, r0, c1, r1)
        return float(covered / ((x1 - x0) * (y1 - y0) / ds / ds))

    def _area(self, c0: float, r0: float, c1: float, r1: float) -> float:
        """Tissue pixels in the mask rectangle (fractional edges counted by the whole pixels they cut,
        weighted by the part inside)."""
        if c1 <= c0 or r1 <= r0:
            return 0.0
        a, b = math.floor(c0), math.ceil(c1)
        c, d = math.floor(r0), math.ceil(r1)
        block = self.mask[c:d, a:b].astype(np.float64)
        wx = np.ones(b - a)
        wx[0] -= c0 - a
        wx[-1] -= b - c1
        wy = np.ones(d - c)
        wy[0] -= r0 - c
        wy[-1] -= d - r1
        return float(wy @ block @ wx)

    @property
    def geometry(self) -> Any:
        """The tissue as a shapely (Multi)Polygon in level-0 coordinates (holes kept)."""
        if self._geometry is None:
            from shapely import MultiPolygon, affinity

            from converters.geojson import mask_polygons

            parts = mask_polygons(self.mask, min_area=1.0)
            shape = MultiPolygon(parts) if parts else MultiPolygon()
            self._geometry = affinity.scale(shape, self.downsample, self.downsample, origin=(0, 0))
        return self._geometry

    def clip(self, shape: Any) -> Any:
        """``shape`` (level-0 coordinates) cut to the tissue; empty when none of it is on tissue."""
        import shapely

        tissue = self.geometry
        if not self._prepared:
            shapely.prepare(tissue)
            self._prepared = True
        if tissue.contains(shape):
            return shape
        if not tissue.intersects(shape):
            return shapely.Polygon()
        return shape.intersection(tissue)


def tissue_fields(
    slide: Slide,
    size: int,
    mpp: float,
    *,
    stride: int | None = None,
    min_tissue: float = 0.5,
    mask: tuple[np.ndarray, float] | TissueMap | None = None,
) -> list[Field]:
    """Every field of ``size`` px at ``mpp`` µm/px on a grid of ``stride`` field px (default ``size``: no
    overlap) whose tissue fraction is at least ``min_tissue``; row by row from the top-left.

    The grid covers the whole slide: the last column and row may cross its right and bottom edges, their
    fields padded with white (:meth:`Slide.read`) and carrying the part on the slide
    (:attr:`Field.valid_width`, :attr:`Field.valid_height`); their tissue fraction is that of this part.

    ``mask``: a precomputed :class:`TissueMap` (or (tissue mask, its downsample)); else the slide's.
    """
    if size <= 0 or mpp <= 0:
        raise ValueError(f"field size {size} px and resolution {mpp} µm/px must be positive")
    stride = stride or size
    tissue = mask if isinstance(mask, TissueMap) else TissueMap(*mask) if mask else TissueMap.of(slide)
    probe = Field(0, 0, size, mpp, slide.mpp)
    extent, step, ds = probe.extent, stride * probe.downsample, probe.downsample
    W, H = slide.dimensions
    fields = []
    for y in _starts(H, extent, step):
        for x in _starts(W, extent, step):
            x0, y0 = round(x), round(y)
            vw, vh = _valid(W - x0, ds, size), _valid(H - y0, ds, size)
            frac = tissue.fraction(x0, y0, min(W, x0 + extent), min(H, y0 + extent))
            if frac >= min_tissue and frac > 0:
                fields.append(
                    Field(
                        x0,
                        y0,
                        size,
                        mpp,
                        slide.mpp,
                        round(frac, 4),
                        valid_width=vw if vw < size else None,
                        valid_height=vh if vh < size else None,
                    )
                )
    return fields


def _starts(length: int, extent: float, step: float) -> np.ndarray:
    """Grid positions along a side of ``length`` level-0 px: from 0 while a field still starts on the
    slide (the last one may reach past its end)."""
    last = max(0.0, length - extent)
    starts = np.arange(0, last + 1e-6, step)
    if starts[-1] + extent < length - 1e-6:  # the rest of the side: one more field, crossing the edge
        starts = np.append(starts, starts[-1] + step)
    return starts


def _valid(left: float, downsample: float, size: int) -> int:
    """Field px (at most ``size``) covering the ``left`` level-0 px still on the slide (a partly covered
    last pixel counts)."""
    return int(min(size, max(1, math.ceil(left / downsample - 1e-6))))


def valid_area(data: Any, size: tuple[int, int] | None = None) -> dict[str, int]:
    """``{"valid_width", "valid_height"}`` of a task whose image is padded past the edge of its slide
    (``histoloop slides import``), each at most the image's ``size`` when known; empty for any other task (or
    values that are no positive integers).

    >>> valid_area({"valid_width": 300, "valid_height": 116}), valid_area({"valid_width": "x"}), valid_area(None)
    ({'valid_width': 300, 'valid_height': 116}, {}, {})
    """
    if not isinstance(data, dict) or ("valid_width" not in data and "valid_height" not in data):
        return {}
    out = {}
    for key, limit in (
        ("valid_width", size[0] if size else None),
        ("valid_height", size[1] if size else None),
    ):
        value = data.get(key, limit)
        if value is None:
            continue
        if type(value) is not int or value <= 0:
            return {}
        out[key] = min(value, limit) if limit else value
    return out


def sample_fields(fields: Sequence[Field], n: int | None, seed: int | str = 0) -> list[Field]:
    """``n`` fields drawn at random (reproducibly from ``seed``, e.g. the slide's fingerprint), kept in
    reading order; all of them when ``n`` is None or at least ``len(fields)``."""
    if n is None or n >= len(fields):
        return list(fields)
    s = int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:8], "big")
    pick = np.random.default_rng(s).choice(len(fields), size=n, replace=False)
    return [fields[i] for i in sorted(pick)]


def read_field(slide: Slide, field: Field) -> np.ndarray:
    """The field as RGB uint8 (size, size, 3): read from the nearest finer pyramid level, then resized."""
    level = slide.best_level(field.downsample)
    lds = slide.level_downsamples[level]
    side = max(1, math.ceil(field.extent / lds))
    region = slide.read(level, field.x, field.y, side, side)
    return _resize(region, field.size, field.size)


def read_fields(slide: Slide, fields: Sequence[Field]) -> Iterator[tuple[Field, np.ndarray]]:
    """Fields one at a time (only one field's pixels in memory)."""
    for f in fields:
        yield f, read_field(slide, f)
