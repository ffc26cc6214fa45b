"""LabelImg folders (tests/data/labelimg_voc, labelimg_yolo: the same boxes in both formats)."""

from __future__ import annotations

import json
import shutil

import numpy as np

from converters.labelimg import labelimg_to_labelstudio, labelimg_to_yolo, read_labelimg
from converters.labelstudio import export_to_dataset
from tests.converters.conftest import DATA

VOC, YOLO = DATA / "labelimg_voc", DATA / "labelimg_yolo"


def _labels(out):
    return {
        p.name: [[float(v) for v in ln.split()] for ln in p.read_text().splitlines()]
        for p in out.glob("labels/*/*.txt")
    }


def test_voc_and_yolo_give_the_same_dataset(tmp_path):
    a = labelimg_to_yolo(VOC, tmp_path / "voc")
    b = labelimg_to_yolo(YOLO, tmp_path / "yolo")
    assert a.converted == b.converted == 3 and not a.skipped and not b.skipped
    la, lb = _labels(tmp_path / "voc"), _labels(tmp_path / "yolo")
    assert la.keys() == lb.keys() and sum(len(v) for v in la.values()) == a.regions >= 6
    for k in la:
        assert np.allclose(la[k], lb[k], atol=1e-6)
    assert '0: "tumor"\n  1: "stroma"' in (tmp_path / "voc" / "data.yaml").read_text()
    items = json.loads((tmp_path / "voc" / "manifest.json").read_text())["items"]
    assert {i["group"] for i in items} == {"TCGA-AA-0001", "TCGA-BB-0002"}
    # the two tiles of one patient are on the same side
    assert len({i["split"] for i in items if i["group"] == "TCGA-AA-0001"}) == 1


def test_labelimg_to_label_studio_round_trip(tmp_path):
    report = labelimg_to_labelstudio(VOC, tmp_path / "tasks.json", relative_to=DATA, as_annotations=True)
    assert report.converted == 3
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert tasks[0]["data"]["image"] == "/data/local-files/?d=labelimg_voc/TCGA-AA-0001-01Z-tile0.png"
    config = tmp_path / "tasks.label_config.xml"
    back = export_to_dataset(
        tasks, "detect", tmp_path / "back", label_config=config, images=None, split="train"
    )
    direct = labelimg_to_yolo(VOC, tmp_path / "direct")
    assert back.converted == direct.converted == 3
    la, lb = _labels(tmp_path / "back"), _labels(tmp_path / "direct")
    assert la.keys() == lb.keys()
    for k in la:
        assert np.allclose(sorted(la[k]), sorted(lb[k]), atol=1e-6), k
    preds = labelimg_to_labelstudio(YOLO, tmp_path / "preds.json", relative_to=DATA)
    assert preds.converted == 3
    task = json.loads((tmp_path / "preds.json").read_text())[0]
    pred = task["predictions"][0]
    assert pred["model_version"] == "labelimg" and all(r["score"] == 1.0 for r in pred["result"])
    assert {r["original_width"] for r in pred["result"]} == {128}


def test_bad_labelimg_files_are_reported(tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(VOC, folder)
    (folder / "broken.xml").write_text("<annotation><object>")
    (folder / "orphan.xml").write_text("<annotation><filename>nothere.png</filename></annotation>")
    xml = (folder / "TCGA-BB-0002-01Z-tile0.xml").read_text()
    first = xml.index("<xmax>")
    xml = xml[:first] + "<xmax>0</xmax><!--" + xml[first:].replace("</xmax>", "</xmax>-->", 1)
    (folder / "TCGA-BB-0002-01Z-tile0.xml").write_text(xml)
    shutil.copy(YOLO / "TCGA-AA-0001-01Z-tile0.png", folder / "extra.png")
    (folder / "extra.txt").write_text("0 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.1 0.1\nnonsense\n")
    (folder / "classes.txt").write_text("tumor\n")
    report = labelimg_to_yolo(folder, tmp_path / "out")
    reasons = dict(report.skipped)
    assert reasons["broken.xml"].startswith("not valid XML")
    assert reasons["orphan.xml"] == "no image for nothere.png"
    assert reasons["extra.txt line 2"] == "class id 7 is not in classes.txt (1 classes)"
    assert reasons["extra.txt line 3"] == "not a YOLO line 'class xc yc w h'"
    assert any(k.startswith("TCGA-BB-0002-01Z-tile0.xml box") and "zero-area" in v for k, v in report.skipped)
    assert report.converted == 4
    assert len(read_labelimg(folder)) == 4
