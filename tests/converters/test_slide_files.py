"""Whole-slide reading on real file structures written here: a SubIFD pyramid and an Aperio SVS layout made
from the MoNuSeg tiles, a TIFF without resolution, a corrupt file; tissue found on the left half only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from slide_testkit import SLIDE_MPP, make_slide, slide_image

from converters.geojson import (
    box_geometry,
    feature,
    mask_polygons,
    polygon_geometry,
    shapely_of,
    union_features,
)
from converters.pyramid import write_pyramid
from converters.slides import (
    Field,
    SlideError,
    open_slide,
    read_field,
    sample_fields,
    tissue_fields,
    tissue_mask,
)


@pytest.fixture(scope="module")
def slide_path(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_slide(shared_data, tmp_path_factory.mktemp("slides") / "TCGA-AR-A1AK-01Z-00-DX1.tif")


@pytest.fixture(scope="module")
def svs_path(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_slide(shared_data, tmp_path_factory.mktemp("svs") / "S2.svs", layout="svs")


def test_subifd_pyramid_levels_and_resolution(slide_path: Path) -> None:
    with open_slide(slide_path) as s:
        assert s.reader == "tiffslide"
        assert s.mpp == pytest.approx(SLIDE_MPP)
        assert s.dimensions == (2000, 2000)
        assert s.level_downsamples == (1.0, 2.0, 4.0)
        assert (
            s.best_level(2.0) == 1
            and s.best_level(3.9) == 1
            and s.best_level(8) == 2
            and s.best_level(0.5) == 0
        )


@pytest.mark.parametrize("reader", ["tiffslide", "openslide"])
def test_svs_layout_with_either_reader(svs_path: Path, reader: str) -> None:
    if reader == "openslide":
        pytest.importorskip("openslide", reason="OpenSlide is optional (openslide-python + openslide-bin)")
    with open_slide(svs_path, reader=reader) as s:
        assert s.mpp == pytest.approx(SLIDE_MPP)
        assert len(s.level_dimensions) == 3
        field = Field(x=100, y=300, size=200, mpp=0.5, slide_mpp=s.mpp)
        got = read_field(s, field)
    assert got.shape == (200, 200, 3)


def test_field_read_from_a_coarser_level_matches_level_zero(slide_path: Path, shared_data: Path) -> None:
    """A field at 1 µm/px (4× down) is read from level 2 and matches the full-resolution image shrunk."""
    import cv2

    truth = slide_image(shared_data)
    with open_slide(slide_path) as s:
        f = Field(x=200, y=400, size=128, mpp=1.0, slide_mpp=s.mpp)
        assert s.best_level(f.downsample) == 2
        got = read_field(s, f)
    want = cv2.resize(truth[400:912, 200:712], (128, 128), interpolation=cv2.INTER_AREA)
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 8  # JPEG twice, two resamplings
    assert (
        np.abs(got.astype(int) - np.roll(want, 8, axis=1).astype(int)).mean() > 12
    )  # and it is not just texture


def test_tissue_on_the_left_half_only_pen_and_glass_left_out(slide_path: Path) -> None:
    with open_slide(slide_path) as s:
        thumb, ds = s.thumbnail(max_size=500)
        mask = tissue_mask(thumb)
        fields = tissue_fields(s, size=128, mpp=1.0)  # 512 level-0 px each: a 3 × 3 grid fits, then the edge
    assert ds == pytest.approx(4.0)
    cols = mask.mean(axis=0)
    assert cols[: 1000 // 4 - 5].min() > 0.75 and cols[: 1000 // 4 - 5].mean() > 0.85  # the tissue half
    assert cols[1000 // 4 + 5 :].max() < 0.01  # glass and the blue pen line
    assert {(f.x, f.y) for f in fields} == {(x, y) for x in (0, 512) for y in (0, 512, 1024, 1536)}
    assert all(f.tissue >= 0.5 for f in fields)
    # the bottom row crosses the slide's edge at 2000: 464 level-0 px on it, 116 field px
    assert {f.valid for f in fields if f.y == 1536} == {(128, 116)}
    assert all(not f.padded for f in fields if f.y < 1536)
    with open_slide(slide_path) as s:  # a grid stride of half a field: overlapping fields
        assert len(tissue_fields(s, size=128, mpp=1.0, stride=64)) > len(fields)


def test_fields_crossing_the_right_and_bottom_edges_are_padded_white(slide_path: Path) -> None:
    """A grid whose last column and row cross the slide's edges: those fields are kept, read padded with
    white, and say which part of them is on the slide."""
    with open_slide(slide_path) as s:
        # 1200 level-0 px per field (300 px at 1 µm/px): the second column and row reach 2400 > 2000
        fields = tissue_fields(s, size=300, mpp=1.0, min_tissue=0.01)
        by_xy = {(f.x, f.y): f for f in fields}
        assert set(by_xy) == {(0, 0), (0, 1200)}  # the right column holds no tissue (glass, pen)
        edge = by_xy[(0, 1200)]
        assert edge.valid == (300, 200) and edge.valid_width is None and edge.valid_height == 200
        img = read_field(s, edge)
    assert img.shape == (300, 300, 3)
    assert (img[200:] == 255).all()  # the padding: white
    assert img[:200].std() > 10  # the tissue above it
    with open_slide(slide_path) as s:  # all glass: the right column is padded too
        assert [f.valid for f in tissue_fields(s, size=300, mpp=1.0, min_tissue=0.0) if f.x == 1200] == []


def test_tissue_map_leaves_out_glass_and_pen_strokes_across_the_tissue(
    shared_data: Path, tmp_path: Path
) -> None:
    """Green and black marker strokes drawn across the tissue are not tissue; nor is the glass with its
    blue pen line; the rest of the tissue is."""
    from slide_testkit import PEN_ROWS, make_slide

    from converters.slides import TissueMap

    path = make_slide(shared_data, tmp_path / "pens.tif", size=1000, pens=True)
    with open_slide(path) as s:
        tissue = TissueMap.of(s)
    for top, bottom in PEN_ROWS.values():  # the strokes (inner rows: their edges are grown)
        assert tissue.fraction(0, top * 1000 + 5, 440, bottom * 1000 - 5) < 0.02
    # tissue without ink (at full resolution the pale gaps between cells are glass-like: about 0.7)
    assert tissue.fraction(0, 0, 450, 350) > 0.5
    assert tissue.fraction(520, 0, 1000, 1000) < 0.01  # glass and the blue line
    geometry = tissue.geometry  # the mask's pixels as polygons, in level-0 px
    assert geometry.area == pytest.approx(tissue.mask.sum() * tissue.downsample**2, rel=0.02)
    from shapely import box

    assert tissue.clip(box(0, 400, 400, 460)).area < 0.05 * 400 * 60  # a region on the green stroke: gone


def test_sample_fields_is_reproducible_and_in_reading_order(slide_path: Path) -> None:
    with open_slide(slide_path) as s:
        fields = tissue_fields(s, size=64, mpp=1.0)
    a, b = sample_fields(fields, 5, seed="slide-1"), sample_fields(fields, 5, seed="slide-1")
    assert a == b and len(a) == 5 and a == sorted(a, key=fields.index)
    assert sample_fields(fields, 5, seed="slide-2") != a
    assert sample_fields(fields, None) == fields


def test_corrupt_and_unresolved_slides_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"II*\x00" + b"\x00" * 100)
    with pytest.raises(SlideError, match=r"broken.svs"):
        open_slide(bad)
    import tifffile

    plain = tmp_path / "nores.tif"
    tifffile.imwrite(plain, np.zeros((64, 64, 3), np.uint8), photometric="rgb")
    with pytest.raises(SlideError, match=r"nores.tif: no resolution"):
        open_slide(plain, reader="tiffslide")
    with open_slide(plain, reader="tiffslide", mpp=0.5) as s:
        assert s.mpp == 0.5


def test_pyramid_written_to_temp_then_renamed(tmp_path: Path) -> None:
    p = write_pyramid(np.zeros((300, 300, 3), np.uint8), tmp_path / "x.tif", mpp=0.5, levels=(1, 2))
    assert [q.name for q in tmp_path.iterdir()] == ["x.tif"] and p.stat().st_size > 0


# -- slide coordinates and GeoJSON ------------------------------------------------------------------------


def test_box_in_a_field_lands_on_the_same_slide_pixels(slide_path: Path) -> None:
    """A box drawn on a field at 0.5 µm/px, mapped to the slide and read back at level 0, shows the same
    tissue the field showed there."""
    import cv2

    with open_slide(slide_path) as s:
        f = Field(x=300, y=700, size=256, mpp=0.5, slide_mpp=s.mpp)
        field_img = read_field(s, f)
        box = np.array([[40.0, 60.0], [140.0, 180.0]])  # x0 y0, x1 y1 in field px
        geom = box_geometry(*f.to_slide(box).ravel())
        (x0, y0), (x1, y1) = np.array(geom["coordinates"][0][0]), np.array(geom["coordinates"][0][2])
        assert (x0, y0, x1, y1) == (380.0, 820.0, 580.0, 1060.0)
        on_slide = s.read(0, int(x0), int(y0), int(x1 - x0), int(y1 - y0))
    shrunk = cv2.resize(on_slide, (100, 120), interpolation=cv2.INTER_AREA)
    assert np.abs(shrunk.astype(int) - field_img[60:180, 40:140].astype(int)).mean() < 8
    np.testing.assert_allclose(f.to_field(f.to_slide(box)), box)


def test_a_mask_with_a_hole_stays_a_polygon_with_a_hole() -> None:
    gland = np.zeros((100, 100), bool)
    gland[10:90, 20:80] = True
    gland[40:60, 40:60] = False  # the lumen
    f = Field(x=5000, y=7000, size=100, mpp=0.5, slide_mpp=0.25)
    (poly,) = mask_polygons(gland)
    geom = polygon_geometry(poly, f.to_slide)
    assert geom["type"] == "Polygon" and len(geom["coordinates"]) == 2  # the outer ring and the lumen
    shape = shapely_of({"geometry": geom})
    assert shape.bounds == (5040.0, 7020.0, 5160.0, 7180.0)
    assert shape.area == pytest.approx((80 * 60 - 20 * 20) * 4, rel=0.002)
    assert not shape.contains(shapely_of({"geometry": box_geometry(5085, 7085, 5115, 7115)}))


def test_pieces_cut_by_field_borders_join() -> None:
    left, right = np.zeros((50, 50), bool), np.zeros((50, 50), bool)
    left[10:40, 30:] = True
    right[10:40, :21] = True  # the right field starts at x=49: one column of overlap
    pieces = []
    for x, m in ((0, left), (49, right)):
        f = Field(x=x, y=0, size=50, mpp=1.0, slide_mpp=1.0)
        pieces += [
            feature(polygon_geometry(p, f.to_slide), "Tumor", measurements={"score": 0.8})
            for p in mask_polygons(m)
        ]
    (joined,) = union_features(pieces)
    assert shapely_of(joined).bounds == (30.0, 10.0, 70.0, 40.0)
    assert joined["properties"]["measurements"]["score"] == pytest.approx(0.8)
    assert joined["properties"]["classification"] == {"name": "Tumor", "color": [200, 0, 0]}


# -- Label Studio annotations on fields → slide GeoJSON; slide fields → datasets ----------------------------


def _field_task(tid: int, results: list[dict], x: int = 4000, y: int = 6000) -> dict:
    data = {
        "image": f"/data/local-files/?d=slides/ab/S1_x{x}_y{y}_0.5um.png",
        "slide": "S1.svs",
        "slide_id": "ab",
        "group": "patient-7",
        "x": x,
        "y": y,
        "size": 200,
        "mpp": 0.5,
        "slide_mpp": 0.25,
        "downsample": 2.0,
    }
    return {"id": tid, "data": data, "annotations": [{"id": tid * 10, "result": results}]}


def test_annotations_on_fields_land_on_the_slide() -> None:
    from converters.rle import mask_to_rle
    from converters.slide_annotations import annotations_to_features

    gland = np.zeros((200, 200), np.uint8)
    gland[50:150, 40:160] = 255
    gland[80:120, 80:120] = 0
    size = {"original_width": 200, "original_height": 200}
    rect = {
        "type": "rectanglelabels",
        **size,
        "value": {"x": 10, "y": 25, "width": 20, "height": 5, "rectanglelabels": ["tumor"]},
    }
    brush = {
        "type": "brushlabels",
        **size,
        "value": {"format": "rle", "rle": mask_to_rle(gland), "brushlabels": ["gland"]},
    }
    choice = {"type": "choices", "value": {"choices": ["malignant"]}}
    tasks = [
        _field_task(1, [rect, brush]),
        _field_task(2, [choice], x=0, y=0),
        {"id": 3, "data": {"image": "x"}},
    ]
    by_slide, report = annotations_to_features(tasks)
    box, glandf, field = by_slide["S1.svs"]
    # the rectangle: field px (20, 50)-(60, 60) → slide (4000 + 2·20, 6000 + 2·50)-(4120, 6120)
    assert shapely_of(box).bounds == (4040.0, 6100.0, 4120.0, 6120.0)
    assert box["properties"]["task"] == 1 and box["properties"]["classification"]["name"] == "tumor"
    g = shapely_of(glandf)
    assert len(g.interiors) == 1 and g.bounds == (4080.0, 6100.0, 4320.0, 6300.0)
    assert shapely_of(field).bounds == (0.0, 0.0, 400.0, 400.0)
    assert field["properties"]["classification"]["name"] == "malignant"
    assert report.skipped == [("task 3", "not a slide field (no x/y/size/mpp/slide_mpp in its data)")]


def test_fields_keep_their_slide_group_and_resolution_in_datasets(tmp_path: Path) -> None:
    import json

    from converters.labelstudio import export_to_dataset

    rect = {
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": 200,
        "original_height": 200,
        "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rectanglelabels": ["tumor"]},
    }
    tasks = [_field_task(i, [rect], x=400 * i) for i in range(1, 4)]
    config = (
        '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
        '<Label value="tumor"/></RectangleLabels></View>'
    )
    report = export_to_dataset(tasks, "detect", tmp_path / "ds", label_config=config, images=None)
    assert report.converted == 3
    items = json.loads((tmp_path / "ds" / "manifest.json").read_text())["items"]
    assert {i["group"] for i in items} == {"patient-7"} and {i["mpp"] for i in items} == {0.5}


def test_thumbnail_of_a_slide_without_a_small_level_is_made_block_by_block(
    slide_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import converters.slides as slides

    with open_slide(slide_path) as s:
        whole, ds = s.thumbnail(max_size=300)
        monkeypatch.setattr(slides, "BLOCK", 128)  # level 2 (500²) is now "too large": 16 blocks
        blocks, ds2 = s.thumbnail(max_size=300)
    assert ds == ds2 and whole.shape == blocks.shape == (300, 300, 3)
    diff = np.abs(whole.astype(int) - blocks.astype(int))
    assert np.median(diff) == 0 and diff.mean() < 6  # resampled the same but at the 76.8 px block seams


def test_a_padded_edge_field_keeps_its_valid_area_into_training(tmp_path: Path) -> None:
    """A field crossing the slide's bottom edge: its task's valid area is recorded in the dataset's manifest,
    and the segmenter's training data is cut to it (the white padding is never learnt as background)."""
    import json

    from PIL import Image

    from converters.images import ImageLoader
    from converters.labelstudio import export_to_dataset
    from training.kinds.segment import _load

    root = tmp_path / "files"
    (root / "slides" / "ab").mkdir(parents=True)
    field = np.full((200, 200, 3), 255, np.uint8)
    field[:120] = (200, 110, 170)  # 120 rows of tissue, the rest padding
    tasks = []
    for i, (x, valid) in enumerate(((4000, {"valid_width": 200, "valid_height": 120}), (4400, {})), 1):
        Image.fromarray(field).save(root / "slides" / "ab" / f"S1_x{x}_y6000_0.5um.png")
        polygon = {
            "type": "polygonlabels",
            "from_name": "label",
            "to_name": "image",
            "original_width": 200,
            "original_height": 200,
            "value": {"points": [[10, 10], [50, 10], [50, 50]], "polygonlabels": ["tumor"]},
        }
        task = _field_task(i, [polygon], x=x)
        task["data"].update(valid)
        tasks.append(task)
    config = (
        '<View><Image name="image" value="$image"/><PolygonLabels name="label" toName="image">'
        '<Label value="tumor"/></PolygonLabels></View>'
    )
    ds = tmp_path / "ds"
    report = export_to_dataset(
        tasks, "segment", ds, label_config=config, images=ImageLoader(local_root=root), split="train"
    )
    assert report.converted == 2, report.summary()
    items = {i["task_id"]: i for i in json.loads((ds / "manifest.json").read_text())["items"]}
    assert (items[1]["valid_width"], items[1]["valid_height"]) == (200, 120)
    assert "valid_width" not in items[2] and "valid_height" not in items[2]
    shapes = sorted(image.shape[:2] + mask.shape for image, mask in _load(ds, "train", binary=True))
    assert shapes == [(120, 200, 120, 200), (200, 200, 200, 200)]
    # a training crop of 256 px: the cut field is mirrored out to it, never padded with white background
    by_size = {image.shape[0]: (image, mask) for image, mask in _load(ds, "train", binary=True, min_side=256)}
    image, mask = by_size[256]
    assert image.shape[:2] == mask.shape == (256, 256)
    assert not (image == 255).all(axis=2).any()  # no white pixel: the padding is gone
    np.testing.assert_array_equal(mask[120:239], mask[:119][::-1])  # the mask mirrored with the image
    assert by_size[200][0].shape[:2] == (200, 200)  # a field wholly on its slide: as it is (pad_to later)
