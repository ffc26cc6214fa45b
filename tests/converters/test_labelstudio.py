"""Label Studio export → datasets, on a real Label Studio 1.23 export (tests/data), cross-checked with
label_studio_sdk.converter's YOLO export."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from label_studio_sdk.converter import Converter, brush
from PIL import Image

from converters.images import ImageLoader
from converters.labelstudio import export_to_dataset, load_export, select_annotations
from converters.split import SplitOptions
from tests.converters.conftest import CONFIG, EXPORT


def _ids(anns):
    return [a["id"] for a in anns]


def test_selection_rule_on_the_real_export(export_tasks):
    t1, t2, t3, t4 = export_tasks
    assert _ids(select_annotations(t1)) == [2]  # two annotators: the most recent
    assert _ids(select_annotations(t1, per_annotator=True)) == [1, 2]
    assert _ids(select_annotations(t2)) == [3]  # ground truth wins over a later annotation
    assert _ids(select_annotations(t3)) == [
        6
    ]  # the cancelled one never counts; the draft is not an annotation
    assert t3["drafts"] and t4["drafts"]
    assert select_annotations(t4) == []  # only a cancelled annotation and a draft
    assert [_ids(select_annotations(t, approval="ground_truth")) for t in export_tasks] == [[], [3], [], []]


def _only(tasks: list[dict], keep) -> list[dict]:
    """Each task with only its selected annotation, and only the results `keep` accepts."""
    out = []
    for task in tasks:
        anns = select_annotations(task)
        if not anns:
            continue
        t = copy.deepcopy(task)
        ann = copy.deepcopy(anns[0])
        ann["result"] = [r for r in ann["result"] if keep(r)]
        t["annotations"] = [ann]
        out.append(t)
    return out


def _sdk_lines(tasks: list[dict], tmp_path: Path, obb: bool = False) -> dict[str, set]:
    src = tmp_path / "sdk-input.json"
    src.write_text(json.dumps(tasks))
    conv = Converter(config=CONFIG.read_text(), project_dir=None, download_resources=False)
    conv.convert_to_yolo(str(src), str(tmp_path / "sdk"), is_dir=False, is_obb=obb)
    names = (tmp_path / "sdk" / "classes.txt").read_text().split()
    return {p.stem: _parse(p.read_text(), names) for p in (tmp_path / "sdk" / "labels").glob("*.txt")}


def _parse(text: str, names: list[str]) -> set:
    lines = set()
    for line in text.strip().splitlines():
        cid, *vals = line.split()
        lines.add((names[int(cid)], tuple(round(float(v), 6) for v in vals)))
    return lines


def _ours(out: Path) -> dict[str, set]:
    names = [line.split(": ", 1)[1].strip('"') for line in (out / "data.yaml").read_text().splitlines()[4:]]
    return {p.stem: _parse(p.read_text(), names) for p in (out / "labels").glob("*/*.txt")}


def _assert_same(ours: dict, sdk: dict):
    assert ours.keys() == sdk.keys()
    total = 0
    for stem in sdk:
        a, b = sorted(ours[stem]), sorted(sdk[stem])
        assert len(a) == len(b), stem
        for (na, va), (nb, vb) in zip(a, b, strict=True):
            assert na == nb and np.allclose(va, vb, atol=1e-6, rtol=0), (stem, va, vb)
            total += 1
    assert total > 0


def test_yolo_detect_lines_match_the_sdk(export_tasks, tmp_path):
    tasks = _only(export_tasks, lambda r: r["type"] == "rectanglelabels" and not r["value"].get("rotation"))
    report = export_to_dataset(tasks, "detect", tmp_path / "ours", label_config=CONFIG, images=None)
    assert report.converted == 3
    _assert_same(_ours(tmp_path / "ours"), _sdk_lines(tasks, tmp_path))


def test_yolo_segment_polygons_match_the_sdk(export_tasks, tmp_path):
    tasks = _only(export_tasks, lambda r: r["type"] == "polygonlabels")
    export_to_dataset(tasks, "yolo-segment", tmp_path / "ours", label_config=CONFIG, images=None)
    _assert_same(_ours(tmp_path / "ours"), _sdk_lines(tasks, tmp_path))


def test_rotated_rectangles_match_the_sdk_obb_and_bounding_box(export_tasks, tmp_path):
    ann = export_tasks[0]["annotations"][0]  # the first annotator's, with the rotated box
    rotated = [r for r in ann["result"] if r["type"] == "rectanglelabels" and r["value"]["rotation"]]
    assert len(rotated) == 1
    task = copy.deepcopy(export_tasks[0])
    task["annotations"] = [dict(ann, result=[r for r in ann["result"] if r["type"] == "rectanglelabels"])]
    export_to_dataset([task], "obb", tmp_path / "ours", label_config=CONFIG, images=None)
    _assert_same(_ours(tmp_path / "ours"), _sdk_lines([task], tmp_path, obb=True))
    # detect: the rotated box becomes its axis-aligned bounding box (the sdk's rotated_rectangle, in percent)
    export_to_dataset([task], "detect", tmp_path / "det", label_config=CONFIG, images=None)
    x, y, w, h = Converter.rotated_rectangle(rotated[0]["value"])
    expected = ("tumor", tuple(round(v, 6) for v in ((x + w / 2) / 100, (y + h / 2) / 100, w / 100, h / 100)))
    lines = next(iter(_ours(tmp_path / "det").values()))
    assert any(n == expected[0] and np.allclose(v, expected[1], atol=1e-6) for n, v in lines)


def test_detect_dataset_with_real_images(export_tasks, tmp_path, shared_data):
    out = tmp_path / "det"
    report = export_to_dataset(
        export_tasks, "detect", out, label_config=CONFIG, images=ImageLoader(local_root=shared_data)
    )
    assert report.converted == 3 and len(report.skipped) == 1
    assert report.skipped[0][0] == "task 4" and "no submitted annotation" in report.skipped[0][1]
    data_yaml = (out / "data.yaml").read_text()
    assert 'names:\n  0: "tumor"\n  1: "lymphocyte"' in data_yaml and "val: images/val" in data_yaml
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "detect" and manifest["classes"] == ["tumor", "lymphocyte"]
    assert {i["task_id"]: i["annotation_ids"] for i in manifest["items"]} == {1: [2], 2: [3], 3: [6]}
    assert {i["group"] for i in manifest["items"]} == {"TCGA-A7-A13E", "TCGA-AR-A1AK", "TCGA-AR-A1AS"}
    splits = {i["split"] for i in manifest["items"]}
    assert splits == {"train", "val"}
    for item in manifest["items"]:
        img = Image.open(out / "images" / item["split"] / f"{item['stem']}.png")
        assert img.size == (1000, 1000)
        assert (out / "labels" / item["split"] / f"{item['stem']}.txt").is_file()
    # the same input gives the same fingerprint; another split changes it
    again = export_to_dataset(export_tasks, "detect", tmp_path / "again", label_config=CONFIG, images=None)
    assert again.converted == 3
    assert (
        json.loads((tmp_path / "again" / "manifest.json").read_text())["fingerprint"]
        == manifest["fingerprint"]
    )


def test_masks_from_brushes_and_polygons(export_tasks, tmp_path, shared_data):
    out = tmp_path / "seg"
    report = export_to_dataset(
        export_tasks,
        "segment",
        out,
        label_config=CONFIG,
        images=ImageLoader(local_root=shared_data),
        binary_masks=True,
    )
    # task 1's latest annotation has a rectangle only: no mask can be learnt from it (not "background")
    assert report.converted == 2
    assert dict(report.skipped)["task 1 (annotation 2)"].startswith("its only regions (1 rectanglelabels)")
    assert (out / "classes.txt").read_text() == "tumor\nlymphocyte\n"
    item = next(i for i in json.loads((out / "manifest.json").read_text())["items"] if i["task_id"] == 2)
    mask = np.asarray(Image.open(out / "masks" / item["split"] / f"{item['stem']}.png"))
    ann = export_tasks[1]["annotations"][0]  # the ground-truth one: tumor polygon + tumor brush
    brush_px = (
        np.reshape(
            brush.decode_rle(next(r for r in ann["result"] if r["type"] == "brushlabels")["value"]["rle"]),
            (1000, 1000, 4),
        )[:, :, 3]
        > 0
    )
    assert set(np.unique(mask)) == {0, 1}
    assert (mask[brush_px] == 1).all()
    assert (mask == 1).sum() > brush_px.sum()  # the polygon adds pixels
    binary = np.asarray(Image.open(out / "masks_binary" / item["split"] / item["stem"] / "tumor.png"))
    assert np.array_equal(binary > 0, mask == 1)
    assert Image.open(out / "images" / item["split"] / f"{item['stem']}.png").size == (1000, 1000)


def test_classification_tree(export_tasks, tmp_path, shared_data):
    out = tmp_path / "cls"
    export_to_dataset(
        export_tasks, "classify", out, label_config=CONFIG, images=ImageLoader(local_root=shared_data)
    )
    files = sorted(p.relative_to(out).parts[1:] for p in out.glob("*/*/*.png"))
    assert files == [
        ("benign", "TCGA-A7-A13E-01Z-00-DX1.png"),
        ("benign", "TCGA-AR-A1AS-01Z-00-DX1.png"),
        ("malignant", "TCGA-AR-A1AK-01Z-00-DX1.png"),
    ]


def test_per_annotator_items(export_tasks, tmp_path):
    export_to_dataset(
        export_tasks, "classify", tmp_path / "c", label_config=CONFIG, images=None, per_annotator=True
    )
    items = json.loads((tmp_path / "c" / "manifest.json").read_text())["items"]
    first = sorted((i["stem"], i["class"]) for i in items if i["task_id"] == 1)
    assert first == [("TCGA-A7-A13E-01Z-00-DX1-a1", "malignant"), ("TCGA-A7-A13E-01Z-00-DX1-a2", "benign")]


def test_bad_input_is_reported_and_the_rest_converts(export_tasks, tmp_path):
    tasks = export_tasks[:3]
    good = tasks[2]["annotations"][1]["result"]
    rect = next(r for r in good if r["type"] == "rectanglelabels")
    bad = copy.deepcopy(tasks[2])
    bad["id"] = 101
    bad["data"]["image"] = "/data/local-files/?d=monuseg-breast/images/missing.tif"
    wrong_label = copy.deepcopy(tasks[2])
    wrong_label["id"], wrong_label["data"]["image"] = 102, "/data/local-files/?d=x/TCGA-AA-0001-x.png"
    r = copy.deepcopy(rect)
    r["value"]["rectanglelabels"] = ["mitosis"]
    zero = copy.deepcopy(rect)
    zero["value"]["width"] = 0
    wrong_label["annotations"] = [{"id": 900, "result": [r, zero]}]
    bad_rle = copy.deepcopy(tasks[2])
    bad_rle["id"], bad_rle["data"]["image"] = 103, "/data/local-files/?d=x/TCGA-AA-0002-x.png"
    b = next(copy.deepcopy(x) for x in good if x["type"] == "brushlabels")
    b["original_width"] = 999
    bad_rle["annotations"] = [{"id": 901, "result": [b]}]
    not_a_task = "garbage"
    report = export_to_dataset(
        [*tasks, bad, wrong_label, bad_rle, not_a_task],
        "detect",
        tmp_path / "d",
        label_config=CONFIG,
        images=None,
    )
    # 101 converts in labels-only mode (no image needed); 103 has only a brush: skipped, never an empty
    # (negative) label file
    assert report.converted == 3 + 1
    reasons = dict(report.skipped)
    assert "label 'mitosis' is not in the label config" in reasons.values()
    assert any("zero-area rectangle" in v for v in reasons.values())
    assert any(k == "task 102 (annotation 900)" and "none of its 2 regions" in v for k, v in report.skipped)
    assert "task #6" in reasons
    assert reasons["task 103 (annotation 901)"].startswith("its only regions (1 brushlabels) are of another")
    seg = export_to_dataset([bad_rle], "segment", tmp_path / "s", label_config=CONFIG, images=None)
    assert not seg.ok and any("bad RLE" in v and "expected 1000x999x4" in v for _, v in seg.skipped)
    assert not (tmp_path / "s").exists()
    img = export_to_dataset(
        [bad], "detect", tmp_path / "i", label_config=CONFIG, images=ImageLoader(local_root="/nonexistent")
    )
    assert not img.ok and "image not found" in img.skipped[0][1] and img.skipped[0][0].startswith("task 101")


def test_load_export_errors_name_the_file(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('[{"id": 1, "data": ')
    with pytest.raises(ValueError, match=r"broken.json: not valid JSON"):
        load_export(broken)
    (tmp_path / "obj.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match=r"obj.json: expected a list"):
        load_export(tmp_path / "obj.json")
    assert len(load_export(EXPORT)) == 4


def test_splits_are_stable_as_the_dataset_grows(tmp_path):
    def task(i: int, patient: int) -> dict:
        return {
            "id": i,
            "data": {"image": f"/data/upload/1/TCGA-A{patient % 10}-{patient:04d}-01Z-tile{i}.png"},
            "annotations": [
                {
                    "id": i,
                    "result": [
                        {
                            "type": "choices",
                            "from_name": "diagnosis",
                            "to_name": "image",
                            "value": {"choices": ["benign"]},
                        }
                    ],
                }
            ],
        }

    small = [task(i, i // 3) for i in range(30)]
    export_to_dataset(small, "classify", tmp_path / "a", label_config=CONFIG, images=None)
    before = {
        i["stem"]: i["split"] for i in json.loads((tmp_path / "a" / "manifest.json").read_text())["items"]
    }
    grown = small + [task(i, i // 3) for i in range(30, 300)]
    export_to_dataset(grown, "classify", tmp_path / "b", label_config=CONFIG, images=None)
    items = json.loads((tmp_path / "b" / "manifest.json").read_text())["items"]
    after = {i["stem"]: i["split"] for i in items}
    assert all(after[s] == before[s] for s in before)
    by_group: dict[str, set] = {}
    for i in items:
        by_group.setdefault(i["group"], set()).add(i["split"])
    assert all(len(s) == 1 for s in by_group.values())  # never one patient on both sides
    val = sum(1 for s in after.values() if s == "val") / len(after)
    assert 0.1 < val < 0.3


def test_brushes_become_yolo_polygons_that_cover_them(export_tasks, tmp_path):
    import cv2

    task = copy.deepcopy(export_tasks[2])
    ann = task["annotations"][1]
    brush_result = next(r for r in ann["result"] if r["type"] == "brushlabels")
    ann["result"] = [brush_result]
    export_to_dataset(
        [task], "yolo-segment", tmp_path / "ys", label_config=CONFIG, images=None, split="train"
    )
    lines = (tmp_path / "ys" / "labels" / "train" / "TCGA-AR-A1AS-01Z-00-DX1.txt").read_text().splitlines()
    painted = np.reshape(brush.decode_rle(brush_result["value"]["rle"]), (1000, 1000, 4))[:, :, 3] > 0
    n_components = cv2.connectedComponents(painted.astype(np.uint8))[0] - 1
    assert len(lines) == n_components >= 1  # one polygon per painted blob
    back = np.zeros((1000, 1000), np.uint8)
    for ln in lines:  # rasterised the way ultralytics does (cv2.fillPoly on pixel coordinates)
        pts = np.array([float(v) for v in ln.split()[1:]]).reshape(-1, 2) * 1000
        cv2.fillPoly(back, [np.round(pts).astype(np.int32)], 1)
    back = back > 0
    assert (back & painted).sum() / (back | painted).sum() > 0.9


def test_test_fraction_and_forced_splits(export_tasks, tmp_path):
    rep = export_to_dataset(
        export_tasks,
        "classify",
        tmp_path / "t",
        label_config=CONFIG,
        images=None,
        split_options=SplitOptions(val_fraction=0.0, test_fraction=1.0),
    )
    items = json.loads((tmp_path / "t" / "manifest.json").read_text())["items"]
    assert rep.converted == 3 and {i["split"] for i in items} == {"test"}
    export_to_dataset(
        export_tasks,
        "classify",
        tmp_path / "f",
        label_config=CONFIG,
        images=None,
        split={"TCGA-AR-A1AK": "val"},
        split_options=SplitOptions(val_fraction=0.0),
    )
    items = json.loads((tmp_path / "f" / "manifest.json").read_text())["items"]
    assert {i["group"]: i["split"] for i in items} == {
        "TCGA-A7-A13E": "train",
        "TCGA-AR-A1AK": "val",
        "TCGA-AR-A1AS": "train",
    }


def test_vertices_outside_the_image_are_clipped_with_a_warning(export_tasks, tmp_path):
    task = copy.deepcopy(export_tasks[1])
    ann = task["annotations"][0]
    poly = copy.deepcopy(next(r for r in ann["result"] if r["type"] == "polygonlabels"))
    poly["value"]["points"] = [[-3.0, 10.0], [50.0, -1.0], [104.0, 60.0], [40.0, 70.0]]
    rect = copy.deepcopy(next(r for r in ann["result"] if r["type"] == "rectanglelabels"))
    rect["value"].update(x=95.0, y=5.0, width=10.0, height=10.0)
    ann["result"] = [poly, rect]
    report = export_to_dataset(
        [task], "yolo-segment", tmp_path / "s", label_config=CONFIG, images=None, split="train"
    )
    line = (tmp_path / "s" / "labels" / "train" / "TCGA-AR-A1AK-01Z-00-DX1.txt").read_text().split()
    assert [float(v) for v in line[1:]] == [0.0, 0.1, 0.5, 0.0, 1.0, 0.6, 0.4, 0.7]
    assert any("clipped" in m for _, m in report.warnings)
    report = export_to_dataset(
        [task], "detect", tmp_path / "d", label_config=CONFIG, images=None, split="train"
    )
    lines = (tmp_path / "d" / "labels" / "train" / "TCGA-AR-A1AK-01Z-00-DX1.txt").read_text().splitlines()
    boxes = sorted(tuple(float(v) for v in ln.split()[1:]) for ln in lines)
    assert np.allclose(boxes, [(0.5, 0.35, 1.0, 0.7), (0.975, 0.1, 0.05, 0.1)])
    assert len(report.warnings) == 2
    seg = export_to_dataset(
        [task], "segment", tmp_path / "m", label_config=CONFIG, images=None, split="train"
    )
    mask = np.asarray(Image.open(tmp_path / "m" / "masks" / "train" / "TCGA-AR-A1AK-01Z-00-DX1.png"))
    assert seg.converted == 1 and mask.shape == (1000, 1000) and mask[:, 999].any() and mask[0].any()


def test_touching_regions_stay_separate_objects(tmp_path) -> None:
    """Two touching nuclei drawn as two polygons: one connected blob in the class mask, two ids in
    ``instances/`` (what the segmenter's instance target and the per-object evaluation read)."""
    import numpy as np
    from PIL import Image

    from converters.labelstudio import export_to_dataset
    from training.objects import label_instances

    def polygon(x0: float, x1: float) -> dict:
        pts = [[x0, 20.0], [x1, 20.0], [x1, 60.0], [x0, 60.0]]
        return {
            "id": f"p{x0}",
            "from_name": "nuclei",
            "to_name": "image",
            "type": "polygonlabels",
            "original_width": 100,
            "original_height": 100,
            "value": {"points": pts, "polygonlabels": ["nucleus"], "closed": True},
        }

    config = (
        '<View><Image name="image" value="$image"/><PolygonLabels name="nuclei" toName="image">'
        '<Label value="nucleus"/></PolygonLabels></View>'
    )
    tasks = [
        {
            "id": 1,
            "data": {"image": "/data/upload/1/TCGA-AA-0001-01Z.png"},
            "annotations": [{"id": 1, "result": [polygon(10, 40), polygon(40, 70)], "was_cancelled": False}],
        }
    ]
    report = export_to_dataset(
        tasks, "segment", tmp_path / "ds", label_config=config, images=None, split="train"
    )
    assert report.converted == 1, report.summary()
    mask = np.asarray(Image.open(tmp_path / "ds" / "masks" / "train" / "TCGA-AA-0001-01Z.png"))
    inst = np.asarray(Image.open(tmp_path / "ds" / "instances" / "train" / "TCGA-AA-0001-01Z.png"))
    assert label_instances(mask > 0).max() == 1 and sorted(np.unique(inst)) == [0, 1, 2]
    assert np.array_equal(inst > 0, mask > 0)


def test_the_collector_is_paused_only_while_an_export_converts(tmp_path: Path) -> None:
    """The cyclic garbage collector is off during a conversion (it would walk the parsed export again and
    again) and back as it was after, also when the conversion fails."""
    import gc

    from benchmarks.convert import CONFIG as BOXES
    from benchmarks.convert import make_export

    seen: list[bool] = []

    def during(item) -> str:
        seen.append(gc.isenabled())
        return "train"

    assert gc.isenabled()
    report = export_to_dataset(
        make_export(3), "detect", tmp_path / "a", label_config=BOXES, images=None, split=during
    )
    assert report.converted == 3 and seen == [False] * 3 and gc.isenabled()
    bad = tmp_path / "bad.json"
    bad.write_text("[1, {")
    with pytest.raises(ValueError, match=r"bad\.json"):
        export_to_dataset(bad, "detect", tmp_path / "b", label_config=BOXES, images=None)
    assert gc.isenabled()
    gc.disable()
    try:
        export_to_dataset(make_export(2), "detect", tmp_path / "c", label_config=BOXES, images=None)
        assert not gc.isenabled()  # a caller's own choice is kept
    finally:
        gc.enable()
