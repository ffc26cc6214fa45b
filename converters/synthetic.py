"""H&E-like synthetic tiles with exact labels: for the demo, the tests and the benchmarks.

Real slides cannot be shipped (licences), and nothing may be downloaded, so this draws a tile that looks
enough like H&E for a model to learn something: pink eosin stroma with fibre texture, purple hematoxylin
nuclei, and — in malignant tiles — tumor nests: dense clusters of larger, darker, irregular nuclei. The
labels are exact: a tumor mask, the tumor nests' boxes, and benign/malignant.

>>> tile = make_tile(seed=3, size=128, malignant=True)
>>> tile.image.shape, tile.image.dtype, tile.label
((128, 128, 3), dtype('uint8'), 'malignant')
>>> bool(tile.mask.any()) and len(tile.boxes) >= 1
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EOSIN = np.array([236, 170, 200], dtype=np.float32)
STROMA = np.array([214, 120, 170], dtype=np.float32)
HEMATOXYLIN = np.array([90, 50, 140], dtype=np.float32)
TUMOR_NUCLEUS = np.array([60, 30, 110], dtype=np.float32)


@dataclass
class Tile:
    image: np.ndarray
    """(H, W, 3) uint8 RGB."""
    mask: np.ndarray
    """(H, W) bool: tumor."""
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    """Tumor nests as (x1, y1, x2, y2) pixels."""
    label: str = "benign"


def _blur(a: np.ndarray, passes: int = 2) -> np.ndarray:
    for _ in range(passes):
        a = (a + np.roll(a, 1, 0) + np.roll(a, -1, 0) + np.roll(a, 1, 1) + np.roll(a, -1, 1)) / 5
    return a


def _ellipse(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float, angle: float
) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = yy - cy, xx - cx
    u, v = dx * c + dy * s, -dx * s + dy * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def make_tile(seed: int, size: int = 256, malignant: bool | None = None, nests: int | None = None) -> Tile:
    """One tile; ``malignant=None`` draws it at random (half the tiles)."""
    rng = np.random.default_rng(seed)
    if malignant is None:
        malignant = bool(rng.random() < 0.5)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    fibres = _blur(rng.random((size, size)).astype(np.float32), 3)
    fibres = (fibres - fibres.min()) / (np.ptp(fibres) + 1e-6)
    img = EOSIN[None, None] * (1 - fibres[..., None] * 0.6) + STROMA[None, None] * fibres[..., None] * 0.6

    mask = np.zeros((size, size), dtype=bool)
    boxes: list[tuple[int, int, int, int]] = []
    if malignant:
        for _ in range(nests or int(rng.integers(1, 3))):
            r = rng.uniform(0.12, 0.22) * size
            cy, cx = rng.uniform(r, size - r, 2)
            nest = _ellipse(yy, xx, cy, cx, r * rng.uniform(0.7, 1.0), r, rng.uniform(0, np.pi))
            if not nest.any():
                continue
            mask |= nest
            ys, xs = np.nonzero(nest)
            boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))

    def nuclei(count: int, radius: tuple[float, float], colour: np.ndarray, where: np.ndarray | None) -> None:
        candidates = np.argwhere(where) if where is not None else None
        for _ in range(count):
            if candidates is not None:
                if not len(candidates):
                    return
                cy, cx = candidates[rng.integers(len(candidates))]
            else:
                cy, cx = rng.uniform(0, size, 2)
            rx = rng.uniform(*radius)
            y0, y1 = max(int(cy - rx) - 1, 0), min(int(cy + rx) + 2, size)
            x0, x1 = max(int(cx - rx) - 1, 0), min(int(cx + rx) + 2, size)
            blob = _ellipse(
                yy[y0:y1, x0:x1],
                xx[y0:y1, x0:x1],
                cy,
                cx,
                rx * rng.uniform(0.6, 1.0),
                rx,
                rng.uniform(0, np.pi),
            )
            img[y0:y1, x0:x1][blob] = colour * rng.uniform(0.85, 1.15)

    scale = size / 256
    nuclei(int(40 * scale**2), (2.0 * scale, 3.5 * scale), HEMATOXYLIN, None)
    if malignant:
        nuclei(int(mask.mean() * 600 * scale**2) + 5, (3.5 * scale, 6.0 * scale), TUMOR_NUCLEUS, mask)
        img = np.where(mask[..., None], img * 0.9, img)
    img = img + rng.normal(0, 6, img.shape)
    return Tile(
        image=np.clip(img, 0, 255).astype(np.uint8),
        mask=mask,
        boxes=boxes,
        label="malignant" if malignant else "benign",
    )
