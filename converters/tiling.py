"""Cut large fields into overlapping tiles, with their labels clipped to each tile.

:func:`tile_windows` is shared with tiled inference (training/inference.py): windows of ``tile`` px
stepping by ``tile - overlap``, the last row/column flush with the border so the whole image is covered.
:func:`clip_boxes` keeps a box cut at a tile border only when at least ``min_visible`` of its area remains.

>>> tile_windows(1000, 1000, 512, 64)
[(0, 0, 512, 512), (448, 0, 960, 512), (488, 0, 1000, 512), (0, 448, 512, 960), (448, 448, 960, 960), (488, 448, 1000, 960), (0, 488, 512, 1000), (448, 488, 960, 1000), (488, 488, 1000, 1000)]
>>> tile_windows(300, 200, 512, 64)
[(0, 0, 200, 300)]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from converters.layout import DatasetLayout
from converters.report import ConversionReport


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def tile_windows(height: int, width: int, tile: int, overlap: int = 0) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) windows covering an image; smaller images give one window of the image's size."""
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"need tile > 0 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    if height <= 0 or width <= 0:
        raise ValueError(f"empty image {height}x{width}")
    stride = tile - overlap
    return [
        (x, y, min(x + tile, width), min(y + tile, height))
        for y in _starts(height, tile, stride)
        for x in _starts(width, tile, stride)
    ]


def clip_boxes(
    boxes: np.ndarray, window: tuple[int, int, int, int], min_visible: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) xyxy in image pixels → (boxes in window pixels, indices kept).

    A box is kept when the part inside the window has at least ``min_visible`` of its area (and is not
    empty).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0, y0, x1, y1 = window
    clipped = np.stack(
        [
            np.clip(boxes[:, 0], x0, x1),
            np.clip(boxes[:, 1], y0, y1),
            np.clip(boxes[:, 2], x0, x1),
            np.clip(boxes[:, 3], y0, y1),
        ],
        axis=1,
    )
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = np.clip(clipped[:, 2] - clipped[:, 0], 0, None) * np.clip(clipped[:, 3] - clipped[:, 1], 0, None)
    keep = np.flatnonzero((inside > 0) & (inside >= min_visible * np.maximum(area, 1e-12)))
    return clipped[keep] - np.array([x0, y0, x0, y0], dtype=np.float64), keep


def clip_polygon(points: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """Clip a polygon (K, 2) to a window (Sutherland–Hodgman); returns window coordinates, maybe empty."""
    x0, y0, x1, y1 = window
    pts = [tuple(p) for p in np.asarray(points, dtype=np.float64)]
    edges = [(0, x0, 1), (0, x1, -1), (1, y0, 1), (1, y1, -1)]  # (axis, bound, inside direction)
    for axis, bound, sign in edges:
        if not pts:
            break
        out = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            cin, pin = sign * (cur[axis] - bound) >= 0, sign * (prev[axis] - bound) >= 0
            if cin != pin:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append(tuple(prev[k] + t * (cur[k] - prev[k]) for k in range(2)))
            if cin:
                out.append(cur)
        pts = out
    if len(pts) < 3:
        return np.zeros((0, 2))
    return np.array(pts) - np.array([x0, y0], dtype=np.float64)


def tile_image(image: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """The pixels of one window (a view)."""
    x0, y0, x1, y1 = window
    return image[y0:y1, x0:x1]


def _read_yolo(path: Path) -> list[tuple[int, np.ndarray]]:
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 5:
                out.append((int(parts[0]), np.array([float(v) for v in parts[1:]])))
    return out


def tile_dataset(
    src: str | Path,
    out_dir: str | Path,
    *,
    tile: int = 640,
    overlap: int = 64,
    min_visible: float = 0.5,
    progress: bool = False,
) -> ConversionReport:
    """Cut every image of a dataset (detect, yolo-segment or segment layout, with its manifest.json) that is
    larger than ``tile`` into overlapping tiles, labels clipped to each tile.

    Boxes cut at a tile border are kept when at least ``min_visible`` of their area remains; polygons are
    clipped (and dropped when nothing remains); masks are cropped. A tile keeps its source item's split and
    group, so patient-level splits survive. Tiles are named ``<stem>_x<x0>_y<y0>``.
    """
    from PIL import Image
    from tqdm import tqdm

    from converters.dataset import DatasetWriter, format_line
    from converters.images import ImageError, ImageLoader

    src = Path(src)
    report = ConversionReport()
    try:
        manifest = json.loads(DatasetLayout(src).manifest.read_text())
        kind, classes = manifest["kind"], manifest["classes"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{src}: not a histoloop dataset (manifest.json: {exc})") from None
    if kind not in ("detect", "yolo-segment", "segment"):
        raise ValueError(f"{src}: tiling supports detect, yolo-segment and segment datasets, not {kind}")
    writer = DatasetWriter(out_dir, kind, classes)
    loader = ImageLoader()
    with writer.publishing(report):
        for item in tqdm(manifest["items"], desc="tile", unit="image", disable=not progress, leave=False):
            split, stem = item["split"], item["stem"]
            images = sorted(DatasetLayout(src).images(split).glob(f"{stem}.*"))
            if not images:
                report.skip(stem, f"image images/{split}/{stem}.* not found")
                continue
            try:
                image = loader.load(images[0])
            except ImageError as exc:
                report.skip(stem, str(exc))
                continue
            h, w = image.shape[:2]
            if kind == "segment":
                mask = np.asarray(Image.open(DatasetLayout(src).mask(split, stem)))
            else:
                labels = _read_yolo(DatasetLayout(src).label(split, stem))
            for win in tile_windows(h, w, tile, overlap):
                x0, y0, x1, y1 = win
                tw, th = x1 - x0, y1 - y0
                tstem = writer.unique_stem(f"{stem}_x{x0}_y{y0}")
                writer.write_image(split, tstem, array=np.ascontiguousarray(tile_image(image, win)))
                n = 0
                if kind == "segment":
                    writer.write_mask(split, tstem, np.ascontiguousarray(tile_image(mask, win)))
                else:
                    lines = []
                    for cid, v in labels:
                        if kind == "detect":
                            box = np.array(
                                [
                                    (v[0] - v[2] / 2) * w,
                                    (v[1] - v[3] / 2) * h,
                                    (v[0] + v[2] / 2) * w,
                                    (v[1] + v[3] / 2) * h,
                                ]
                            )
                            kept, _ = clip_boxes(box[None], win, min_visible)
                            for bx0, by0, bx1, by1 in kept:
                                lines.append(
                                    format_line(
                                        cid,
                                        (
                                            (bx0 + bx1) / 2 / tw,
                                            (by0 + by1) / 2 / th,
                                            (bx1 - bx0) / tw,
                                            (by1 - by0) / th,
                                        ),
                                    )
                                )
                        else:
                            poly = clip_polygon(v.reshape(-1, 2) * [w, h], win)
                            if len(poly):
                                lines.append(format_line(cid, (poly / [tw, th]).ravel()))
                    n = len(lines)
                    writer.write_labels(split, tstem, lines)
                writer.add_item(
                    tstem,
                    split,
                    item.get("task_id"),
                    item.get("annotation_ids", []),
                    item.get("group", ""),
                    source=stem,
                    window=list(win),
                    **({"mpp": item["mpp"]} if "mpp" in item else {}),  # tiles keep their field's resolution
                )
                report.add_converted(regions=n)
    return report
