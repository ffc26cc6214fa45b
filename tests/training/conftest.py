"""Tiny generated datasets in the layouts the converters write (contracts.md), for the trainer tests.

Images come from converters.synthetic (H&E-like tiles with exact tumor masks/boxes/labels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from converters.synthetic import make_tile

SIZE = 64


def _split(i: int, n_val: int, n: int) -> str:
    return "val" if i >= n - n_val else "train"


def write_detect(root: Path, n: int = 16, n_val: int = 4, size: int = SIZE) -> Path:
    for s in ("train", "val"):
        (root / "images" / s).mkdir(parents=True, exist_ok=True)
        (root / "labels" / s).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        tile = make_tile(seed=i, size=size, malignant=i % 4 != 3)
        split = _split(i, n_val, n)
        Image.fromarray(tile.image).save(root / "images" / split / f"t{i}.png")
        lines = [
            f"0 {(x0 + x1) / 2 / size:.6f} {(y0 + y1) / 2 / size:.6f} {(x1 - x0) / size:.6f} {(y1 - y0) / size:.6f}"
            for x0, y0, x1, y1 in tile.boxes
        ]
        (root / "labels" / split / f"t{i}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: tumor\n")
    return root


def write_segment(root: Path, n: int = 12, n_val: int = 3, size: int = SIZE) -> Path:
    for s in ("train", "val"):
        (root / "images" / s).mkdir(parents=True, exist_ok=True)
        (root / "masks" / s).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        tile = make_tile(seed=100 + i, size=size, malignant=i % 3 != 2)
        split = _split(i, n_val, n)
        Image.fromarray(tile.image).save(root / "images" / split / f"s{i}.png")
        Image.fromarray(tile.mask.astype(np.uint8)).save(root / "masks" / split / f"s{i}.png")
    (root / "classes.txt").write_text("tumor\n")
    return root


def write_classify(root: Path, n: int = 16, n_val: int = 6, size: int = SIZE) -> Path:
    for i in range(n):
        tile = make_tile(seed=200 + i, size=size, malignant=bool(i % 2))
        d = root / _split(i, n_val, n) / tile.label
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(tile.image).save(d / f"c{i}.png")
    (root / "classes.txt").write_text("benign\nmalignant\n")
    return root


@pytest.fixture(scope="session")
def detect_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_detect(tmp_path_factory.mktemp("detect"))


@pytest.fixture(scope="session")
def segment_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_segment(tmp_path_factory.mktemp("segment"))


@pytest.fixture(scope="session")
def classify_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_classify(tmp_path_factory.mktemp("classify"))
