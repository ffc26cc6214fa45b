"""One nucleus from a click or a box on an H&E image, with no model: what a smart tool answers on day one.

Before a project has a trained segmenter, interactive pre-annotation (``ml_backend.interactive``) asks
:func:`nucleus_at` for the object at the prompt. The steps, all in a small window around it:

1. colour deconvolution (Ruifrok & Johnston, ``skimage.color.rgb2hed``): the haematoxylin channel, which
   stains nuclei, lightly smoothed;
2. Otsu's threshold of that channel *in the window* (local: stain strength varies across a slide), holes
   filled, specks opened away;
3. the foreground component under the prompt (or the nearest one within half a nucleus);
4. a marker-controlled watershed on its distance transform, seeded at the prompt and at the other
   distance peaks, which splits the clicked nucleus from those it touches; the seed's basin is the answer.

The scale is one parameter, the typical nucleus diameter in pixels (:data:`NUCLEUS_PX`: about 6 µm at 40×,
0.25 µm/px); the window is a few diameters, and it grows while the object reaches its edge. A box gives
its own scale: the window is the box (and a margin), the seed its centre, and the answer is clipped to it.

>>> rng = np.random.default_rng(0)
>>> img = np.full((120, 120, 3), (235, 200, 225), np.uint8)  # pink stroma
>>> yy, xx = np.mgrid[:120, :120]
>>> img[(yy - 60) ** 2 + (xx - 50) ** 2 < 12**2] = (90, 50, 140)  # a purple nucleus
>>> found = nucleus_at(img, 52, 58)
>>> found is not None and 300 < int(found.mask.sum()) < 600, bool(found.mask[60 - found.y0, 50 - found.x0])
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUCLEUS_PX = 24.0
"""Typical nucleus diameter in pixels at 40× (about 0.25 µm/px): the MoNuSeg breast tiles' median area is
300–600 px², 20–28 px across."""
WINDOW_DIAMETERS = 4.0
"""The first window's side, in nucleus diameters (a few nuclei and their stroma: both sides of Otsu)."""
GROW_STEPS = 2
"""How many times the window doubles while the object touches its edge."""
MIN_CONTRAST = 0.02
"""Below this spread of the haematoxylin channel (optical density) the window has no nucleus to find."""


@dataclass(frozen=True)
class Nucleus:
    """The object found: ``mask`` is (y1-y0, x1-x0) bool over the image window ``x0, y0, x1, y1``."""

    mask: np.ndarray
    x0: int
    y0: int
    x1: int
    y1: int
    score: float
    """How far the object's haematoxylin lies above the threshold, in (0, 1): a rough confidence."""

    def full(self, height: int, width: int) -> np.ndarray:
        """The mask on a ``height`` x ``width`` image."""
        out = np.zeros((height, width), bool)
        out[self.y0 : self.y1, self.x0 : self.x1] = self.mask
        return out


def _window(cx: float, cy: float, half: float, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0 = max(0, int(np.floor(cx - half))), max(0, int(np.floor(cy - half)))
    x1, y1 = min(width, int(np.ceil(cx + half)) + 1), min(height, int(np.ceil(cy + half)) + 1)
    return x0, y0, x1, y1


def haematoxylin(rgb: np.ndarray, smooth: float) -> np.ndarray:
    """(H, W) float haematoxylin concentration of an RGB crop, Gaussian-smoothed by ``smooth`` px."""
    from scipy import ndimage
    from skimage.color import rgb2hed

    h = rgb2hed(np.ascontiguousarray(rgb[..., :3]))[..., 0]
    return ndimage.gaussian_filter(h, smooth) if smooth > 0 else h


def _foreground(h: np.ndarray, diameter: float) -> tuple[np.ndarray, float] | None:
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    if float(h.max() - h.min()) < MIN_CONTRAST:
        return None
    t = float(threshold_otsu(h))
    fg = ndimage.binary_fill_holes(h > t)
    r = max(1, round(diameter / 12))
    disk = np.hypot(*np.mgrid[-r : r + 1, -r : r + 1]) <= r
    return ndimage.binary_opening(fg, structure=disk), t


def _seed(fg: np.ndarray, row: int, col: int, near: float) -> tuple[int, int] | None:
    """The foreground pixel at (row, col), else the nearest within ``near``."""
    if fg[row, col]:
        return row, col
    ys, xs = np.nonzero(fg)
    if not len(ys):
        return None
    d2 = (ys - row) ** 2 + (xs - col) ** 2
    i = int(d2.argmin())
    return (int(ys[i]), int(xs[i])) if d2[i] <= near * near else None


def _split(component: np.ndarray, seed: tuple[int, int], diameter: float) -> np.ndarray:
    """The part of ``component`` (bool) whose watershed basin holds ``seed``; the other basins are seeded
    at the distance peaks farther from the seed than the seed's own distance to the border."""
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    dist = ndimage.distance_transform_edt(component)
    seed = _climb(dist, seed)
    markers = np.zeros(component.shape, np.int32)
    peaks = peak_local_max(
        dist, min_distance=max(2, int(diameter / 4)), threshold_abs=diameter / 8, labels=component.astype(int)
    )
    reach = max(float(dist[seed]), diameter / 3)
    label = 2
    for r, c in peaks:
        if np.hypot(r - seed[0], c - seed[1]) > 1.5 * reach:
            markers[r, c] = label
            label += 1
    if label == 2:
        return component
    markers[seed] = 1
    basins = watershed(-dist, markers, mask=component)
    mine, _ = ndimage.label(basins == 1)
    return np.asarray(mine == mine[seed])


def _climb(dist: np.ndarray, at: tuple[int, int]) -> tuple[int, int]:
    """From ``at``, up the distance transform to its ridge (a click lands anywhere on the nucleus)."""
    row, col = at
    height, width = dist.shape
    for _ in range(dist.size):
        r0, c0 = max(0, row - 1), max(0, col - 1)
        patch = dist[r0 : row + 2, c0 : col + 2]
        r, c = np.unravel_index(int(patch.argmax()), patch.shape)
        if patch[r, c] <= dist[row, col]:
            break
        row, col = r0 + int(r), c0 + int(c)
    return min(row, height - 1), min(col, width - 1)


def _find(
    rgb: np.ndarray, x: float, y: float, diameter: float, window: tuple[int, int, int, int]
) -> Nucleus | None:
    from scipy import ndimage

    x0, y0, x1, y1 = window
    h = haematoxylin(rgb[y0:y1, x0:x1], smooth=diameter / 16)
    found = _foreground(h, diameter)
    if found is None:
        return None
    fg, t = found
    row = min(max(int(y) - y0, 0), y1 - y0 - 1)
    col = min(max(int(x) - x0, 0), x1 - x0 - 1)
    seed = _seed(fg, row, col, near=diameter / 2)
    if seed is None:
        return None
    comp, _ = ndimage.label(fg)
    mask = _split(comp == comp[seed], seed, diameter)
    spread = float(np.percentile(h, 99) - t) or 1.0
    score = float(np.clip((float(np.median(h[mask])) - t) / spread, 0.05, 1.0))
    return Nucleus(mask, x0, y0, x1, y1, score)


def _touches_edge(found: Nucleus, width: int, height: int) -> bool:
    m = found.mask
    return bool(
        (m[0].any() and found.y0 > 0)
        or (m[-1].any() and found.y1 < height)
        or (m[:, 0].any() and found.x0 > 0)
        or (m[:, -1].any() and found.x1 < width)
    )


def nucleus_at(
    rgb: np.ndarray,
    x: float,
    y: float,
    *,
    diameter: float = NUCLEUS_PX,
    box: tuple[float, float, float, float] | None = None,
) -> Nucleus | None:
    """The nucleus at pixel ``(x, y)`` of an RGB image (or the one in ``box``, ``x0, y0, x1, y1``, centred
    near ``(x, y)``), or None when there is no haematoxylin-stained object there (see the module doc)."""
    height, width = rgb.shape[:2]
    if box is not None:
        bx0, by0, bx1, by1 = box
        diameter = max(4.0, min(bx1 - bx0, by1 - by0))
        half = max(bx1 - bx0, by1 - by0) / 2 + diameter
        found = _find(rgb, x, y, diameter, _window((bx0 + bx1) / 2, (by0 + by1) / 2, half, width, height))
        if found is None:
            return None
        rows, cols = np.mgrid[found.y0 : found.y1, found.x0 : found.x1]
        inside = (cols >= bx0) & (cols < bx1) & (rows >= by0) & (rows < by1)
        clipped = found.mask & inside
        if not clipped.any():
            return None
        return Nucleus(clipped, found.x0, found.y0, found.x1, found.y1, found.score)
    half = WINDOW_DIAMETERS * diameter / 2
    found = None
    for _ in range(GROW_STEPS + 1):
        found = _find(rgb, x, y, diameter, _window(x, y, half, width, height))
        if found is None or not _touches_edge(found, width, height):
            break
        half *= 2
    return found
