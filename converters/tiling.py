"""Cut large fields into overlapping tiles, with their labels clipped to each tile.

:func:`tile_windows` is shared with tiled inference (training/inference.py): windows of ``tile`` px
stepping by ``tile - overlap``, the last row/column flush with the border so the whole image is covered.
:func:`clip_boxes` keeps a box cut at a tile border only when at least ``min_visible`` of its area remains.

>>> tile_windows(1000, 1000, 512, 64)
[(0, 0, 512, 512), (448, 0, 960, 512), (488, 0, 1000, 512), (0, 448, 512, 960), (448, 448, 960, 960), (488, 448, 1000, 960), (0, 488, 512, 1000), (448, 488, 960, 1000), (488, 488, 1000, 1000)]
>>> tile_windows(300, 200, 512, 64)
[(0, 0, 200, 300)]

How a kind's labels are cut is its row's tiler (:attr:`converters.kinds.DatasetSpec.tiler`: a
:class:`LineTiler` for YOLO lines, the mask's crop for ``segment``); kinds without one are not tiled.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.kinds import DatasetSpec, ItemLabels, dataset_spec, kinds_where, one_of
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


def read_labels(
    path: Path, kind: str, n_classes: int, count_ok: Callable[[int], bool]
) -> list[tuple[int, np.ndarray]]:
    """The (class id, values) of a dataset's YOLO label file (none when it does not exist); ``ValueError``
    naming the line when one is not a class id in range followed by finite numbers, as many as the kind's
    ``count_ok`` allows."""
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
        if not count_ok(len(values)):
            raise ValueError(f"line {n}: {len(values)} values, not a {kind} label")
        out.append((cid, np.array(values)))
    return out


CutLine = Callable[[int, np.ndarray, tuple[int, int, int, int], int, int, float], list[str]]
"""A YOLO kind's cut of one label line: (class id, its values, window, image width, height, min_visible) →
the window's lines (none when nothing of it is left); ``LabelValueError`` when too small to write."""


@dataclass(frozen=True)
class LineTiler:
    """The tiler of a YOLO kind (:class:`converters.kinds.Tiler`): its label file's lines (each holding a
    count of values ``values`` allows), cut to each window by ``cut``."""

    values: Callable[[int], bool]
    """Whether a line of this kind may hold that many values (after the class id)."""
    cut: CutLine

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
        from converters.dataset import LabelValueError

        path = DatasetLayout(src).label(split, stem)
        try:
            labels = read_labels(path, kind, len(classes), self.values)
        except ValueError as exc:
            sep = " " if str(exc).startswith("line ") else ": "
            report.skip(stem, f"{path.relative_to(src).as_posix()}{sep}{exc}")
            return None
        w, h = size
        out = []
        for win in windows:
            lines = []
            for cid, v in labels:
                try:
                    lines.extend(self.cut(cid, v, win, w, h, min_visible))
                except LabelValueError:  # a box or polygon left smaller than a written line can say
                    continue
            out.append(ItemLabels(lines=lines, regions=len(lines)))
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


def _read_manifest(src: Path) -> tuple[DatasetSpec, list[str], list]:
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
    tiled = kinds_where(lambda s: s.tiler is not None)
    if kind not in tiled:
        raise ValueError(f"{src}: tiling supports {one_of(tiled, 'and')} datasets, not {kind!r}")
    return dataset_spec(kind), classes, items


def _prepare_tiles(src, item, spec: DatasetSpec, classes, tile, overlap, min_visible, loader, report):
    """(split, image, [(window, the window's labels)]) of one manifest item, checked; None when it is
    skipped.

    The folders win over the manifest: an image moved by hand to another split's folder is tiled into the
    split it is in now."""
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
    windows = tile_windows(h, w, tile, overlap)
    labels = spec.tiler.tiles(src, spec.kind, split, stem, (w, h), windows, classes, min_visible, report)
    if labels is None:
        return None
    return split, image, list(zip(windows, labels, strict=True))


def tile_dataset(
    src: str | Path,
    out_dir: str | Path,
    *,
    tile: int = 640,
    overlap: int = 64,
    min_visible: float = 0.5,
    progress: bool = False,
    force: bool = False,
) -> ConversionReport:
    """Cut every image of a dataset (detect, yolo-segment or segment layout, with its manifest.json) that is
    larger than ``tile`` into overlapping tiles, labels clipped to each tile.

    Boxes cut at a tile border are kept when at least ``min_visible`` of their area remains; polygons are
    clipped (and dropped when nothing remains); masks are cropped. A tile keeps its source item's split and
    group, so patient-level splits survive. Tiles are named ``<stem>_x<x0>_y<y0>``. ``out_dir`` is replaced;
    it may not be or hold ``src``, and must be new, empty or a dataset histoloop wrote unless ``force``.
    """
    from tqdm import tqdm

    from converters.dataset import DatasetWriter, check_output
    from converters.images import ImageLoader

    src = Path(src)
    check_output(out_dir, [src], force=force)
    report = ConversionReport()
    spec, classes, items = _read_manifest(src)
    if not items:
        report.skip(str(src), "the dataset has no items (manifest.json)")
        return report
    writer = DatasetWriter(out_dir, spec.kind, classes, inputs=[src], force=force)
    loader = ImageLoader()
    with writer.publishing(report):
        for n, item in enumerate(tqdm(items, desc="tile", unit="image", disable=not progress, leave=False)):
            problem = _item_problem(item)
            if problem:
                report.skip(f"manifest.json item {n}", problem)
                continue
            try:
                prepared = _prepare_tiles(
                    src, item, spec, classes, tile, overlap, min_visible, loader, report
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
                writer.write_item(split, tstem, labels)
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
                report.add_converted(regions=labels.regions)
    return report
