"""Write a small pyramidal tiled TIFF from an image in memory: the slides of the tests, the demo and the
benchmarks (no slide is ever downloaded), or a lab's large field turned into a slide.

Two layouts, both read by :mod:`converters.slides`:

- ``subifd`` (default): level 0 in the first IFD, the reduced levels as its SubIFDs (what tifffile,
  QuPath and bfconvert write), with TIFF resolution tags in pixels per centimetre;
- ``svs``: Aperio's layout — the levels as top-level IFDs with a stripped thumbnail as the second IFD, and
  an ``Aperio Image Library`` ImageDescription carrying ``MPP`` and ``AppMag``.

>>> import tempfile
>>> p = write_pyramid(np.zeros((600, 800, 3), np.uint8), Path(tempfile.mkdtemp()) / "s.tif", mpp=0.5)
>>> import tifffile
>>> with tifffile.TiffFile(p) as t: [s.shape for s in t.series[0].levels]
[(600, 800, 3), (300, 400, 3), (150, 200, 3)]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

LAYOUTS = ("subifd", "svs")


def _down(img: np.ndarray, factor: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)


def write_pyramid(
    image: np.ndarray,
    path: str | Path,
    *,
    mpp: float,
    levels: Sequence[int] = (1, 2, 4),
    tile: int = 256,
    layout: str = "subifd",
    quality: int = 90,
) -> Path:
    """Write ``image`` (H, W, 3 uint8 RGB) as a JPEG-tiled pyramid at ``mpp`` µm/px; temp file, then rename."""
    import tifffile

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (one of {LAYOUTS})")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    h, w = image.shape[:2]
    opts: dict[str, Any] = {
        "tile": (tile, tile),
        "photometric": "rgb",
        "compression": "jpeg",
        "compressionargs": {"level": quality},
    }
    per_cm = 1e4 / mpp
    try:
        with tifffile.TiffWriter(tmp, bigtiff=False) as tif:
            if layout == "subifd":
                tif.write(
                    image,
                    subifds=len(levels) - 1,
                    resolution=(per_cm, per_cm),
                    resolutionunit="CENTIMETER",
                    **opts,
                )
                for f in levels[1:]:
                    tif.write(
                        _down(image, f),
                        subfiletype=1,
                        resolution=(per_cm / f, per_cm / f),
                        resolutionunit="CENTIMETER",
                        **opts,
                    )
            else:
                desc = (
                    f"Aperio Image Library v12.0.15 \r\n{w}x{h} [0,0 {w}x{h}] ({tile}x{tile}) JPEG/RGB "
                    f"Q={quality}|AppMag = {round(10 / mpp)}|MPP = {mpp}"
                )
                tif.write(image, description=desc, metadata=None, **opts)
                thumb = _down(image, max(1, max(h, w) // 256))
                tif.write(thumb, photometric="rgb", compression="jpeg", description=desc, metadata=None)
                for f in levels[1:]:
                    tif.write(_down(image, f), description=desc, metadata=None, **opts)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
