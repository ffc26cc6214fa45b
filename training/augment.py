"""Augmentations for histology crops (numpy, no extra dependency): random crops from large tiles, flips and
90° rotations (tissue has no up), and H&E colour jitter in stain space (stain strength varies from lab to
lab and slide to slide): colour deconvolution (Ruifrok & Johnston's H&E-DAB matrix, skimage's ``rgb2hed``)
into haematoxylin, eosin and DAB concentrations, each scaled and shifted a little (Tellez et al. 2018,
"HED" augmentation), and back to RGB. The three linear steps are folded into one 3×3 matrix per image, so
it costs one float32 matmul over the optical densities (BENCHMARKS.md, ## Stain).

>>> rng = np.random.default_rng(0)
>>> img, mask = np.zeros((100, 80, 3), np.uint8), np.zeros((100, 80), np.uint8)
>>> a, b = random_crop(img, mask, 64, rng)
>>> a.shape, b.shape
((64, 64, 3), (64, 64))
"""

from __future__ import annotations

import numpy as np


def pad_to(image: np.ndarray, mask: np.ndarray | None, size: int, fill: int = 255):
    """Pad bottom/right to at least ``size`` (image with white glass, mask with background)."""
    h, w = image.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), constant_values=fill)
        if mask is not None:
            mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=0)
    return image, mask


def random_crop(image: np.ndarray, mask: np.ndarray | None, size: int, rng: np.random.Generator):
    image, mask = pad_to(image, mask, size)
    h, w = image.shape[:2]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return image[y : y + size, x : x + size], None if mask is None else mask[y : y + size, x : x + size]


def flip_rotate(image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator):
    """One of the 8 dihedral transforms, the same for image and mask."""
    k = int(rng.integers(4))
    image = np.rot90(image, k)
    mask = None if mask is None else np.rot90(mask, k)
    if rng.random() < 0.5:
        image = image[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    return np.ascontiguousarray(image), None if mask is None else np.ascontiguousarray(mask)


RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64)
"""Stain vectors (rows: haematoxylin, eosin, DAB) in optical density: skimage.color.rgb_from_hed."""
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)


def optical_density(image: np.ndarray) -> np.ndarray:
    """(..., 3) float32 optical density ``-log((I + 1) / 256)`` of an RGB uint8 image (0 = white glass)."""
    return -np.log((image.astype(np.float32) + 1.0) / 256.0)


def from_optical_density(od: np.ndarray) -> np.ndarray:
    return np.clip(256.0 * np.exp(-od) - 1.0, 0, 255).round().astype(np.uint8)


def rgb_to_hed(image: np.ndarray) -> np.ndarray:
    """(..., 3) float32 haematoxylin, eosin and DAB concentrations (optical-density units; not clipped, so
    :func:`hed_to_rgb` gives the image back)."""
    return optical_density(image) @ HED_FROM_RGB.astype(np.float32)


def hed_to_rgb(hed: np.ndarray) -> np.ndarray:
    return from_optical_density(hed @ RGB_FROM_HED.astype(np.float32))


def he_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 0.05) -> np.ndarray:
    """Scale each stain's concentration by ``1 ± 2·strength`` and shift it by ``± strength`` (optical
    density), at random: ``hed' = hed · α + β``, done as one matrix on the optical densities.

    >>> img = np.full((4, 4, 3), (180, 90, 160), np.uint8)
    >>> out = he_jitter(img, np.random.default_rng(1))
    >>> out.shape, out.dtype, bool((out != img).any()), int(np.abs(out.astype(int) - img).max()) < 40
    ((4, 4, 3), dtype('uint8'), True, True)
    """
    alpha = rng.uniform(1 - 2 * strength, 1 + 2 * strength, 3)
    beta = rng.uniform(-strength, strength, 3)
    matrix = (HED_FROM_RGB * alpha) @ RGB_FROM_HED  # rgb OD -> hed, scaled per stain, -> rgb OD
    shift = beta @ RGB_FROM_HED
    od = optical_density(image) @ matrix.astype(np.float32) + shift.astype(np.float32)
    return from_optical_density(od)


def to_tensor(image: np.ndarray, mean, std):
    """(3, H, W) float32 normalised tensor from an RGB uint8 image."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
