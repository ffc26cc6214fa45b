"""``segment``: PNG masks, a class index per pixel (0 background, i+1 = ``classes[i]``), with an instance
map (one id per object) and, when asked for, a 0/255 mask per class.

A polygon fills the pixels whose centres lie inside it (vertices outside the image clipped: a warning),
a brush its own pixels; overlapping regions take the class of the later one, and every region drawn on
one item must be drawn on an image of the same size. Images are always written as PNG (the mask's
pixels are the image's). Tiles crop the mask; Aperio polygons are filled, BreCaHAD centres painted as
discs; the ground truth is one brush region per connected object of each class.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from converters.kinds import DatasetSpec, ItemLabels
from converters.labelstudio_regions import Reader, drawn_size
from converters.layout import DatasetLayout
from converters.pathology import PolygonMasks, points_to_mask
from converters.regions import RegionError, brush_mask, polygon_points, polygon_window, rasterize
from converters.report import ConversionReport
from kernel.tags import TAGS

POLYGON, BRUSH = TAGS["PolygonLabels"].result_type, TAGS["BrushLabels"].result_type
Shape = tuple[str, np.ndarray, int]
"""(result type, geometry: pixel points of a polygon or a brush's bool mask, class id)."""


class MaskReader(Reader):
    """Collects the regions' shapes, then paints the mask, the instance map and the per-class masks."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.mask_size = self.size
        self.shapes: list[Shape] = []

    def add(
        self, rtype: str, value: dict, result: dict, labels: list[str], warn: Callable[[str], None]
    ) -> None:
        new_shapes: list[Shape] = []  # added only when every label of the region converted
        mask_size = self.mask_size
        for cid in self.class_ids(labels):
            W, H = drawn_size(result, self.size)
            if mask_size is not None and tuple(mask_size) != (W, H):
                raise RegionError(f"drawn on a {W}x{H} image, but the image is {mask_size[0]}x{mask_size[1]}")
            mask_size = (W, H)
            geom = brush_mask(value, W, H) if rtype == BRUSH else polygon_points(value, W, H)
            if rtype == POLYGON and (geom.min() < 0 or (geom > [W, H]).any()):
                warn("polygon vertices clipped to the image")
                geom = np.clip(geom, 0, [W, H])
            new_shapes.append((rtype, geom, cid))
        self.mask_size = mask_size
        self.shapes.extend(new_shapes)
        self.out.regions += len(labels)

    def finish(self, attempted: int, where: object, report: ConversionReport) -> ItemLabels | None:
        out = super().finish(attempted, where, report)
        if out is None:
            return None
        if self.mask_size is None:
            report.skip(where, "no regions and no image to size an empty mask")
            return None
        W, H = self.mask_size
        out.mask = _paint(self.shapes, H, W)
        out.instances = _instances(self.shapes, H, W)
        for c, i in self.index.items():
            out.binary[c] = _class_mask(self.shapes, i, H, W)
        return out


def _paint(shapes: list[Shape], H: int, W: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    batch: list = []
    for rtype, geom, cid in shapes:
        if rtype == POLYGON:
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


def _instances(shapes: list[Shape], H: int, W: int) -> np.ndarray:
    """One id per region (1..N in order; later regions on top), drawn as :func:`_paint` draws the mask."""
    inst = np.zeros((H, W), np.uint16)
    for k, (rtype, geom, _) in enumerate(shapes[:65535], 1):
        if rtype == POLYGON:
            win = polygon_window(geom, H, W)
            if win is not None:
                rows, cols, inside = win
                inst[rows, cols][inside] = k
        else:
            inst[geom] = k
    return inst


def _class_mask(shapes: list[Shape], cid: int, H: int, W: int) -> np.ndarray:
    polys = [(g, 1) for t, g, c in shapes if c == cid and t == POLYGON]
    mask = rasterize(polys, H, W).astype(bool) if polys else np.zeros((H, W), bool)
    for t, g, c in shapes:
        if c == cid and t == BRUSH:
            mask |= g
    return mask


class MaskTiler:
    """The :class:`converters.kinds.Tiler` of masks: the item's mask, checked, cropped to each window."""

    def tiles(
        self,
        src: Path,
        kind: str,
        split: str,
        stem: str,
        size: tuple[int, int],
        windows: list[tuple[int, int, int, int]],
        classes: list[str],
        min_visible: float,
        report: ConversionReport,
    ) -> list[ItemLabels] | None:
        from PIL import Image

        from converters.tiling import tile_image

        path = DatasetLayout(src).mask(split, stem)
        rel = path.relative_to(src).as_posix()
        try:
            with Image.open(path) as im:
                mask = np.asarray(im)
        except FileNotFoundError:
            report.skip(stem, f"mask {rel} not found")
            return None
        except Exception as exc:  # PIL raises many types for corrupt files
            report.skip(stem, f"mask {rel} is not a readable image ({type(exc).__name__}: {exc})")
            return None
        w, h = size
        if mask.ndim != 2 or mask.shape != (h, w):
            shape = "x".join(str(d) for d in mask.shape[1::-1]) if mask.ndim >= 2 else str(mask.shape)
            report.skip(stem, f"mask is {shape}, the image {w}x{h}")
            return None
        if mask.dtype.kind not in "ub" or int(mask.max(initial=0)) > len(classes):
            report.skip(
                stem,
                f"mask holds class index {int(mask.max(initial=0))}, more than the {len(classes)} classes",
            )
            return None
        return [ItemLabels(mask=np.ascontiguousarray(tile_image(mask, win))) for win in windows]


def point_discs(
    points: dict[str, np.ndarray], classes: list[str], width: int, height: int, box_size: float, radius: float
) -> ItemLabels:
    """A disc of ``radius`` px around each nucleus centre."""
    return ItemLabels(mask=points_to_mask(points, classes, width, height, radius))


def mask_truth(
    classes: list[str],
    layout: DatasetLayout,
    split: str,
    stem: str,
    extra: dict[str, Any],
    w: int,
    h: int,
    from_name: str,
    to_name: str,
) -> list[dict[str, Any]]:
    """One brush result per connected object (8-connected) of each class of the item's mask."""
    from PIL import Image
    from scipy import ndimage

    from converters.predictions import mask_to_brush_result

    mask = np.asarray(Image.open(layout.mask(split, stem)))
    results = []
    for c, name in enumerate(classes, 1):
        comp, n = ndimage.label(mask == c, structure=np.ones((3, 3), bool))
        results.extend(
            mask_to_brush_result(comp == i, name, 1.0, from_name, to_name) for i in range(1, n + 1)
        )
    return results


SPEC = DatasetSpec(
    kind="segment",
    regions=MaskReader,
    copies_images=False,
    tiler=MaskTiler(),
    polygons=PolygonMasks(),
    points=point_discs,
    truth=mask_truth,
    truth_tag="BrushLabels",
    replays="segment",
    binary_masks=True,
)
