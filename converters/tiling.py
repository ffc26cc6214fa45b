"""Cut large fields into overlapping tiles, with their labels clipped to each tile.

:func:`tile_windows` is shared with tiled inference (training/inference.py): windows of ``tile`` px
stepping by ``tile - overlap``, the last row/column flush with the border so the whole image is covered.
:func:`clip_boxes` keeps a box cut at a tile border only when at least ``min_visible`` of its area remains.

>>> tile_windows(1000, 1000, 512, 64)
[(0, 0, 512, 512), (448, 0, 960, 512), (488, 0, 1000, 512), (0, 448, 512, 960), (448, 448, 960, 960), (488, 448, 1000, 960), (0, 488, 512, 1000), (448, 488, 960, 1000), (488, 488, 1000, 1000)]
>>> tile_windows(300, 200, 512, 64)
[(0, 0, 200, 300)]

**Bad input**: a damaged source dataset (a manifest item that is not an object or names no file, an
image that does not decode, a label file that is not UTF-8 or has a line that is not finite numbers or
names a class the dataset does not have, a mask that is missing, unreadable or not the image's size) skips
that item with the reason; the rest is tiled.
"""

from __future__ import annotations

import glob
import json
import logging
import math
from pathlib import Path

import numpy as np

from converters.layout import SPLITS, DatasetLayout
from converters.report import ConversionReport

logger = logging.getLogger(__name__)


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


def read_labels(path: Path, kind: str, n_classes: int) -> list[tuple[int, np.ndarray]]:
    """The (class id, values) of a dataset's YOLO label file (none when it does not exist); ``ValueError``
    naming the line when one is not a class id in range followed by finite numbers of the kind's count."""
    from converters.inputs import InputError, read_text

    if not path.is_file():
        return []
    try:
        text = read_text(path)
    except InputError as exc:
        raise ValueError(str(exc)) from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            cid = int(parts[0])
            values = [float(v) for v in parts[1:]]
        except ValueError:
            raise ValueError(f"line {n}: not a YOLO line") from None
        bad = next((t for t, v in zip(parts[1:], values, strict=True) if not math.isfinite(v)), None)
        if bad is not None:
            raise ValueError(f"line {n}: not a finite number: {bad[:20]!r}")
        if not 0 <= cid < n_classes:
            raise ValueError(f"line {n}: class id {cid} is not one of the {n_classes} classes")
        if len(values) != 4 if kind == "detect" else (len(values) < 6 or len(values) % 2):
            raise ValueError(f"line {n}: {len(values)} values, not a {kind} label")
        out.append((cid, np.array(values)))
    return out


def _item_problem(item: object) -> str | None:
    """What is wrong with a manifest item (None when it names a stem and a split)."""
    if not isinstance(item, dict):
        return "not an object"
    stem, split = item.get("stem"), item.get("split")
    if not isinstance(stem, str) or not isinstance(split, str):
        return "no stem/split"
    if split not in SPLITS:
        return f"split {split[:40]!r} is not {', '.join(SPLITS[:-1])} or {SPLITS[-1]}"
    if stem in ("", ".", "..") or any(c in stem for c in "/\\\0"):
        return f"stem {stem[:80]!r} is not a file name"
    return None


def _read_manifest(src: Path) -> tuple[str, list[str], list]:
    try:
        manifest = json.loads(DatasetLayout(src).manifest.read_text())
        kind, classes, items = manifest["kind"], manifest["classes"], manifest["items"]
    except RecursionError:
        raise ValueError(f"{src}: not a histoloop dataset (manifest.json nested too deeply)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{src}: not a histoloop dataset (manifest.json: {exc})") from None
    if (
        not isinstance(classes, list)
        or not all(isinstance(c, str) for c in classes)
        or not isinstance(items, list)
    ):
        raise ValueError(f"{src}: not a histoloop dataset (manifest.json: classes or items are not lists)")
    if kind not in ("detect", "yolo-segment", "segment"):
        raise ValueError(f"{src}: tiling supports detect, yolo-segment and segment datasets, not {kind!r}")
    return kind, classes, items


def _tile_lines(kind, labels, win, w, h, min_visible) -> list[str]:
    """The labels of one tile window; a box or polygon left smaller than a written line can say is dropped."""
    from converters.dataset import LabelValueError, box_line, points_line

    x0, y0, x1, y1 = win
    tw, th = x1 - x0, y1 - y0
    lines = []
    for cid, v in labels:
        try:
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
                    lines.append(box_line(cid, bx0, by0, bx1, by1, tw, th))
            else:
                poly = clip_polygon(v.reshape(-1, 2) * [w, h], win)
                if len(poly):
                    lines.append(points_line(cid, np.clip(poly / [tw, th], 0, 1)))
        except LabelValueError:
            continue
    return lines


def _prepare_tiles(src, item, kind, classes, tile, overlap, min_visible, loader, report):
    """(split, image, [(window, lines or mask tile)]) of one manifest item, checked; None when it is skipped.

    The folders win over the manifest: an image moved by hand to another split's folder is tiled into the
    split it is in now."""
    from PIL import Image

    from converters.images import ImageError

    stem = item["stem"]
    layout = DatasetLayout(src)
    found = [
        (s, p)
        for s in dict.fromkeys((item["split"], *SPLITS))  # its own split first, each searched once
        for p in sorted(layout.images(s).glob(f"{glob.escape(stem)}.*"))
    ]
    if not found:
        report.skip(stem, f"image {stem}.* not found in images/{item['split']} (nor in another split)")
        return None
    split, path = found[0]
    if split != item["split"]:
        report.warn(
            stem, f"manifest.json says {item['split']}, the image is in images/{split}: tiled as {split}"
        )
    try:
        image = loader.load(path)
    except ImageError as exc:
        report.skip(stem, str(exc))
        return None
    h, w = image.shape[:2]
    tiles = []
    if kind == "segment":
        path = layout.mask(split, stem)
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
        for win in tile_windows(h, w, tile, overlap):
            tiles.append((win, np.ascontiguousarray(tile_image(mask, win))))
    else:
        rel = layout.label(split, stem).relative_to(src).as_posix()
        try:
            labels = read_labels(layout.label(split, stem), kind, len(classes))
        except ValueError as exc:
            sep = " " if str(exc).startswith("line ") else ": "
            report.skip(stem, f"{rel}{sep}{exc}")
            return None
        for win in tile_windows(h, w, tile, overlap):
            tiles.append((win, _tile_lines(kind, labels, win, w, h, min_visible)))
    return split, image, tiles


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
    from tqdm import tqdm

    from converters.dataset import DatasetWriter
    from converters.images import ImageLoader

    src = Path(src)
    report = ConversionReport()
    kind, classes, items = _read_manifest(src)
    if not items:
        report.skip(str(src), "the dataset has no items (manifest.json)")
        return report
    writer = DatasetWriter(out_dir, kind, classes)
    loader = ImageLoader()
    with writer.publishing(report):
        for n, item in enumerate(tqdm(items, desc="tile", unit="image", disable=not progress, leave=False)):
            problem = _item_problem(item)
            if problem:
                report.skip(f"manifest.json item {n}", problem)
                continue
            try:
                prepared = _prepare_tiles(
                    src, item, kind, classes, tile, overlap, min_visible, loader, report
                )
            except Exception as exc:  # unforeseen input: this item is skipped, never the batch
                logger.warning("%s: cannot be tiled", item["stem"], exc_info=True)
                report.skip(item["stem"], f"cannot be tiled ({type(exc).__name__}: {exc})")
                continue
            if prepared is None:
                continue
            split, image, tiles = prepared
            stem = item["stem"]
            for win, labels in tiles:
                x0, y0 = win[0], win[1]
                tstem = writer.unique_stem(f"{stem}_x{x0}_y{y0}")
                writer.write_image(split, tstem, array=np.ascontiguousarray(tile_image(image, win)))
                n_regions = 0
                if kind == "segment":
                    writer.write_mask(split, tstem, labels)
                else:
                    n_regions = len(labels)
                    writer.write_labels(split, tstem, labels)
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
                report.add_converted(regions=n_regions)
    return report
