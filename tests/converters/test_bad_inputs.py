"""The bad-input corpus: every input below once ended in a traceback that stopped the
whole batch, a silently wrong dataset, or a wrong/missing reason. Each now becomes a per-item skip whose
reason names the task or file, the rest converts, and ``histoloop convert`` exits by its rule (0 when
something usable was written, 1 when nothing was).

Every converter entry point is run through ``histoloop convert`` (click's runner, exceptions not caught,
so a traceback fails the test), plus one real subprocess that must print no traceback.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from dataset_checks import assert_clean_dataset  # tests/converters/ (imported as pytest's rootdir-relative)
from PIL import Image
from waits import LONG

from histoloop.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
CONFIG = DATA / "labelstudio_config.xml"


def png(w: int = 40, h: int = 30, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def jpeg(w: int = 40, h: int = 30) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def cli(tmp_path: Path, *args) -> tuple[int, str, dict | None]:
    """Run ``histoloop convert ARGS --json`` in-process; exceptions propagate (a traceback fails the test)."""
    env = {"HISTOLOOP_MODEL_STORE": str(tmp_path / "store")}
    res = CliRunner().invoke(main, ["convert", *map(str, args), "--json"], env=env, catch_exceptions=False)
    try:
        report = json.loads(res.stdout)
    except ValueError:
        report = None
    return res.exit_code, res.output, report


def reasons(report: dict) -> dict[str, str]:
    return {s["item"]: s["reason"] for s in report["skipped"]}


# -- Label Studio exports ---------------------------------------------------------------------------------
def rect(label="tumor", x=10.0, y=10.0, w=20.0, h=20.0, rotation=0.0, rid="r", **extra) -> dict:
    value = {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]}
    return {
        "id": rid,
        "from_name": "box",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": 40,
        "original_height": 30,
        "value": value,
        **extra,
    }


def polygon(label="tumor", points=((10, 10), (50, 10), (30, 60)), rid="p") -> dict:
    return {
        "id": rid,
        "from_name": "polygon",
        "to_name": "image",
        "type": "polygonlabels",
        "original_width": 40,
        "original_height": 30,
        "value": {"points": [list(p) for p in points], "polygonlabels": [label]},
    }


def choice(label="benign") -> dict:
    return {
        "id": "c",
        "from_name": "diagnosis",
        "to_name": "image",
        "type": "choices",
        "value": {"choices": [label]},
    }


def task(tid, results, image=None, **over) -> dict:
    t = {
        "id": tid,
        "data": {"image": image or f"/data/local-files/?d=img/TCGA-AA-{tid:04d}-t.png"},
        "annotations": [{"id": tid * 10, "result": results}],
    }
    t.update(over)
    return t


def good_results() -> list[dict]:
    return [rect(), polygon(), choice()]


def write_export(tmp_path: Path, tasks: list) -> Path:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    return path


def images_root(tmp_path: Path, broken: dict[int, bytes] | None = None, n: int = 12) -> Path:
    root = tmp_path / "ls-files"
    (root / "img").mkdir(parents=True, exist_ok=True)
    for tid in range(1, n + 1):
        (root / "img" / f"TCGA-AA-{tid:04d}-t.png").write_bytes(png(seed=tid))
    for tid, data in (broken or {}).items():
        (root / "img" / f"TCGA-AA-{tid:04d}-t.png").write_bytes(data)
    return root


TARGETS = ["yolo-detect", "yolo-segment", "masks", "classify"]


@pytest.mark.parametrize("target", TARGETS)
def test_task_shapes_that_stopped_the_batch(tmp_path, target):
    tasks = [
        task(1, good_results()),
        task(2, good_results(), annotations={"id": 1, "result": []}),  # annotations not a list
        task(3, good_results(), annotations="oops"),
        task(4, good_results(), data=7),  # data a scalar
        task(5, good_results(), data=["/data/upload/x.png"]),
        task(6, good_results(), drafts=3),
        task(7, [rect(label=["tumor"]), polygon(label={"l": 1}), choice(label=["benign"])]),
        task(8, good_results(), image="http://[::1/x.png"),  # not a URL
        task(9, good_results()),
    ]
    code, out, report = cli(
        tmp_path,
        "labelstudio",
        write_export(tmp_path, tasks),
        tmp_path / "out",
        "--to",
        target,
        "--label-config",
        CONFIG,
        "--labels-only",
    )
    assert code == 0, out
    assert report["converted"] == 3  # tasks 1, 6 and 9
    why = reasons(report)
    assert why["task 2"] == "annotations is not a list (a dict)"
    assert why["task 3"] == "annotations is not a list (a str)"
    assert why["task 4"] == "data is not an object (a int)"
    assert why["task 5"] == "data is not an object (a list)"
    assert "no submitted annotation" not in why.get("task 6", "")
    assert any(k.startswith("task 7") and "is not a string" in v for k, v in why.items()), why
    assert why["task 8"].startswith("image URL is not a valid URL")
    assert_clean_dataset(tmp_path / "out")


def test_a_rectangle_whose_label_is_a_list_is_one_skipped_region(tmp_path):
    results = [rect(label=["tumor"], rid="bad"), rect(rid="ok")]
    code, out, report = cli(
        tmp_path,
        "labelstudio",
        write_export(tmp_path, [task(1, results)]),
        tmp_path / "out",
        "--to",
        "yolo-detect",
        "--labels-only",
    )
    assert code == 0 and report["converted"] == 1 and report["regions"] == 1, out
    assert reasons(report) == {"task 1 (annotation 10) region bad": "label ['tumor'] is not a string"}


NOT_FINITE = [
    ("x", float("nan")),
    ("y", float("inf")),
    ("width", float("-inf")),
    ("height", float("nan")),
    ("rotation", float("nan")),
    ("rotation", float("inf")),
    ("x", 10**400),
    ("rotation", "30"),
]


@pytest.mark.parametrize("target", ["yolo-detect", "yolo-obb", "yolo-segment", "masks"])
def test_nan_and_inf_coordinates_are_refused_with_a_reason(tmp_path, target):
    results = [rect(rid="ok")]
    for n, (key, value) in enumerate(NOT_FINITE):
        r = rect(rid=f"bad{n}")
        r["value"][key] = value
        results.append(r)
    results += [
        polygon(rid="pnan", points=((10, 10), (float("nan"), 10), (30, 60))),
        polygon(rid="pinf", points=((10, 10), (float("inf"), 10), (30, 60))),
        polygon(rid="pbig", points=((10, 10), (10**400, 10), (30, 60))),
        polygon(rid="ok2"),
    ]
    bad_size = polygon(rid="wnan")
    bad_size["original_width"] = float("inf")
    results.append(bad_size)
    export = tmp_path / "export.json"
    export.write_text(json.dumps([task(1, results)]))  # json writes NaN / Infinity, as Python reads them
    args = ["--obb"] if target == "yolo-obb" else []
    to = "yolo-detect" if target == "yolo-obb" else target
    code, out, report = cli(
        tmp_path,
        "labelstudio",
        export,
        tmp_path / "out",
        "--to",
        to,
        *args,
        "--label-config",
        CONFIG,
        "--labels-only",
    )
    assert code == 0, out
    why = reasons(report)
    prefix = "task 1 (annotation 10) region "
    if target in ("yolo-detect", "yolo-obb"):
        for n, (key, _) in enumerate(NOT_FINITE):
            assert f"'{key}'" in why[f"{prefix}bad{n}"] and "finite number" in why[f"{prefix}bad{n}"], why
    assert "finite" in why[f"{prefix}pnan"] and "finite" in why[f"{prefix}pinf"]
    assert "finite" in why[f"{prefix}pbig"]
    assert not any(
        w["item"].startswith((f"{prefix}bad", f"{prefix}p", f"{prefix}w")) for w in report["warnings"]
    )
    assert_clean_dataset(tmp_path / "out")


def test_unrotated_nan_rectangle_gets_no_clipped_warning(tmp_path):
    r = rect(rid="n")
    r["value"]["x"] = float("nan")
    export = tmp_path / "export.json"
    export.write_text(json.dumps([task(1, [r, rect(rid="ok")])]))
    code, out, report = cli(
        tmp_path, "labelstudio", export, tmp_path / "out", "--to", "yolo-detect", "--labels-only"
    )
    assert code == 0 and report["regions"] == 1, out
    assert not any(w["item"].startswith("task 1 (annotation 10) region n") for w in report["warnings"]), out
    assert reasons(report) == {"task 1 (annotation 10) region n": "'x' is not a finite number (nan)"}
    assert "nan" not in (tmp_path / "out" / "labels" / "train" / "TCGA-AA-0001-t.txt").read_text()


BROKEN_IMAGES = {
    2: b"",  # 0 bytes
    3: png()[:200],  # truncated PNG
    4: np.random.default_rng(4).bytes(3000),  # random bytes
    5: b"\x89PNG\r\n\x1a\n" + b"\0" * 50,  # a PNG signature and nothing else
}


@pytest.mark.parametrize("target", ["yolo-detect", "yolo-segment", "classify", "masks"])
def test_unreadable_images_are_not_copied_into_a_dataset(tmp_path, target):
    root = images_root(tmp_path, BROKEN_IMAGES, n=6)
    (root / "img" / "TCGA-AA-0006-t.jpg").write_bytes(jpeg()[:-300])  # truncated JPEG
    tasks = [task(t, good_results()) for t in range(1, 6)]
    tasks.append(task(6, good_results(), image="/data/local-files/?d=img/TCGA-AA-0006-t.jpg"))
    tasks.append(task(7, good_results(), image="/data/local-files/?d=img/TCGA-AA-0001-t.png"))
    code, out, report = cli(
        tmp_path,
        "labelstudio",
        write_export(tmp_path, tasks),
        tmp_path / "out",
        "--to",
        target,
        "--label-config",
        CONFIG,
        "--local-root",
        root,
    )
    assert code == 0, out
    assert report["converted"] == 2
    why = reasons(report)
    for tid in (2, 3, 4, 5, 6):
        key = f"task {tid} (annotation {tid * 10})"
        assert why[key].startswith("image: /data/local-files/?d=img/TCGA-AA-"), why
    assert "empty file" in why["task 2 (annotation 20)"]
    assert_clean_dataset(tmp_path / "out", images=2)


def test_polygons_in_an_obb_export_convert_without_a_label_config(tmp_path):
    tasks = [task(1, [rect(), polygon(rid="poly", label="nucleus")])]
    code, out, report = cli(
        tmp_path,
        "labelstudio",
        write_export(tmp_path, tasks),
        tmp_path / "out",
        "--to",
        "yolo-detect",
        "--obb",
        "--labels-only",
    )
    assert code == 0 and report["skipped"] == [] and report["regions"] == 2, out
    assert "nucleus" in (tmp_path / "out" / "data.yaml").read_text()
    assert_clean_dataset(tmp_path / "out")


def test_a_label_of_another_tag_is_named_as_such(tmp_path):
    tasks = [task(1, [rect(label="benign", rid="b"), rect(label="mitosis", rid="m"), rect()])]
    code, out, report = cli(
        tmp_path,
        "labelstudio",
        write_export(tmp_path, tasks),
        tmp_path / "out",
        "--to",
        "yolo-detect",
        "--obb",
        "--label-config",
        CONFIG,
        "--labels-only",
    )
    assert code == 0, out
    why = reasons(report)
    assert why["task 1 (annotation 10) region m"] == "label 'mitosis' is not in the label config"
    assert why["task 1 (annotation 10) region b"] == (
        "label 'benign' is a label of 'diagnosis' (Choices), not of a RectangleLabels or PolygonLabels tag"
    )


def test_an_annotation_id_cannot_write_outside_the_dataset(tmp_path):
    t = task(1, [rect()])
    t["annotations"] = [
        {"id": "../../../../escaped", "completed_by": 1, "result": [rect()]},
        {"id": "a\0b", "completed_by": 2, "result": [rect()]},
    ]
    code, out, report = cli(
        tmp_path,
        "labelstudio",
        write_export(tmp_path, [t]),
        tmp_path / "ds" / "out",
        "--to",
        "yolo-detect",
        "--labels-only",
        "--per-annotator",
    )
    assert code == 0 and report["converted"] == 2, out
    assert not list(tmp_path.rglob("escaped*.txt")) or all(
        p.is_relative_to(tmp_path / "ds" / "out") for p in tmp_path.rglob("escaped*.txt")
    )
    assert_clean_dataset(tmp_path / "ds" / "out")


def rle_bomb(records: int) -> list[int]:
    """Label Studio RLE whose header claims 2^32 - 1 values and whose ``records`` repeat records of 65536
    values each would decode to ``records`` x 64 Ki bytes."""
    header = (0xFFFFFFFF << 21) | (7 << 16) | (2 << 12) | (3 << 8) | (7 << 4) | 15
    bits = format(header, "053b") + ("1" + "11" + "1" * 16 + "1" * 8) * records
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


def test_a_brush_claiming_more_pixels_than_the_image_is_refused_before_decoding(tmp_path):
    import tracemalloc

    brush = {
        "id": "b",
        "from_name": "brush",
        "to_name": "image",
        "type": "brushlabels",
        "original_width": 40,
        "original_height": 30,
        "value": {"format": "rle", "rle": rle_bomb(4096), "brushlabels": ["tumor"]},
    }
    tracemalloc.start()
    try:
        code, out, report = cli(
            tmp_path,
            "labelstudio",
            write_export(tmp_path, [task(1, [brush, polygon()])]),
            tmp_path / "out",
            "--to",
            "masks",
            "--label-config",
            CONFIG,
            "--labels-only",
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 0 and report["converted"] == 1, out
    assert reasons(report)["task 1 (annotation 10) region b"].startswith(
        "bad RLE: RLE holds 4294967295 values"
    )
    assert peak < 64 << 20, f"{peak >> 20} MiB allocated: the RLE was decoded"


def test_an_export_with_nothing_in_it_says_so(tmp_path):
    code, out, report = cli(
        tmp_path,
        "labelstudio",
        write_export(tmp_path, []),
        tmp_path / "out",
        "--to",
        "yolo-detect",
        "--labels-only",
    )
    assert code == 1 and reasons(report) == {"export": "no tasks in the export"}, out


def test_deeply_nested_json_is_an_error_naming_the_file(tmp_path):
    export = tmp_path / "deep.json"
    export.write_text("[" * 100_000 + "]" * 100_000)
    res = CliRunner().invoke(
        main,
        ["convert", "labelstudio", str(export), str(tmp_path / "o"), "--to", "yolo-detect"],
        catch_exceptions=False,
    )
    assert res.exit_code == 1 and f"{export}: not valid JSON (nested too deeply)" in res.output, res.output


# -- LabelImg -------------------------------------------------------------------------------------------
VOC_NO_SIZE = """<annotation><filename>{name}</filename>
<object><name>tumor</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>
</annotation>"""
VOC = """<annotation><filename>{name}</filename><size><width>40</width><height>30</height></size>
<object><name>tumor</name><bndbox><xmin>{x0}</xmin><ymin>2</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>
</annotation>"""


def labelimg_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "li"
    folder.mkdir()
    (folder / "good.png").write_bytes(png())
    (folder / "good.xml").write_text(VOC.format(name="good.png", x0=1))
    (folder / "empty.png").write_bytes(b"")  # a VOC without <size> next to a 0-byte image
    (folder / "empty.xml").write_text(VOC_NO_SIZE.format(name="empty.png"))
    (folder / "zero.png").write_bytes(b"")  # a 0-byte image whose VOC has a <size>
    (folder / "zero.xml").write_text(VOC.format(name="zero.png", x0=1))
    (folder / "short.png").write_bytes(png()[:150])
    (folder / "short.xml").write_text(VOC.format(name="short.png", x0=1))
    (folder / "corrupt.tif").write_bytes(b"II*\x00" + b"\0" * 20)  # a TIFF header and no pages
    (folder / "corrupt.xml").write_text(VOC_NO_SIZE.format(name="corrupt.tif"))
    (folder / "sized.tif").write_bytes(b"II*\x00\x08\x00\x00\x00" + b"\xff" * 30)
    (folder / "sized.xml").write_text(VOC.format(name="sized.tif", x0=1))
    (folder / "nan.png").write_bytes(png())
    (folder / "nan.xml").write_text(VOC.format(name="nan.png", x0="nan"))
    (folder / "inf.png").write_bytes(png())
    (folder / "inf.xml").write_text(VOC.format(name="inf.png", x0="-inf"))
    (folder / "latin.png").write_bytes(png())
    (folder / "latin.txt").write_bytes("0 0.5 0.5 0.2 0.2 # \xe9t\xe9\n".encode("latin-1"))
    (folder / "yolo.png").write_bytes(png())
    (folder / "yolo.txt").write_text("0 0.5 0.5 0.2 0.2\n0 nan 0.5 0.2 0.2\n0 0.5 0.5 inf 0.2\n")
    (folder / "laughs.png").write_bytes(png())
    entities = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10 if i else "lol"}">' for i in range(10))
    (folder / "laughs.xml").write_text(
        f'<?xml version="1.0"?><!DOCTYPE a [{entities}]><annotation>&l9;</annotation>'
    )
    (folder / "classes.txt").write_text("tumor\n")
    return folder


def test_labelimg_bad_files_are_skipped_and_the_rest_converts(tmp_path):
    folder = labelimg_folder(tmp_path)
    code, out, report = cli(tmp_path, "labelimg", folder, tmp_path / "out", "--to", "yolo")
    assert code == 0, out
    assert report["converted"] == 2 and report["regions"] == 2  # good.xml and yolo.txt's first line
    why = reasons(report)
    assert why["empty.xml"] == "image empty.png: empty file (0 bytes)"
    assert why["zero.xml"] == "image zero.png: empty file (0 bytes)"
    assert why["short.xml"].startswith("image short.png: not a readable image")
    assert why["corrupt.xml"].startswith("image corrupt.tif: not a readable TIFF")
    assert why["sized.xml"].startswith("image sized.tif: not a readable TIFF")
    assert why["nan.xml object 0"] == "bndbox xmin is not a finite number ('nan')"
    assert why["inf.xml object 0"] == "bndbox xmin is not a finite number ('-inf')"
    assert why["latin.txt"].startswith("not UTF-8 text (byte 0xe9 at offset ")
    assert why["yolo.txt line 2"] == "not a finite number: 'nan'"
    assert why["yolo.txt line 3"] == "not a finite number: 'inf'"
    assert why["laughs.xml"].startswith("refused: the XML declares entities or external references")
    assert_clean_dataset(tmp_path / "out", images=2)
    code, out, report = cli(tmp_path, "labelimg", folder, tmp_path / "tasks.json", "--to", "labelstudio")
    assert code == 0 and report["converted"] == 2, out
    assert not any("nan" in json.dumps(t) for t in json.loads((tmp_path / "tasks.json").read_text()))


def test_labelimg_non_utf8_classes_file_is_named(tmp_path):
    folder = tmp_path / "li"
    folder.mkdir()
    (folder / "a.png").write_bytes(png())
    (folder / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (folder / "classes.txt").write_bytes(b"tum\xf6r\n")
    code, out, report = cli(tmp_path, "labelimg", folder, tmp_path / "out", "--to", "yolo")
    assert code == 1, out
    assert reasons(report)["classes.txt"].startswith("not UTF-8 text")
    assert reasons(report)["a.txt"] == "YOLO labels without a readable classes.txt in the folder"


@pytest.mark.parametrize("content", ["nothing", "images only", "classes only"])
def test_a_labelimg_folder_with_nothing_usable_says_why(tmp_path, content):
    folder = tmp_path / "li"
    folder.mkdir()
    if content == "images only":
        (folder / "a.png").write_bytes(png())
        (folder / "b.jpg").write_bytes(jpeg())
    if content == "classes only":
        (folder / "classes.txt").write_text("tumor\n")
    for to, out in (("yolo", tmp_path / "out"), ("labelstudio", tmp_path / "t.json")):
        code, text, report = cli(tmp_path, "labelimg", folder, out, "--to", to)
        assert code == 1, text
        assert report["converted"] == 0 and len(report["skipped"]) == 1, text
        item, reason = report["skipped"][0]["item"], report["skipped"][0]["reason"]
        assert item == str(folder)
        images = 2 if content == "images only" else 0
        assert reason == (
            f"no LabelImg annotations (<stem>.xml, or <stem>.txt with classes.txt) beside the {images} images"
        )


# -- Aperio XML and BreCaHAD ------------------------------------------------------------------------------
APERIO = """<Annotations><Annotation Id="1"><Regions><Region Id="{rid}" Area="100"><Vertices>
<Vertex X="2" Y="2"/><Vertex X="20" Y="2"/><Vertex X="{x}" Y="20"/></Vertices></Region></Regions></Annotation>
</Annotations>"""


@pytest.mark.parametrize("target", ["yolo-detect", "yolo-segment", "masks"])
def test_aperio_unreadable_images_are_skipped(tmp_path, target):
    xml, images = tmp_path / "xml", tmp_path / "images"
    xml.mkdir(), images.mkdir()
    for stem, data in (
        ("good", png()),
        ("empty", b""),
        ("short", png()[:120]),
        ("tif", b"MM\x00*" + b"\0" * 9),
    ):
        (images / f"{stem}{'.tif' if stem == 'tif' else '.png'}").write_bytes(data)
        (xml / f"{stem}.xml").write_text(APERIO.format(rid=1, x=10))
    (images / "nan.png").write_bytes(png())
    (xml / "nan.xml").write_text(APERIO.format(rid=1, x="NaN"))
    code, out, report = cli(tmp_path, "aperio", xml, images, tmp_path / "out", "--to", target)
    assert code == 0 and report["converted"] == 1, out
    why = reasons(report)
    assert why["empty.xml"] == "image empty.png: empty file (0 bytes)"
    assert why["short.xml"].startswith("image short.png: not a readable image")
    assert why["tif.xml"].startswith("image tif.tif: not a readable TIFF")
    assert why["nan.xml region 1"] == "fewer than 3 numeric vertices"
    assert_clean_dataset(tmp_path / "out", images=1)


def test_aperio_folder_without_xml_says_why(tmp_path):
    (tmp_path / "xml").mkdir(), (tmp_path / "images").mkdir()
    code, out, report = cli(
        tmp_path, "aperio", tmp_path / "xml", tmp_path / "images", tmp_path / "out", "--to", "masks"
    )
    assert code == 1 and reasons(report) == {str(tmp_path / "xml"): "no Aperio XML files (*.xml)"}, out


def test_brecahad_hostile_points(tmp_path):
    files = {
        "nan.json": '{"tumor": [{"x": NaN, "y": 0.5}, {"x": 0.5, "y": 0.5}]}',
        "big.json": '{"tumor": [{"x": 1' + "0" * 400 + ', "y": 0.5}]}',
        "deep.json": "[" * 50_000 + "]" * 50_000,
        "latin.json": b'{"tumor": [{"x": 0.5, "y": 0.5}], "\xe9": []}',
        "list.json": '{"tumor": {"x": 0.5, "y": 0.5}}',
    }
    paths = []
    for name, text in files.items():
        p = tmp_path / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        paths.append(p)
    for to in ("yolo-detect", "masks"):
        code, out, report = cli(
            tmp_path, "brecahad", *paths, tmp_path / to, "--width", 64, "--height", 48, "--to", to
        )
        assert code == 0 and report["converted"] == 1, out
        why = reasons(report)
        assert why["nan.json class tumor"] == "1 points are not finite numbers"
        assert why["big.json"] == "class 'tumor' has points without numeric x/y"
        assert why["deep.json"] == "not valid JSON (nested too deeply)"
        assert why["latin.json"].startswith("not valid JSON")
        assert_clean_dataset(tmp_path / to)
    for option in ("--box-size", "--radius"):
        res = CliRunner().invoke(
            main,
            [
                "convert",
                "brecahad",
                str(paths[0]),
                str(tmp_path / "x"),
                "--width",
                "64",
                "--height",
                "48",
                option,
                "nan",
            ],
            catch_exceptions=False,
        )
        assert res.exit_code != 0 and "must be a positive number" in res.output, res.output


# -- tiling -----------------------------------------------------------------------------------------------
def test_tiling_a_damaged_dataset_skips_the_damaged_items(tmp_path):
    folder = labelimg_folder(tmp_path)
    ds = tmp_path / "ds"
    assert cli(tmp_path, "labelimg", folder, ds, "--to", "yolo")[0] == 0
    manifest = json.loads((ds / "manifest.json").read_text())
    good = manifest["items"][0]
    split = good["split"]
    for stem, lines in (
        ("nanlines", b"0 nan 0.5 0.1 0.1\n"),
        ("latin", b"0 0.5 0.5 0.1 0.1 \xe9\n"),
        ("badclass", b"7 0.5 0.5 0.1 0.1\nx 0.5 0.5 0.1 0.1\n"),
    ):
        (ds / "images" / split / f"{stem}.png").write_bytes(png(80, 60))
        (ds / "labels" / split / f"{stem}.txt").write_bytes(lines)
        manifest["items"].append({"stem": stem, "split": split})
    manifest["items"] += [
        "garbage",
        {"stem": "../../etc/passwd", "split": split},
        {"stem": 3},
        {"stem": "nosplit", "split": "elsewhere"},
    ]
    (ds / "manifest.json").write_text(json.dumps(manifest))
    code, out, report = cli(tmp_path, "tile", ds, tmp_path / "tiles", "--tile", 32, "--overlap", 8)
    assert code == 0, out
    why = reasons(report)
    assert why["nanlines"] == f"labels/{split}/nanlines.txt line 1: not a finite number: 'nan'"
    assert why["latin"].startswith(f"labels/{split}/latin.txt: not UTF-8 text")
    assert why["badclass"] == f"labels/{split}/badclass.txt line 1: class id 7 is not one of the 1 classes"
    assert why["manifest.json item 5"] == "not an object"
    assert why["manifest.json item 6"] == "stem '../../etc/passwd' is not a file name"
    assert why["manifest.json item 7"] == "no stem/split"
    assert why["manifest.json item 8"] == "split 'elsewhere' is not train, val or test"
    assert_clean_dataset(tmp_path / "tiles")


def test_tiling_a_masks_dataset_without_its_masks(tmp_path):
    xml, images = tmp_path / "xml", tmp_path / "images"
    xml.mkdir(), images.mkdir()
    for stem in ("a", "b", "c"):
        (images / f"{stem}.png").write_bytes(png(64, 64))
        (xml / f"{stem}.xml").write_text(APERIO.format(rid=1, x=10))
    assert cli(tmp_path, "aperio", xml, images, tmp_path / "ds", "--to", "masks")[0] == 0
    masks = {p.stem: p for p in (tmp_path / "ds" / "masks").rglob("*.png")}
    masks["a"].unlink()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks["b"])
    code, out, report = cli(tmp_path, "tile", tmp_path / "ds", tmp_path / "t", "--tile", 32, "--overlap", 0)
    assert code == 0 and report["converted"] == 4, out
    why = reasons(report)
    assert why["a"].startswith("mask masks/") and "not found" in why["a"]
    assert why["b"] == "mask is 10x10, the image 64x64"
    assert_clean_dataset(tmp_path / "t")


# -- the real command ------------------------------------------------------------------------------------
def test_the_command_prints_no_traceback_on_the_corpus(tmp_path):
    folder = labelimg_folder(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HISTOLOOP_MODEL_STORE": str(tmp_path / "store")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "histoloop.cli",
            "convert",
            "labelimg",
            str(folder),
            str(tmp_path / "out"),
            "--to",
            "yolo",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=LONG,
    )
    assert run.returncode == 0 and "Traceback" not in run.stderr + run.stdout, run.stderr
    assert "converted 2, skipped 13" in run.stdout and "empty.xml: image empty.png: empty file" in run.stdout
    export = tmp_path / "bad.json"
    export.write_text(json.dumps([task(1, [rect(label=["x"])], annotations=5), task(2, [rect()], data=1)]))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "histoloop.cli",
            "convert",
            "labelstudio",
            str(export),
            str(tmp_path / "o"),
            "--to",
            "yolo-detect",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=LONG,
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr + run.stdout, run.stderr
    assert "task 1: annotations is not a list (a int)" in run.stdout
    assert "nothing usable was produced" in run.stderr


def test_the_shared_test_data_still_converts_cleanly(tmp_path):
    code, out, report = cli(tmp_path, "labelimg", DATA / "labelimg_voc", tmp_path / "voc", "--to", "yolo")
    assert code == 0 and report["converted"] == 3 and report["skipped"] == [], out
    assert_clean_dataset(tmp_path / "voc", images=3)


def test_an_annotation_drawn_only_with_another_control_is_not_a_background_example(tmp_path):
    brush = {
        "id": "b",
        "from_name": "brush",
        "to_name": "image",
        "type": "brushlabels",
        "original_width": 40,
        "original_height": 30,
        "value": {"format": "rle", "rle": [0, 0, 0, 1], "brushlabels": ["tumor"]},
    }
    tasks = [
        task(1, [brush, choice()]),
        task(2, [rect(), polygon()]),
        task(3, []),
        task(4, [rect(), choice()]),
    ]
    export, root = write_export(tmp_path, tasks), images_root(tmp_path)
    common = ("--label-config", CONFIG, "--local-root", root)
    code, out, report = cli(tmp_path, "labelstudio", export, tmp_path / "det", "--to", "yolo-detect", *common)
    assert code == 0, out
    why = reasons(report)
    assert why["task 1 (annotation 10)"] == (
        "its only regions (1 brushlabels) are of another control; a detect dataset reads rectanglelabels, "
        "polygonlabels"
    )
    labels = {p.stem: p.read_text() for p in (tmp_path / "det" / "labels").glob("*/*.txt")}
    assert "TCGA-AA-0001-t" not in labels  # was an empty label file: "no tumour here"
    assert labels["TCGA-AA-0003-t"] == ""  # an annotation with no regions at all is background
    assert labels["TCGA-AA-0004-t"] != ""
    code, out, report = cli(tmp_path, "labelstudio", export, tmp_path / "masks", "--to", "masks", *common)
    assert code == 0, out
    assert reasons(report)["task 4 (annotation 40)"].startswith("its only regions (1 rectanglelabels) are of")
    masks = {p.stem for p in (tmp_path / "masks").rglob("masks/*/*.png")}
    assert "TCGA-AA-0004-t" not in masks and "TCGA-AA-0002-t" in masks  # was an empty mask


def test_a_brecahad_file_whose_points_were_all_refused_is_not_a_background_example(tmp_path):
    files = {
        "outside.json": {"tumor": [{"x": 1.5, "y": 0.5}], "mitosis": [{"x": -0.1, "y": 0.2}]},
        "unknown.json": {"mystery": [{"x": 0.5, "y": 0.5}]},
        "bool.json": {"tumor": [{"x": True, "y": 0.5}]},
        "text.json": {"tumor": [{"x": "0.5", "y": 0.5}]},
        "empty.json": {"tumor": []},  # no points at all: background
        "good.json": {"tumor": [{"x": 0.5, "y": 0.5}]},
    }
    paths = []
    for name, points in files.items():
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(points))
    for to in ("yolo-detect", "masks"):
        code, out, report = cli(
            tmp_path, "brecahad", *paths, tmp_path / to, "--width", 64, "--height", 48, "--to", to
        )
        assert code == 0 and report["converted"] == 2, out
        why = reasons(report)
        assert why["outside.json"] == "none of its 2 points could be used"
        assert why["unknown.json"] == "none of its 1 points could be used"
        assert why["bool.json"] == why["text.json"] == "class 'tumor' has points without numeric x/y"
        written = {i["stem"] for i in json.loads((tmp_path / to / "manifest.json").read_text())["items"]}
        assert written == {"empty", "good"}


@pytest.mark.parametrize("option", ["--box-size", "--radius"])
def test_brecahad_sizes_larger_than_the_image_are_refused(tmp_path, option):
    points = tmp_path / "p.json"
    points.write_text('{"tumor": [{"x": 0.5, "y": 0.5}]}')
    code, out, _ = cli(
        tmp_path, "brecahad", points, tmp_path / "o", "--width", 64, "--height", 48, option, "1e308"
    )
    assert code == 1 and "must be at most the image's longer side (64 px), got 1e+308" in out, out
    assert not (tmp_path / "o").exists()


def test_fifos_named_like_label_files_or_images_are_skipped_not_read(tmp_path):
    folder = tmp_path / "labelimg"
    folder.mkdir()
    for name in ("TCGA-AA-0001-t.xml", "TCGA-AA-0002-t.txt", "TCGA-AA-0003-t.png", "classes.txt"):
        os.mkfifo(folder / name)  # opening one for reading would wait for a writer for ever
    (folder / "TCGA-AA-0003-t.xml").write_text(
        "<annotation><filename>TCGA-AA-0003-t.png</filename><object><name>tumor</name><bndbox><xmin>1</xmin>"
        "<ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>"
    )
    (folder / "TCGA-AA-0004-t.png").write_bytes(png())
    (folder / "TCGA-AA-0004-t.xml").write_text(
        "<annotation><object><name>tumor</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax>"
        "<ymax>9</ymax></bndbox></object></annotation>"
    )
    xml_dir = tmp_path / "aperio"
    xml_dir.mkdir()
    os.mkfifo(xml_dir / "fifo.xml")
    points = tmp_path / "fifo.json"
    os.mkfifo(points)
    commands = {
        "labelimg": ["labelimg", folder, tmp_path / "out", "--to", "yolo"],
        "aperio": ["aperio", xml_dir, folder, tmp_path / "a", "--to", "masks"],
        "brecahad": ["brecahad", points, tmp_path / "b", "--width", 64, "--height", 48],
    }
    for name, args in commands.items():
        run = subprocess.run(
            [sys.executable, "-m", "histoloop.cli", "convert", *map(str, args), "--json"],
            capture_output=True,
            text=True,
            timeout=300,  # before: blocked in open() for ever
            env={**os.environ, "HISTOLOOP_MODEL_STORE": str(tmp_path / "store")},
        )
        assert "Traceback" not in run.stderr, run.stderr
        why = reasons(json.loads(run.stdout))
        fifo = "cannot read (not a regular file (a FIFO))"
        if name == "labelimg":
            assert run.returncode == 0, run.stderr
            assert why["TCGA-AA-0001-t.xml"] == fifo
            assert why["classes.txt"] == fifo and "TCGA-AA-0002-t.txt" in why
            assert why["TCGA-AA-0003-t.xml"] == "no image for TCGA-AA-0003-t.png"  # a FIFO is no image
        else:
            assert run.returncode == 1 and fifo in " ".join(why.values()), why


def test_polygons_beyond_the_vertex_cap_are_refused_with_a_reason(tmp_path):
    circle = [
        (20 + 10 * np.cos(t), 15 + 10 * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 10_001, endpoint=False)
    ]
    huge = polygon(points=[(x / 40 * 100, y / 30 * 100) for x, y in circle], rid="huge")
    code, out, report = cli(
        tmp_path,
        "labelstudio",
        write_export(tmp_path, [task(1, [huge, polygon()])]),
        tmp_path / "det",
        "--to",
        "yolo-segment",
        "--label-config",
        CONFIG,
        "--labels-only",
    )
    assert code == 0, out
    limit = "a polygon of 10001 vertices, more than the limit of 10000"
    assert reasons(report)["task 1 (annotation 10) region huge"] == limit
    assert (
        max(len(line) for p in (tmp_path / "det").rglob("*.txt") for line in p.read_text().splitlines())
        < 1000
    )
    xml, images = tmp_path / "xml", tmp_path / "images"
    xml.mkdir(), images.mkdir()
    (images / "s.png").write_bytes(png())
    vertices = "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in circle)
    (xml / "s.xml").write_text(
        f'<Annotations><Annotation><Regions><Region Id="1"><Vertices>{vertices}</Vertices></Region>'
        f'<Region Id="2"><Vertices><Vertex X="1" Y="1"/><Vertex X="9" Y="1"/><Vertex X="5" Y="9"/></Vertices>'
        "</Region></Regions></Annotation></Annotations>"
    )
    code, out, report = cli(tmp_path, "aperio", xml, images, tmp_path / "ap", "--to", "yolo-segment")
    assert code == 0 and reasons(report)["s.xml region 1"] == limit, out


POLYGON_CASES = {
    "line": ((10, 10), (20, 20), (30, 30)),
    "point": ((10, 10), (10, 10), (10, 10)),
    "outside": ((150, 150), (170, 150), (170, 170)),
    "crossing": ((10, 10), (40, 40), (40, 10), (10, 40)),  # a bow tie: its signed areas cancel
    "partly_off": ((90, 90), (130, 90), (130, 130)),
}
POLYGON_OUTCOMES = {
    "line": "zero-area polygon (its points are on one line)",
    "point": "zero-area polygon (its points are on one line)",
    "outside": "polygon lies outside the image",
    "crossing": None,  # converted
    "partly_off": None,  # converted, clipped with a warning
}


@pytest.mark.parametrize("target", ["yolo-detect", "yolo-obb", "yolo-segment", "masks"])
def test_every_target_takes_or_refuses_a_polygon_alike(tmp_path, target):
    """One polygon rule for every target: on one line or one point, or beside the image, refused with the
    same reason; self-crossing and partly outside, converted."""
    tasks = [
        task(i + 1, [polygon(points=pts, rid=name), polygon()])
        for i, (name, pts) in enumerate(POLYGON_CASES.items())
    ]
    code, out, report = cli(
        tmp_path,
        "labelstudio",
        write_export(tmp_path, tasks),
        tmp_path / "out",
        "--to",
        target,
        "--label-config",
        CONFIG,
        "--local-root",
        images_root(tmp_path),
    )
    assert code == 0, out
    got = {
        name: reasons(report).get(f"task {i + 1} (annotation {(i + 1) * 10}) region {name}")
        for i, name in enumerate(POLYGON_CASES)
    }
    assert got == POLYGON_OUTCOMES, out
    assert_clean_dataset(tmp_path / "out")
