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

import numpy as np


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
