"""A registered model version over a whole slide (a real pyramid made here from the MoNuSeg tiles): fields
of the tissue only, regions joined across field borders, GeoJSON in slide coordinates, overlay, heat map."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from converters.layout import DatasetLayout
from training.artifacts import ModelCard, save_weights
from training.slides import DEFAULT_MODEL_MPP, model_mpp, predict_slide
from training.trainer import dataset_mpp
from training.untrained import untrained_state


@pytest.fixture(scope="module")
def slide(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from slide_testkit import make_slide

    return make_slide(
        shared_data, tmp_path_factory.mktemp("slide") / "TCGA-AR-A1AK-01Z-00-DX1.tif", size=1000
    )


def _constant_segmenter(directory: Path) -> Path:
    """A real U-Net whose head says "tumor" everywhere (zero weights, bias +10): every field's core is tumor."""
    card = ModelCard(
        kind="segment",
        classes=["tumor"],
        input_size=32,
        extra={"mpp": 1.0},
        arch={"arch": "Unet", "encoder": "resnet18", "mode": "binary"},
    )
    card.save(directory)
    save_weights(untrained_state(card, head_bias=10.0, constant=True), directory)
    return directory


def test_segment_over_the_tissue_joined_across_fields(slide: Path, tmp_path: Path) -> None:
    version = _constant_segmenter(tmp_path / "v1")
    result = predict_slide(
        slide, version, tmp_path / "out", device="cpu", field_size=128, version_label="segment-v1"
    )
    assert result.mpp == 1.0 and result.field_size == 128
    # 128 px at 1 µm/px = 512 slide px (0.25 µm/px), a step of 120 px (overlap 8 = input / 4) = 480 slide px:
    # rows at 0, 480, 960 (the last reaching past the edge); the column at 480 holds 4 % tissue: left out
    assert result.fields == 3 and result.read_seconds > 0 and result.model_seconds > 0
    fc = json.loads(Path(result.outputs["geojson"]).read_text())
    assert fc["properties"]["model_version"] == "segment-v1" and fc["properties"]["mpp"] == 1.0
    (feat,) = fc["features"]  # three fields' cores, one region
    from shapely import box
    from shapely.geometry import shape

    from converters.slides import TissueMap, open_slide

    region = shape(feat["geometry"])
    with open_slide(slide) as s:
        tissue = TissueMap.of(s)
    # one column of fields (0-512, clipped to the slide's bottom), "tumor" everywhere: cut to the tissue in it
    column = tissue.clip(box(0, 0, 512, 1000))
    assert region.area == pytest.approx(column.area, rel=0.01) and region.area > 0.3 * 512 * 1000
    assert region.difference(tissue.geometry.buffer(1)).area < 1  # nothing on glass
    props = feat["properties"]
    assert props["classification"]["name"] == "tumor" and props["measurements"]["score"] > 0.99
    overlay = np.array(Image.open(result.outputs["overlay"]))
    assert overlay.shape == (1000, 1000, 3)
    assert overlay[500, 900].tolist() == [243, 243, 243]  # glass: nothing drawn
    inside = region.representative_point()  # the overlay is at full resolution here (a 1000 px slide)
    assert overlay[int(inside.y), int(inside.x), 0] > overlay[int(inside.y), int(inside.x), 2]  # tinted red


def test_classify_heat_map_per_field(slide: Path, tmp_path: Path) -> None:
    import timm

    card = ModelCard(
        kind="classify",
        classes=["benign", "malignant"],
        arch={"backbone": "resnet18"},
        input_size=32,
        extra={"mpp": 2.0, "field_size": 32},
    )
    torch.manual_seed(0)
    card.save(tmp_path / "v")
    save_weights(timm.create_model("resnet18", pretrained=False, num_classes=2).state_dict(), tmp_path / "v")
    result = predict_slide(slide, tmp_path / "v", tmp_path / "out", device="cpu")
    # 32 px at 2 µm/px = 256 slide px: a 4 × 4 grid (the last reaching past the edge), tissue in 2 columns
    assert result.field_size == 32 and result.fields == 8
    fc = json.loads(Path(result.outputs["geojson"]).read_text())
    from converters.slides import TissueMap, open_slide

    with open_slide(slide) as s:
        tissue = TissueMap.of(s)
    fractions = {
        (x, y): tissue.fraction(x, y, min(1000, x + 256), min(1000, y + 256))
        for x in (0, 256)
        for y in (0, 256, 512, 768)
    }
    kept = {k for k, v in fractions.items() if v >= 0.5}
    assert 0 < len(kept) < 8  # a tile with too little tissue (its pale parts) is left out
    from shapely.geometry import shape

    assert {tuple(int(c) for c in shape(f["geometry"]).bounds[:2]) for f in fc["features"]} == kept
    for f in fc["features"]:
        m = f["properties"]["measurements"]
        assert m["p(benign)"] + m["p(malignant)"] == pytest.approx(1, abs=1e-5)
        assert f["properties"]["classification"]["name"] in ("benign", "malignant")
    heat = np.array(Image.open(result.outputs["heatmap"]))
    assert heat.shape == (4 * 8, 4 * 8, 3)
    assert (heat[0, -1] == 128).all() and not (
        heat[0, 0] == 128
    ).all()  # no tissue top right; a field top left


def test_segment_regions_are_cut_to_tissue_never_on_pen_ink(shared_data: Path, tmp_path: Path) -> None:
    """A slide with a green and a black marker stroke across its tissue: a segmenter that says "tumor"
    everywhere gives a region that stays off the ink and off the glass."""
    from shapely import box
    from shapely.geometry import shape
    from slide_testkit import PEN_ROWS, make_slide

    path = make_slide(shared_data, tmp_path / "pens.tif", size=1000, pens=True)
    version = _constant_segmenter(tmp_path / "v1")
    result = predict_slide(path, version, tmp_path / "out", device="cpu", field_size=128)
    regions = [
        shape(f["geometry"]) for f in json.loads(Path(result.outputs["geojson"]).read_text())["features"]
    ]
    assert regions and sum(r.area for r in regions) > 0.3 * 512 * 1000
    for top, bottom in PEN_ROWS.values():  # the strokes' inner rows (their edges are grown into the mask)
        stroke = box(0, top * 1000 + 8, 440, bottom * 1000 - 8)
        assert sum(r.intersection(stroke).area for r in regions) < 0.02 * stroke.area
    assert sum(r.intersection(box(520, 0, 1000, 1000)).area for r in regions) == 0  # the glass


def test_corrupt_slide_is_named(tmp_path: Path) -> None:
    from converters.slides import SlideError

    bad = tmp_path / "cut-short.svs"
    bad.write_bytes(b"II*\x00\x08\x00\x00\x00" + b"\xff" * 64)
    version = _constant_segmenter(tmp_path / "v")
    with pytest.raises(SlideError, match=r"cut-short.svs"):
        predict_slide(bad, version, tmp_path / "out", device="cpu")


def test_training_resolution_from_the_dataset(tmp_path: Path) -> None:
    layout = DatasetLayout(tmp_path)
    items = [{"stem": f"s{i}", "split": "train", "mpp": 0.5} for i in range(3)]
    layout.manifest.write_text(json.dumps({"kind": "segment", "classes": ["t"], "items": items}))
    assert dataset_mpp(tmp_path) == 0.5
    items.append({"stem": "plain", "split": "val"})  # a tile of unknown resolution: none recorded
    layout.manifest.write_text(json.dumps({"kind": "segment", "classes": ["t"], "items": items}))
    assert dataset_mpp(tmp_path) is None
    card = ModelCard(kind="segment", classes=["t"], arch={}, input_size=32)
    assert model_mpp(card) == DEFAULT_MODEL_MPP and model_mpp(card, 0.25) == 0.25


def test_detect_boxes_in_slide_coordinates(slide: Path, tmp_path: Path) -> None:
    """A random YOLO whose class logits say yes everywhere: every box kept is inside the slide, in slide
    coordinates, with its class and its score as a measurement."""
    from shapely.geometry import shape

    card = ModelCard(
        kind="detect",
        classes=["tumor", "stroma"],
        arch={"model": "yolo11n.yaml"},
        input_size=64,
        extra={"mpp": 1.0},
    )
    card.save(tmp_path / "v")
    save_weights(untrained_state(card, head_bias=10.0), tmp_path / "v")  # class logits: everything is sure
    result = predict_slide(
        slide, tmp_path / "v", tmp_path / "out", device="cpu", field_size=128, min_score=0.0
    )
    assert result.fields == 6  # overlap 16 (input / 4): columns at 0 and 448 (10 % tissue), rows 0, 448, 896
    fc = json.loads(Path(result.outputs["geojson"]).read_text())
    boxes = [shape(f["geometry"]).bounds for f in fc["features"]]
    assert len(boxes) > 20
    from converters.slides import TissueMap, open_slide

    with open_slide(slide) as s:
        tissue = TissueMap.of(s)
    assert all(tissue.fraction(*b) >= 0.5 for b in boxes)  # at least half of each box is tissue
    assert all(x1 <= 520 for _, _, x1, _ in boxes)  # none on the glass of the right half
    assert all(0 <= x0 < x1 <= 1000 and 0 <= y0 < y1 <= 1000 for x0, y0, x1, y1 in boxes)
    for f in fc["features"]:
        assert (
            f["properties"]["objectType"] == "detection"
            and 0 <= f["properties"]["measurements"]["score"] <= 1
        )
        assert f["properties"]["classification"]["name"] in ("tumor", "stroma")
