"""Augmentations for histology crops (numpy, no extra dependency): random crops from large tiles, flips and
90° rotations (tissue has no up), and H&E colour jitter in optical-density space (stain strength varies
from lab to lab and slide to slide).

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


def he_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 0.05) -> np.ndarray:
    """Scale and shift each channel's optical density by a small random amount (stain variation)."""
    od = -np.log((image.astype(np.float32) + 1.0) / 256.0)
    alpha = rng.uniform(1 - strength, 1 + strength, 3).astype(np.float32)
    beta = rng.uniform(-strength, strength, 3).astype(np.float32)
    out = 256.0 * np.exp(-(od * alpha + beta)) - 1.0
    return np.clip(out, 0, 255).astype(np.uint8)


def to_tensor(image: np.ndarray, mean, std):
    """(3, H, W) float32 normalised tensor from an RGB uint8 image."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
