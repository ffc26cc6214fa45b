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
    """Fraction of the field that the thumbnail's tissue mask covers."""

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
    """(H, W) bool: stained tissue on a thumbnail; glass, pen marks and dust left out.

    Tissue is what is saturated (half Otsu's threshold on HSV saturation, between ``min_saturation`` and
    40 of 255),
    pen ink is what has a green/cyan/blue hue (H&E is pink to purple) or is nearly black, slightly grown so
    its edges go too; small specks (under ``min_area`` of the thumbnail) are dropped.

    >>> thumb = np.full((64, 64, 3), 245, np.uint8)
    >>> thumb[8:40, 8:40] = (200, 110, 170)          # eosin-pink tissue
    >>> thumb[48:56, 8:56] = (40, 90, 200)           # a blue pen line
    >>> m = tissue_mask(thumb)
    >>> bool(m[20, 20]), bool(m[50, 30]), bool(m[60, 60])
    (True, False, False)
    """
    import cv2

    hsv = cv2.cvtColor(np.ascontiguousarray(thumbnail[..., :3]), cv2.COLOR_RGB2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    otsu, _ = cv2.threshold(sat, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # Otsu splits glass from stain; half of it keeps the pale parts of the tissue too
    tissue = sat >= min(max(min_saturation, otsu / 2), 40)
    pen = ((hue >= 35) & (hue <= 130) & (sat >= 40)) | (val < 35)  # OpenCV hue is 0..180
    if pen.any():
        pen = cv2.dilate(pen.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    tissue &= ~pen
    k = np.ones((3, 3), np.uint8)
    m = cv2.morphologyEx(tissue.astype(np.uint8), cv2.MORPH_CLOSE, k)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, k)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= max(1.0, min_area * m.size)
    return keep[labels]


def tissue_fields(
    slide: Slide,
    size: int,
    mpp: float,
    *,
    stride: int | None = None,
    min_tissue: float = 0.5,
    mask: tuple[np.ndarray, float] | None = None,
) -> list[Field]:
    """Every field of ``size`` px at ``mpp`` µm/px on a grid of ``stride`` field px (default ``size``: no
    overlap) whose tissue fraction is at least ``min_tissue``; row by row from the top-left.

    ``mask``: a precomputed (tissue mask, its downsample); else :func:`tissue_mask` of the thumbnail.
    """
    if size <= 0 or mpp <= 0:
        raise ValueError(f"field size {size} px and resolution {mpp} µm/px must be positive")
    stride = stride or size
    if mask is None:
        thumb, ds = slide.thumbnail()
        mask = (tissue_mask(thumb), ds)
    m, mds = mask
    integral = np.pad(m.astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    probe = Field(0, 0, size, mpp, slide.mpp)
    extent, step = probe.extent, stride * probe.downsample
    W, H = slide.dimensions
    fields = []
    for y in np.arange(0, H - extent + 1e-6, step):
        for x in np.arange(0, W - extent + 1e-6, step):
            x0, y0 = round(x / mds), round(y / mds)
            x1 = min(m.shape[1], max(x0 + 1, round((x + extent) / mds)))
            y1 = min(m.shape[0], max(y0 + 1, round((y + extent) / mds)))
            area = (x1 - x0) * (y1 - y0)
            covered = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
            frac = covered / area if area > 0 else 0.0
            if frac >= min_tissue:
                fields.append(Field(round(x), round(y), size, mpp, slide.mpp, round(float(frac), 4)))
    return fields


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
