"""Generated hostile input for every converter (hypothesis): Label Studio tasks and results of the wrong
types, NaN/inf, huge and negative numbers, unicode and nested garbage; VOC XML and YOLO txt with the same;
image bytes that are empty, truncated, corrupted or random.

Whatever goes in, every converter must: raise nothing; name the task or file in every skip; never leave
an unforeseen error to the per-item safety net ("cannot be converted (...)" would mean a case nobody
handled); and write only datasets a trainer reads completely — finite, in-range label coordinates, images
that decode, masks of the image's size (``dataset_checks.assert_clean_dataset``).

``HISTOLOOP_HYPOTHESIS_EXAMPLES`` raises the number of examples per test (default 60).
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
from dataset_checks import assert_clean_dataset  # tests/converters/
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from converters.images import ImageLoader
from converters.labelimg import labelimg_to_labelstudio, labelimg_to_yolo
from converters.labelstudio import export_to_dataset
from converters.pathology import aperio_to_dataset, brecahad_to_dataset
from converters.rle import mask_to_rle
from converters.tiling import tile_dataset
from kernel.tags import DATASET_KINDS

CONFIG = Path(__file__).resolve().parents[1] / "data" / "labelstudio_config.xml"
EXAMPLES = int(os.environ.get("HISTOLOOP_HYPOTHESIS_EXAMPLES", "60"))
HOSTILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NET = "cannot be converted ("  # the per-item safety net's reason: must never be needed

# -- values -----------------------------------------------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
garbage = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=8,
)


def mostly(valid: st.SearchStrategy, hostile: st.SearchStrategy, odds: int = 7) -> st.SearchStrategy:
    """``valid`` about ``odds`` times in ``odds + 1``, else ``hostile``: mostly plausible input with hostile
    parts, so that conversions get far enough to write (and be checked)."""
    return st.sampled_from([False] * odds + [True]).flatmap(lambda bad: hostile if bad else valid)


rarely = st.sampled_from([False] * 9 + [True])  # 1 time in 10
hostile_numbers = st.one_of(
    st.sampled_from(
        [1e-300, -1e-300, 1e308, -1e308, 10**400, -(10**400), float("nan"), float("inf"), -math.inf]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**30), 10**30),
    garbage,
)
percent = mostly(st.one_of(st.floats(-10, 110), st.integers(-5, 105)), hostile_numbers)
extent = mostly(st.one_of(st.floats(0.5, 60), st.integers(1, 60)), st.one_of(st.just(0), hostile_numbers))
rotation = mostly(st.one_of(st.just(0), st.just(0.0), st.floats(-360, 360)), hostile_numbers)
sizeish = mostly(
    st.integers(1, 48), st.one_of(st.sampled_from([0, -1, 1.5, 10**6, 10**400, math.nan, math.inf]), garbage)
)
REGION_LABELS, CHOICES = ["tumor", "lymphocyte"], ["benign", "malignant"]


def labelish(rtype: object) -> st.SearchStrategy:
    valid = CHOICES if rtype == "choices" else REGION_LABELS
    hostile = st.lists(st.sampled_from(["mitosis", "ünïcødé", "", *CHOICES, *REGION_LABELS]), max_size=2)
    return mostly(st.lists(st.sampled_from(valid), min_size=1, max_size=2), st.one_of(hostile, garbage))


TYPES = {"rectanglelabels": "box", "polygonlabels": "polygon", "brushlabels": "brush", "choices": "diagnosis"}


def maybe_missing(d: dict, keys: list[str]) -> st.SearchStrategy[dict]:
    """``d``, or (1 time in 8) ``d`` with some of ``keys`` removed."""
    some_gone = st.sets(st.sampled_from(keys), min_size=1).map(
        lambda gone: {k: v for k, v in d.items() if k not in gone}
    )
    return mostly(st.just(d), some_gone)


@st.composite
def results(draw) -> object:
    rtype = draw(
        mostly(
            st.sampled_from(list(TYPES)),
            st.one_of(st.sampled_from(["RectangleLabels", "keypointlabels"]), garbage),
        )
    )
    valid_name = (
        st.just(TYPES[rtype])
        if isinstance(rtype, str) and rtype in TYPES
        else st.sampled_from(list(TYPES.values()))
    )
    from_name = draw(mostly(valid_name, st.one_of(st.just("other"), garbage)))
    w, h = draw(sizeish), draw(sizeish)
    value: dict = {}
    if rtype in ("rectanglelabels", "RectangleLabels") or draw(rarely):
        value.update(x=draw(percent), y=draw(percent), width=draw(extent), height=draw(extent))
        value["rotation"] = draw(rotation)
    if rtype == "polygonlabels" or draw(rarely):
        point = st.lists(percent, min_size=2, max_size=2)
        value["points"] = draw(
            mostly(st.lists(point, min_size=3, max_size=6), st.one_of(st.lists(point, max_size=2), garbage))
        )
    if rtype == "brushlabels" or draw(rarely):
        if type(w) is int and type(h) is int and 0 < w <= 48 and 0 < h <= 48 and not draw(rarely):
            mask = draw(st.lists(st.booleans(), min_size=w * h, max_size=w * h))
            value["rle"] = mask_to_rle(np.array(mask, bool).reshape(h, w))
        else:
            value["rle"] = draw(st.one_of(st.lists(st.integers(-3, 300), max_size=40), garbage))
    key = rtype.lower() if isinstance(rtype, str) else "rectanglelabels"
    value[key] = draw(labelish(rtype))
    value = draw(maybe_missing(value, list(value)))
    r = {
        "id": draw(mostly(st.text(max_size=6), garbage)),
        "type": rtype,
        "from_name": from_name,
        "to_name": "image",
        "value": draw(mostly(st.just(value), garbage)),
        "original_width": w,
        "original_height": h,
    }
    return draw(mostly(maybe_missing(r, ["id", "type", "from_name", "value", "original_width"]), garbage))


@st.composite
def tasks(draw) -> object:
    annotation = st.fixed_dictionaries(
        {
            "id": mostly(st.integers(0, 99), garbage),
            "result": mostly(st.lists(results(), max_size=5), garbage),
        },
        optional={
            "was_cancelled": mostly(st.just(False), garbage),
            "ground_truth": mostly(st.booleans(), garbage),
            "completed_by": mostly(st.integers(1, 3), garbage),
            "updated_at": mostly(st.text(max_size=4), garbage),
        },
    )
    image = mostly(
        st.sampled_from([f"/data/local-files/?d=img/TCGA-AA-{i:04d}-t{i}.png" for i in range(6)]),
        st.one_of(
            st.text(max_size=30),
            st.sampled_from(
                ["http://[::1/x.png", "/data/local-files/?d=../../etc/passwd", "/data/upload/1/a.png"]
            ),
        ),
    )
    t = {
        "id": draw(mostly(st.integers(0, 10**6), garbage)),
        "data": draw(mostly(st.fixed_dictionaries({"image": image}), garbage)),
        "annotations": draw(mostly(st.lists(annotation, min_size=1, max_size=3), garbage)),
        "drafts": draw(mostly(st.just([]), garbage)),
    }
    return draw(mostly(maybe_missing(t, ["id", "data", "annotations", "drafts"]), garbage))


def assert_skips_name_their_item(report, allowed: tuple[str, ...]) -> None:
    event(
        f"converted: {'some' if report.converted else 'none'}, regions: {'some' if report.regions else 'none'}"
    )
    for item, reason in report.skipped:
        assert item.startswith(allowed), (item, reason)
        assert reason and NET not in reason, (item, reason)


# -- Label Studio -----------------------------------------------------------------------------------------
@HOSTILE
@given(
    export=st.lists(tasks(), max_size=6),
    kind=st.sampled_from(DATASET_KINDS),
    config=st.sampled_from([CONFIG, None]),
    per_annotator=st.booleans(),
)
def test_hostile_label_studio_tasks(export, kind, config, per_annotator):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ds"
        report = export_to_dataset(
            export, kind, out, label_config=config, images=None, per_annotator=per_annotator
        )
        assert_skips_name_their_item(report, ("task ", "export", "label config"))
        assert_clean_dataset(out)
        if out.exists():
            items = json.loads((out / "manifest.json").read_text())["items"]
            assert len([i for i in items if not i.get("copy_of")]) == report.converted
            assert all(isinstance(i["task_id"], int | str) for i in items)


# -- images -----------------------------------------------------------------------------------------------
@st.composite
def image_bytes(draw) -> tuple[str, bytes]:
    """(suffix, bytes): a valid PNG/JPEG/TIFF, or one that is truncated, has a byte changed, is empty or
    random; sometimes under another format's suffix."""
    w, h = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    pixels = np.frombuffer(draw(st.binary(min_size=w * h * 3, max_size=w * h * 3)), np.uint8).reshape(h, w, 3)
    fmt = draw(st.sampled_from(["PNG", "JPEG", "TIFF", "BMP"]))
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    data = buf.getvalue()
    suffix = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp"}[fmt]
    damage = draw(
        mostly(st.just("none"), st.sampled_from(["truncate", "flip", "empty", "random", "suffix"]), 2)
    )
    if damage == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip":
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    elif damage == "empty":
        data = b""
    elif damage == "random":
        data = draw(st.binary(max_size=2000))
    elif damage == "suffix":
        suffix = draw(st.sampled_from([".png", ".jpg", ".jpeg", ".tif"]))
    return suffix, data


def plain_task(i: int, url: str) -> dict:
    results = [
        {
            "type": "rectanglelabels",
            "from_name": "box",
            "to_name": "image",
            "value": {
                "x": 10,
                "y": 10,
                "width": 30,
                "height": 30,
                "rotation": 0,
                "rectanglelabels": ["tumor"],
            },
        },
        {
            "type": "polygonlabels",
            "from_name": "polygon",
            "to_name": "image",
            "value": {"points": [[10, 10], [60, 15], [30, 70]], "polygonlabels": ["lymphocyte"]},
        },
        {"type": "choices", "from_name": "diagnosis", "to_name": "image", "value": {"choices": ["benign"]}},
    ]
    return {"id": i, "data": {"image": url}, "annotations": [{"id": i, "result": results}]}


@HOSTILE
@given(files=st.lists(image_bytes(), min_size=1, max_size=5), kind=st.sampled_from(DATASET_KINDS))
def test_hostile_image_bytes_never_reach_a_dataset(files, kind):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "files"
        root.mkdir()
        export = []
        for i, (suffix, data) in enumerate(files):
            (root / f"TCGA-AA-{i:04d}-x{suffix}").write_bytes(data)
            export.append(plain_task(i, f"/data/local-files/?d=TCGA-AA-{i:04d}-x{suffix}"))
        report = export_to_dataset(
            export, kind, Path(tmp) / "ds", label_config=CONFIG, images=ImageLoader(local_root=root)
        )
        assert_skips_name_their_item(report, ("task ",))
        assert all(r.startswith("image: /data/local-files/?d=TCGA-AA-") for _, r in report.skipped)
        assert_clean_dataset(Path(tmp) / "ds", images=report.converted)


# -- LabelImg ---------------------------------------------------------------------------------------------
hostile_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "1" * 500, "", " 12 ", "0x10", "-0"]),
    st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), max_size=8),
)


@st.composite
def corrupted(draw, tokens: list[str]) -> list[str]:
    """``tokens``, or (about 1 time in 4) with one of them replaced by hostile text."""
    if tokens and draw(st.sampled_from([False, False, False, True])):
        tokens = list(tokens)
        tokens[draw(st.integers(0, len(tokens) - 1))] = draw(hostile_text)
    return tokens


@st.composite
def voc_xml(draw, image_name: str) -> bytes:
    objects = []
    for _ in range(draw(st.integers(0, 3))):  # 0 objects: a background image
        name = draw(mostly(st.sampled_from(["tumor", "stroma", "ünï"]), st.text(max_size=6)))
        x0, y0 = draw(st.integers(-5, 40)), draw(st.integers(-5, 40))
        box = [x0, y0, x0 + draw(st.integers(-2, 30)), y0 + draw(st.integers(-2, 30))]
        values = draw(corrupted([str(v) for v in box]))
        coords = "".join(
            f"<{k}>{_xml(v)}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), values, strict=True)
        )
        objects.append(f"<object><name>{_xml(name)}</name><bndbox>{coords}</bndbox></object>")
    w, h = draw(corrupted([str(draw(st.integers(1, 30))), str(draw(st.integers(1, 30)))]))
    size = draw(
        mostly(st.just(f"<size><width>{_xml(w)}</width><height>{_xml(h)}</height></size>"), st.just(""))
    )
    text = f"<annotation><filename>{_xml(image_name)}</filename>{size}{''.join(objects)}</annotation>"
    data = text.encode()
    if draw(rarely):
        data = data[: draw(st.integers(0, len(data)))]  # malformed
    return data


def _xml(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape("".join(c for c in text if c.isprintable()))


@st.composite
def yolo_txt(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        cid = draw(mostly(st.integers(0, 1), st.integers(-1, 3)))
        box = [
            draw(st.floats(-0.1, 1.1)),
            draw(st.floats(-0.1, 1.1)),
            draw(st.floats(0, 0.6)),
            draw(st.floats(0, 0.6)),
        ]
        tokens = draw(corrupted([str(cid)] + [str(v) for v in box]))
        if draw(rarely):
            tokens = tokens[: draw(st.integers(0, 4))] if draw(st.booleans()) else [*tokens, "0.5"]
        lines.append(" ".join(t.replace("\n", " ") for t in tokens))
    data = "\n".join(lines).encode()
    if draw(rarely):
        data += draw(st.sampled_from([b"\xff\xfe", b"caf\xe9", b"\x80"]))
    return data


@HOSTILE
@given(st.data())
def test_hostile_labelimg_folders(data):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "li"
        folder.mkdir()
        n = data.draw(st.integers(0, 4))
        for i in range(n):
            suffix, image = data.draw(image_bytes())
            (folder / f"TCGA-AA-{i:04d}{suffix}").write_bytes(image)
            if data.draw(st.booleans()):
                (folder / f"TCGA-AA-{i:04d}.xml").write_bytes(data.draw(voc_xml(f"TCGA-AA-{i:04d}{suffix}")))
            else:
                (folder / f"TCGA-AA-{i:04d}.txt").write_bytes(data.draw(yolo_txt()))
        classes = data.draw(
            mostly(st.just(b"tumor\nstroma\n"), st.sampled_from([b"", b"tum\xf6r\n", None]), 3)
        )
        if classes is not None:
            (folder / "classes.txt").write_bytes(classes)
        names = (*tuple(p.name for p in folder.iterdir()), str(folder))
        report = labelimg_to_yolo(folder, Path(tmp) / "ds")
        assert_skips_name_their_item(report, names)
        assert_clean_dataset(Path(tmp) / "ds", images=report.converted)
        if not report.converted:
            assert report.skipped, "nothing converted and no reason"
        report = labelimg_to_labelstudio(folder, Path(tmp) / "tasks.json", relative_to=tmp)
        assert_skips_name_their_item(report, names)
        if report.converted:
            text = (Path(tmp) / "tasks.json").read_text()
            out = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))
            for t in out:
                for r in t["predictions"][0]["result"]:
                    v = r["value"]
                    assert v["x"] >= 0 and v["x"] + v["width"] <= 100 + 1e-9 and v["width"] > 0, v
                    assert v["y"] >= 0 and v["y"] + v["height"] <= 100 + 1e-9 and v["height"] > 0, v


# -- Aperio XML, BreCaHAD, tiling ----------------------------------------------------------------------------
@HOSTILE
@given(st.data(), st.sampled_from(["segment", "detect", "yolo-segment"]))
def test_hostile_aperio_folders(data, kind):
    with tempfile.TemporaryDirectory() as tmp:
        xml_dir, images = Path(tmp) / "xml", Path(tmp) / "images"
        xml_dir.mkdir(), images.mkdir()
        for i in range(data.draw(st.integers(1, 3))):
            suffix, image = data.draw(image_bytes())
            (images / f"s{i}{suffix}").write_bytes(image)
            regions = []
            for r in range(data.draw(st.integers(0, 3))):
                k = data.draw(mostly(st.integers(3, 6), st.integers(0, 2), 3))
                xy = data.draw(corrupted([str(data.draw(st.floats(-5, 30))) for _ in range(2 * k)]))
                vertices = "".join(
                    f'<Vertex X="{_xml(x)}" Y="{_xml(y)}"/>' for x, y in zip(xy[::2], xy[1::2], strict=True)
                )
                regions.append(f'<Region Id="{r}"><Vertices>{vertices}</Vertices></Region>')
            text = (
                f"<Annotations><Annotation><Regions>{''.join(regions)}</Regions></Annotation></Annotations>"
            )
            (xml_dir / f"s{i}.xml").write_bytes(text.encode()[: 40 if data.draw(rarely) else None])
        names = tuple(p.name for p in xml_dir.iterdir())
        report = aperio_to_dataset(xml_dir, images, Path(tmp) / "ds", kind)
        assert_skips_name_their_item(report, names)
        assert_clean_dataset(Path(tmp) / "ds", images=report.converted)


@HOSTILE
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["tumor", "mitosis", "x"]),
            mostly(
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "x": mostly(st.floats(-0.1, 1.1), hostile_numbers),
                            "y": mostly(st.floats(-0.1, 1.1), hostile_numbers),
                        }
                    ),
                    max_size=4,
                ),
                garbage,
            ),
            max_size=3,
        ),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from(["detect", "segment"]),
)
def test_hostile_brecahad_points(files, kind):
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, content in enumerate(files):
            p = Path(tmp) / f"Case_{i}-01.json"
            try:
                p.write_text(json.dumps(content))
            except ValueError:  # an int too long for str(): what such a file would hold
                p.write_text('{"tumor": [{"x": 1' + "0" * 5000 + ', "y": 0.5}]}')
            paths.append(p)
        report = brecahad_to_dataset(paths, Path(tmp) / "ds", width=40, height=30, kind=kind)
        assert_skips_name_their_item(report, tuple(p.name for p in paths))
        assert_clean_dataset(Path(tmp) / "ds")


@HOSTILE
@given(st.data())
def test_hostile_edits_to_a_dataset_before_tiling(data):
    with tempfile.TemporaryDirectory() as tmp:
        export = [plain_task(i, f"/data/local-files/?d=TCGA-AA-{i:04d}-x.png") for i in range(3)]
        root = Path(tmp) / "files"
        root.mkdir()
        for i in range(3):
            Image.fromarray(np.full((40, 50, 3), 90 * i, np.uint8)).save(root / f"TCGA-AA-{i:04d}-x.png")
        kind = data.draw(st.sampled_from(["detect", "yolo-segment", "segment"]))
        ds = Path(tmp) / "ds"
        report = export_to_dataset(export, kind, ds, label_config=CONFIG, images=ImageLoader(local_root=root))
        assert report.converted == 3
        manifest = json.loads((ds / "manifest.json").read_text())
        for item in list(manifest["items"]):
            what = data.draw(st.sampled_from(["keep", "labels", "image", "mask", "item"]))
            stem, split = item["stem"], item["split"]
            if what == "labels" and kind != "segment":
                (ds / "labels" / split / f"{stem}.txt").write_bytes(data.draw(yolo_txt()))
            elif what == "image":
                (ds / "images" / split / f"{stem}.png").write_bytes(data.draw(image_bytes())[1])
            elif what == "mask" and kind == "segment":
                (ds / "masks" / split / f"{stem}.png").write_bytes(data.draw(image_bytes())[1])
            elif what == "item":
                manifest["items"].append(data.draw(garbage))
        (ds / "manifest.json").write_text(json.dumps(manifest, default=str))
        report = tile_dataset(ds, Path(tmp) / "tiles", tile=24, overlap=data.draw(st.integers(0, 8)))
        stems = tuple(
            i["stem"] for i in manifest["items"] if isinstance(i, dict) and isinstance(i.get("stem"), str)
        )
        assert_skips_name_their_item(report, (*stems, "manifest.json item", str(ds)))
        assert_clean_dataset(Path(tmp) / "tiles")
