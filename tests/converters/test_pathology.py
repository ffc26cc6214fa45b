"""Aperio XML (real MoNuSeg tiles) and BreCaHAD points (a real BreCaHAD file) → datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from converters.pathology import (
    aperio_to_dataset,
    brecahad_to_dataset,
    load_brecahad,
    parse_aperio_xml,
    points_to_mask,
    regions_to_mask,
)


@pytest.fixture(scope="module")
def monuseg_masks(shared_data: Path, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("aperio") / "seg"
    mon = shared_data / "monuseg-breast"
    report = aperio_to_dataset(mon / "annotations", mon / "images", out, "segment")
    return out, report


def test_masks_agree_with_the_xml_area(shared_data, monuseg_masks):
    out, report = monuseg_masks
    assert report.converted == 4
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["classes"] == ["nucleus"] and (out / "classes.txt").read_text() == "nucleus\n"
    for item in manifest["items"]:
        regions = parse_aperio_xml(shared_data / "monuseg-breast" / "annotations" / f"{item['stem']}.xml")
        xml_total = sum(r.area for r in regions if len(r.points) >= 3)
        per_nucleus = sum(int(regions_to_mask([r], ["nucleus"], 1000, 1000).sum()) for r in regions[:60])
        assert per_nucleus == pytest.approx(sum(r.area for r in regions[:60] if len(r.points) >= 3), rel=0.03)
        mask = np.asarray(Image.open(out / "masks" / item["split"] / f"{item['stem']}.png"))
        assert mask.shape == (1000, 1000) and set(np.unique(mask)) == {0, 1}
        # the union is a little smaller than the sum of areas where nuclei overlap
        assert int((mask == 1).sum()) == pytest.approx(xml_total, rel=0.04), item["stem"]
        assert Image.open(out / "images" / item["split"] / f"{item['stem']}.png").size == (1000, 1000)


def test_real_bad_region_and_clipping_are_reported(monuseg_masks):
    _, report = monuseg_masks
    # one MoNuSeg region has fewer than 3 vertices; a few have vertices outside the tile
    assert any("fewer than 3 numeric vertices" in reason for _, reason in report.skipped)
    assert any("outside the 1000x1000 image (clipped)" in msg for _, msg in report.warnings)


def test_yolo_boxes_and_polygons_stay_inside_the_image(shared_data, tmp_path):
    mon = shared_data / "monuseg-breast"
    for kind, ncols in (("detect", 5), ("yolo-segment", None)):
        report = aperio_to_dataset(mon / "annotations", mon / "images", tmp_path / kind, kind)
        assert report.converted == 4
        lines = [
            line.split()
            for p in (tmp_path / kind / "labels").glob("*/*.txt")
            for line in p.read_text().splitlines()
        ]
        assert len(lines) == report.regions > 1400
        values = np.array([float(v) for line in lines for v in line[1:]])
        assert values.min() >= 0 and values.max() <= 1
        if ncols:
            assert {len(line) for line in lines} == {ncols}
        assert 'names:\n  0: "nucleus"' in (tmp_path / kind / "data.yaml").read_text()


def test_malformed_xml_and_missing_image_are_skipped(shared_data, tmp_path):
    mon = shared_data / "monuseg-breast"
    xml_dir = tmp_path / "xml"
    xml_dir.mkdir()
    first = sorted((mon / "annotations").glob("*.xml"))[0]
    shutil.copy(first, xml_dir / first.name)  # a temp copy for the test only, removed with tmp_path
    (xml_dir / "TCGA-ZZ-0000-broken.xml").write_text("<Annotations><Region")
    (xml_dir / "TCGA-ZZ-0001-noimage.xml").write_text("<Annotations></Annotations>")
    report = aperio_to_dataset(xml_dir, mon / "images", tmp_path / "out", "detect")
    assert report.converted == 1
    reasons = dict(report.skipped)
    assert reasons["TCGA-ZZ-0000-broken.xml"].startswith("not valid XML")
    assert reasons["TCGA-ZZ-0001-noimage.xml"].startswith("no image TCGA-ZZ-0001-noimage.*")


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE a [<!ENTITY l0 "lol"><!ENTITY l1 "&l0;&l0;&l0;&l0;">]>',  # a billion laughs, small
        '<!DOCTYPE a [<!ENTITY secret SYSTEM "file:///etc/hostname">]>',  # an external entity
    ],
)
def test_aperio_xml_with_entity_declarations_is_refused(tmp_path, doctype):
    xml = tmp_path / "TCGA-ZZ-0002-entities.xml"
    xml.write_text(f'<?xml version="1.0"?>{doctype}<Annotations><Annotation Name="x"/></Annotations>')
    with pytest.raises(ValueError, match=r"^TCGA-ZZ-0002-entities\.xml: refused: the XML declares entities"):
        parse_aperio_xml(xml)


def test_an_unforeseen_error_skips_that_file_with_its_traceback_logged(
    shared_data, tmp_path, monkeypatch, caplog
):
    import converters.pathology as pathology

    mon = shared_data / "monuseg-breast"
    first, *rest = sorted((mon / "annotations").glob("*.xml"))
    real = pathology._prepare_aperio

    def prepare(xml, *args, **kwargs):  # a bug no check foresaw, in the first file only
        if xml.name == first.name:
            raise KeyError("no such thing")
        return real(xml, *args, **kwargs)

    monkeypatch.setattr(pathology, "_prepare_aperio", prepare)
    with caplog.at_level("WARNING", logger="converters.report"):
        report = aperio_to_dataset(mon / "annotations", mon / "images", tmp_path / "out", "detect")
    assert report.converted == len(rest)
    assert dict(report.skipped)[first.name] == "cannot be converted (KeyError: 'no such thing')"
    logged = [r for r in caplog.records if r.getMessage() == f"{first.name}: cannot be converted"]
    assert len(logged) == 1 and logged[0].exc_info[0] is KeyError


def test_brecahad_boxes_and_discs(shared_data, tmp_path):
    path = shared_data / "brecahad-points" / "Case_1-01.json"
    points = load_brecahad(path)
    assert sum(len(p) for p in points.values()) == 146 and len(points["tumor"]) == 140
    report = brecahad_to_dataset(path, tmp_path / "det", width=1360, height=1024, box_size=32, split="train")
    assert report.converted == 1 and report.regions == 146
    lines = (tmp_path / "det" / "labels" / "train" / "Case_1-01.txt").read_text().splitlines()
    classes = [
        ln.split(": ")[1].strip('"') for ln in (tmp_path / "det" / "data.yaml").read_text().splitlines()[4:]
    ]
    assert len(lines) == 146
    counts = {
        c: sum(1 for ln in lines if classes[int(ln.split()[0])] == c)
        for c in ("tumor", "apoptosis", "non_lumen")
    }
    assert counts == {"tumor": 140, "apoptosis": 1, "non_lumen": 5}
    w, h = (float(v) for v in lines[0].split()[3:5])
    assert (w, h) == pytest.approx((32 / 1360, 32 / 1024), abs=1e-6) or w < 32 / 1360  # clipped at a border
    seg = brecahad_to_dataset(
        path, tmp_path / "seg", width=1360, height=1024, kind="segment", radius=8, split="val"
    )
    mask = np.asarray(Image.open(tmp_path / "seg" / "masks" / "val" / "Case_1-01.png"))
    assert mask.shape == (1024, 1360) and seg.converted == 1
    one = points_to_mask({"tumor": np.array([[0.5, 0.5]])}, ["tumor"], 100, 100, radius=5)
    assert abs(int(one.sum()) - np.pi * 25) < 8  # a disc of radius 5 px


def test_brecahad_bad_input(tmp_path):
    bad = tmp_path / "Case_9-01.json"
    bad.write_text('{"tumor": [{"x": 0.5}]}')
    with pytest.raises(ValueError, match=r"Case_9-01.json: class 'tumor' has points without numeric x/y"):
        load_brecahad(bad)
    odd = tmp_path / "Case_9-02.json"
    odd.write_text(
        '{"tumor": [{"x": 0.5, "y": 0.5}, {"x": 1.5, "y": 0.2}], "glands": [{"x": 0.1, "y": 0.1}]}'
    )
    report = brecahad_to_dataset([bad, odd], tmp_path / "out", width=100, height=100)
    assert report.converted == 1
    reasons = [r for _, r in report.skipped]
    assert any("has points without numeric x/y" in r for r in reasons)
    assert "1 points outside [0, 1]" in reasons and any(
        "'glands' is not one of the classes" in r for r in reasons
    )
