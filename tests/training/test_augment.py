"""The H&E jitter works in stain space and keeps the tissue's structure (real MoNuSeg tiles)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converters.images import ImageLoader
from training.augment import HED_FROM_RGB, RGB_FROM_HED, he_jitter, hed_to_rgb, rgb_to_hed


@pytest.fixture(scope="module")
def tile(shared_data: Path) -> np.ndarray:
    path = sorted((shared_data / "monuseg-breast" / "images").glob("*.tif"))[0]
    return ImageLoader().load(str(path))[:512, :512]


def test_colour_deconvolution_is_skimages_and_inverts(tile: np.ndarray) -> None:
    skimage_color = pytest.importorskip("skimage.color")
    np.testing.assert_allclose(RGB_FROM_HED, skimage_color.rgb_from_hed)
    np.testing.assert_allclose(HED_FROM_RGB, skimage_color.hed_from_rgb, atol=1e-12)
    hed = rgb_to_hed(tile)
    theirs = skimage_color.rgb2hed(tile)
    clipped = np.maximum(hed, 0)  # skimage clips negative concentrations (so it cannot invert exactly)
    assert np.corrcoef(clipped[..., 0].ravel(), theirs[..., 0].ravel())[0, 1] > 0.99  # same haematoxylin
    assert np.corrcoef(clipped[..., 1].ravel(), theirs[..., 1].ravel())[0, 1] > 0.99  # same eosin
    assert np.abs(hed_to_rgb(hed).astype(int) - tile).max() <= 1


def test_jitter_scales_and_shifts_the_stain_concentrations(tile: np.ndarray) -> None:
    """he_jitter(image) == hed_to_rgb(hed * alpha + beta) with alpha, beta drawn from the same generator."""
    strength = 0.05
    got = he_jitter(tile, np.random.default_rng(7), strength)
    rng = np.random.default_rng(7)
    alpha = rng.uniform(1 - 2 * strength, 1 + 2 * strength, 3)
    beta = rng.uniform(-strength, strength, 3)
    want = hed_to_rgb((rgb_to_hed(tile) * alpha + beta).astype(np.float32))
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_a_jittered_tile_keeps_its_structure(tile: np.ndarray) -> None:
    import cv2

    grey = cv2.cvtColor(tile, cv2.COLOR_RGB2GRAY).astype(float)
    nuclei = rgb_to_hed(tile)[..., 0]
    nuclei = nuclei > np.percentile(nuclei, 80)
    changed = []
    for seed in range(8):
        out = he_jitter(tile, np.random.default_rng(seed), strength=0.05)
        assert (
            np.corrcoef(grey.ravel(), cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(float).ravel())[0, 1]
            > 0.97
        )
        h = rgb_to_hed(out)[..., 0]
        jittered = h > np.percentile(h, 80)
        assert (nuclei & jittered).sum() / (nuclei | jittered).sum() > 0.8  # the same nuclei
        changed.append(np.abs(out.astype(float).mean((0, 1)) - tile.astype(float).mean((0, 1))).max())
    assert max(changed) > 3  # and the colour did change
