"""Stain normalisation (Macenko et al. 2009): every image's haematoxylin and eosin mapped onto a reference's.

Optional, per project: a reference image is named in the training options
(``TrainConfig.extra["stain_reference"]``, e.g. ``[projects."4".train.segment] extra = {stain_reference =
"/refs/lab4.png"}``); the trainer fits it, stores the fitted reference in the version's model card
(``card.extra["stain"]``), trains on normalised images, and every later use of that version — evaluation,
``/predict``, slide prediction — normalises the same way (:class:`training.inference.TiledPredictor`
applies it to each image before the model sees it). A version without it sees images unchanged.

The implementation is numpy, float32, vectorised: the stain vectors and concentration percentiles are fitted
on at most 65536 of an image's pixels, and source concentrations → reference concentrations → reference
stains fold into one 3×3 map of optical densities. It is 1.8x (256²) to 7.5x (1000²) faster than
torchstain 1.4.1's numpy Macenko on the same images (BENCHMARKS.md, ## Whole slides and stain); torchstain
also installs a top-level ``tests`` package that shadows this project's tests, a second reason not to
depend on it.

>>> rng = np.random.default_rng(0)
>>> ref = np.clip(rng.normal((170, 100, 180), 30, (64, 64, 3)), 0, 255).astype(np.uint8)
>>> entry = fit_reference(ref)
>>> entry["method"], np.array(entry["stain_matrix"]).shape
('macenko', (2, 3))
>>> normaliser(entry)(ref).shape
(64, 64, 3)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BETA = 0.15
"""Optical density below which a pixel is glass (left out of the fit)."""
ALPHA = 1.0
"""Percentile of the angle distribution taken as the extreme stain directions."""
MIN_TISSUE_PIXELS = 200
FIT_PIXELS = 65536
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def _od(image: np.ndarray) -> np.ndarray:
    return -np.log((image.reshape(-1, 3).astype(np.float32) + 1.0) / 256.0)


def macenko_fit(image: np.ndarray, od: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(stain matrix (2, 3): H and E rows in optical density, 99th-percentile concentrations (2,)) of an
    RGB image; None when it holds too little tissue to fit. Fitted on at most :data:`FIT_PIXELS` pixels
    (every k-th): the stain directions and percentiles of a field do not need all of its million pixels."""
    od = _od(image) if od is None else od
    sample = od[:: max(1, len(od) // FIT_PIXELS)]
    tissue = sample[(sample > BETA).all(axis=1)]
    if len(tissue) < MIN_TISSUE_PIXELS:
        return None
    _, vecs = np.linalg.eigh(np.cov(tissue, rowvar=False))
    plane = np.ascontiguousarray(vecs[:, 1:3], dtype=np.float32)  # the two largest eigenvectors
    proj = tissue @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [ALPHA, 100 - ALPHA])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)], np.float32)
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)], np.float32)
    he = np.stack([v1, v2] if v1[0] > v2[0] else [v2, v1])  # haematoxylin: the larger red OD
    he *= np.sign(he.sum(axis=1, keepdims=True))  # stain vectors point into positive OD
    he /= np.linalg.norm(he, axis=1, keepdims=True)
    conc = sample @ np.linalg.pinv(he).astype(np.float32)  # (n, 2)
    max_conc = np.percentile(conc, 99, axis=0).astype(np.float32)
    return he.astype(np.float32), np.maximum(max_conc, 1e-6)


def fit_reference(image: np.ndarray | str | Path, method: str = "macenko") -> dict[str, Any]:
    """The card entry of a reference image (an array or a file)."""
    if method != "macenko":
        raise ValueError(f"unknown stain normalisation {method!r} (only 'macenko')")
    if not isinstance(image, np.ndarray):
        from PIL import Image

        image = np.array(Image.open(image).convert("RGB"))
    fitted = macenko_fit(image)
    if fitted is None:
        raise ValueError("the stain reference holds too little tissue to fit (choose a field full of tissue)")
    he, max_conc = fitted
    return {"method": method, "stain_matrix": he.round(6).tolist(), "max_conc": max_conc.round(6).tolist()}


def normaliser(entry: dict[str, Any] | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """The function a card's ``extra["stain"]`` entry stands for (None: no normalisation)."""
    if not entry:
        return None
    ref_he = np.asarray(entry["stain_matrix"], np.float32)
    ref_max = np.asarray(entry["max_conc"], np.float32)

    def normalise(image: np.ndarray) -> np.ndarray:
        od = _od(image)
        fitted = macenko_fit(image, od)
        if fitted is None:  # glass, or nearly: nothing to normalise
            return image
        he, max_conc = fitted
        # source concentrations, rescaled to the reference's, through the reference's stains: one 3×3 map
        matrix = (np.linalg.pinv(he) * (ref_max / max_conc)) @ ref_he
        out = np.exp(-(od @ matrix.astype(np.float32)))
        out *= 256.0
        out -= 1.0
        return np.clip(out, 0, 255).astype(np.uint8).reshape(image.shape)

    return normalise


def normalise_dataset(dataset_dir: Path, out_dir: Path, fn: Callable[[np.ndarray], np.ndarray]) -> Path:
    """A copy of a dataset with every image normalised (masks, labels and the rest hard-linked or copied)."""
    from PIL import Image

    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    for src in dataset_dir.rglob("*"):
        dst = out_dir / src.relative_to(dataset_dir)
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        rel = src.relative_to(dataset_dir).parts
        if src.suffix.lower() in IMAGE_SUFFIXES and not {
            "masks",
            "masks_binary",
            "instances",
            "labels",
        } & set(rel):
            out = Image.fromarray(fn(np.array(Image.open(src).convert("RGB"))))
            out.save(dst, **({"quality": 95} if dst.suffix.lower() in (".jpg", ".jpeg") else {}))
        else:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    return out_dir
