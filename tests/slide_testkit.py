"""Slides made here from the real MoNuSeg tiles in ../shared (no slide is downloaded): tissue on the left
half, white glass on the right half with a blue pen line across it, written as a JPEG-tiled pyramid;
``pens=True`` also draws a green and a black marker stroke across the tissue (:data:`PEN_ROWS`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.images import ImageLoader
from converters.pyramid import write_pyramid

SLIDE_MPP = 0.25
"""MoNuSeg's tiles are 40× (about 0.25 µm/px)."""
PEN_ROWS = {"green": (0.40, 0.46), "black": (0.70, 0.75)}
"""The marker strokes across the tissue (``pens=True``): the rows they cover, as fractions of the side."""
PEN_COLOURS = {"green": (40, 160, 70), "black": (25, 25, 30)}


def slide_image(shared_data: Path, size: int = 2000, pens: bool = False) -> np.ndarray:
    """(size, size, 3): the MoNuSeg tiles stacked down the left half; glass and a pen line on the right;
    with ``pens`` a green and a black stroke across the tissue too."""
    tiles = sorted((shared_data / "monuseg-breast" / "images").glob("*.tif"))
    loader = ImageLoader()
    img = np.full((size, size, 3), 243, np.uint8)
    half = size // 2
    y = 0
    for i in range(99):
        tile = loader.load(str(tiles[i % len(tiles)]))[:, :half]
        h = min(tile.shape[0], size - y)
        img[y : y + h, : tile.shape[1]] = tile[:h]
        y += h
        if y >= size:
            break
    img[size // 3 : size // 3 + 24, half + 100 : size - 100] = (40, 80, 190)  # a blue pen line on the glass
    if pens:
        for name, (top, bottom) in PEN_ROWS.items():
            img[round(top * size) : round(bottom * size), : half - 40] = PEN_COLOURS[name]
    return img


def make_slide(
    shared_data: Path, path: Path, layout: str = "subifd", size: int = 2000, pens: bool = False
) -> Path:
    image = slide_image(shared_data, size, pens)
    return write_pyramid(image, path, mpp=SLIDE_MPP, levels=(1, 2, 4), layout=layout)
