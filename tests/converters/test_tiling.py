"""Tile windows, clipped labels, and a tiled dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from converters.tiling import clip_boxes, clip_polygon, tile_dataset, tile_windows


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap"),
    [(1000, 1000, 512, 64), (4000, 1360, 640, 64), (700, 640, 640, 0), (50, 30, 64, 8)],
)
def test_windows_cover_the_image_and_end_flush(h, w, tile, overlap):
    wins = tile_windows(h, w, tile, overlap)
    cover = np.zeros((h, w), int)
    for x0, y0, x1, y1 in wins:
        assert x1 - x0 == min(tile, w) and y1 - y0 == min(tile, h)
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1
    assert max(x1 for *_, x1, _ in wins) == w and max(y1 for *_, y1 in wins) == h
    with pytest.raises(ValueError):
        tile_windows(h, w, tile, tile)


def test_boxes_cut_at_a_border_need_enough_left():
    boxes = np.array([[10, 10, 30, 30], [90, 10, 130, 30], [70, 10, 110, 30], [200, 200, 210, 210]])
    kept, idx = clip_boxes(boxes, (0, 0, 100, 100), min_visible=0.5)
    assert idx.tolist() == [0, 2]  # 25 % of box 1 remains, 75 % of box 2, box 3 is outside
    assert kept.tolist() == [[10, 10, 30, 30], [70, 10, 100, 30]]
    assert clip_polygon(
        np.array([[50, 50], [150, 50], [150, 150], [50, 150]]), (100, 100, 200, 200)
    ).tolist() == [[0.0, 0.0], [50.0, 0.0], [50.0, 50.0], [0.0, 50.0]]


def _dataset(tmp_path):
    from converters.dataset import DatasetWriter

    writer = DatasetWriter(tmp_path / "big", "detect", ["tumor"])
    img = np.random.default_rng(0).integers(0, 255, (300, 500, 3), dtype=np.uint8)
    writer.write_image("train", "TCGA-AA-0001-x", array=img)
    # one box well inside the first tile, one across the vertical tile border at x=256
    writer.write_labels(
        "train",
        "TCGA-AA-0001-x",
        ["0 0.100000 0.100000 0.040000 0.066667", "0 0.500000 0.500000 0.100000 0.100000"],
    )
    writer.add_item("TCGA-AA-0001-x", "train", 7, [70], "TCGA-AA-0001")
    writer.publish()
    return tmp_path / "big"


def test_tile_a_detect_dataset(tmp_path):
    report = tile_dataset(_dataset(tmp_path), tmp_path / "tiles", tile=256, overlap=32, min_visible=0.6)
    manifest = json.loads((tmp_path / "tiles" / "manifest.json").read_text())
    assert report.converted == len(tile_windows(300, 500, 256, 32)) == len(manifest["items"])
    assert {i["group"] for i in manifest["items"]} == {"TCGA-AA-0001"} and {
        i["task_id"] for i in manifest["items"]
    } == {7}
    labels = {
        p.stem: p.read_text().splitlines() for p in (tmp_path / "tiles" / "labels" / "train").glob("*.txt")
    }
    # box 2 spans x 225..275: tile x0=0 (to 256) keeps 31/50 = 62 %, tile x0=224 keeps it whole
    first = labels["TCGA-AA-0001-x_x0_y0"]
    assert len(first) == 2
    for stem, lines in labels.items():
        for line in lines:
            vals = [float(v) for v in line.split()[1:]]
            assert all(0 <= v <= 1 for v in vals), stem
    assert Image.open(tmp_path / "tiles" / "images" / "train" / "TCGA-AA-0001-x_x0_y0.png").size == (256, 256)
    strict = tile_dataset(tmp_path / "big", tmp_path / "tiles2", tile=256, overlap=32, min_visible=0.9)
    assert strict.regions < report.regions


def test_an_image_moved_to_another_split_by_hand_is_tiled_where_it_is(tmp_path):
    """The folders win over manifest.json: a pair moved from train/ to val/ lands in val/, with a warning;
    an image in no split is skipped, named."""
    src = _dataset(tmp_path)
    for sub, ext in (("images", "png"), ("labels", "txt")):
        (src / sub / "val").mkdir(parents=True, exist_ok=True)
        (src / sub / "train" / f"TCGA-AA-0001-x.{ext}").rename(src / sub / "val" / f"TCGA-AA-0001-x.{ext}")
    report = tile_dataset(src, tmp_path / "tiles", tile=256, overlap=32)
    tiles = tmp_path / "tiles"
    assert report.converted == len(list((tiles / "images" / "val").glob("*.png"))) > 0
    assert not list((tiles / "images" / "train").glob("*.png"))
    assert {i["split"] for i in json.loads((tiles / "manifest.json").read_text())["items"]} == {"val"}
    assert any("manifest.json says train, the image is in images/val" in m for _, m in report.warnings)
    labels = list((tiles / "labels" / "val").glob("*.txt"))
    assert sum(len(p.read_text().splitlines()) for p in labels) >= 2

    (src / "images" / "val" / "TCGA-AA-0001-x.png").unlink()
    gone = tile_dataset(src, tmp_path / "tiles-gone", tile=256, overlap=32)
    assert gone.converted == 0
    assert gone.skipped == [
        ("TCGA-AA-0001-x", "image TCGA-AA-0001-x.* not found in images/train (nor in another split)")
    ]
