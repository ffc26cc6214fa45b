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


def monuseg_nuclei(xml_path: Path) -> list[np.ndarray]:
    """The nucleus outlines of an Aperio ImageScope XML as (N, 2) float x, y arrays (a few lines for the
    tests; the converters have the real reader)."""
    import xml.etree.ElementTree as ET

    regions = []
    for region in ET.parse(xml_path).getroot().iter("Region"):
        pts = [(float(v.get("X")), float(v.get("Y"))) for v in region.iter("Vertex")]
        if len(pts) >= 3:
            regions.append(np.array(pts))
    return regions


def write_monuseg(shared_data: Path, root: Path, kind: str, crop: int = 128, per_tile: int = 2) -> Path:
    """Crops of the real MoNuSeg tiles: nuclei boxes (detect) or nuclei masks (segment); the last tile is val."""
    from PIL import ImageDraw

    tiles = sorted((shared_data / "monuseg-breast" / "images").glob("*.tif"))
    for t, image_path in enumerate(tiles):
        split = "val" if t == len(tiles) - 1 else "train"
        with Image.open(image_path) as im:
            image = im.convert("RGB")
        mask = Image.new("L", image.size, 0)
        draw = ImageDraw.Draw(mask)
        nuclei = monuseg_nuclei(shared_data / "monuseg-breast" / "annotations" / f"{image_path.stem}.xml")
        for pts in nuclei:
            draw.polygon([tuple(p) for p in pts], fill=1)
        for k in range(per_tile):
            x0 = y0 = 200 + k * crop * 2
            stem = f"{image_path.stem}_{k}"
            img_dir = root / "images" / split
            img_dir.mkdir(parents=True, exist_ok=True)
            image.crop((x0, y0, x0 + crop, y0 + crop)).save(img_dir / f"{stem}.png")
            if kind == "segment":
                (root / "masks" / split).mkdir(parents=True, exist_ok=True)
                mask.crop((x0, y0, x0 + crop, y0 + crop)).save(root / "masks" / split / f"{stem}.png")
                continue
            lines = []
            for pts in nuclei:
                bx0, by0 = np.clip(pts.min(0) - (x0, y0), 0, crop)
                bx1, by1 = np.clip(pts.max(0) - (x0, y0), 0, crop)
                if bx1 - bx0 >= 3 and by1 - by0 >= 3:
                    cx, cy, w, h = (
                        (bx0 + bx1) / 2 / crop,
                        (by0 + by1) / 2 / crop,
                        (bx1 - bx0) / crop,
                        (by1 - by0) / crop,
                    )
                    lines.append(f"0 {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    if kind == "segment":
        (root / "classes.txt").write_text("nucleus\n")
    else:
        (root / "data.yaml").write_text(
            "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: nucleus\n"
        )
    return root


@pytest.fixture
def monuseg(shared_data: Path, tmp_path: Path):
    """``monuseg(kind, crop=128, per_tile=1) -> dataset dir`` built from the real MoNuSeg tiles."""

    def build(kind: str, crop: int = 128, per_tile: int = 1) -> Path:
        return write_monuseg(shared_data, tmp_path / f"monuseg-{kind}", kind, crop=crop, per_tile=per_tile)

    return build


@pytest.fixture
def writers() -> dict:
    """The dataset writers above, for tests that need a variant of a dataset."""
    return {"detect": write_detect, "segment": write_segment, "classify": write_classify}
