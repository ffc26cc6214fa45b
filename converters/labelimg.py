"""LabelImg output (Pascal VOC XML, or YOLO txt + classes.txt) → YOLO datasets and Label Studio tasks.

A LabelImg folder holds images and, per image, either ``<stem>.xml`` (Pascal VOC: ``<size>``, one
``<object>`` with ``<name>`` and ``<bndbox>`` xmin/ymin/xmax/ymax in pixels per box) or ``<stem>.txt``
(YOLO lines, class ids into ``classes.txt``). :func:`read_labelimg` reads both (VOC wins when an image has
both), :func:`labelimg_to_yolo` writes the YOLO detection dataset, :func:`labelimg_to_labelstudio` writes
Label Studio tasks with the boxes as pre-annotations (or annotations) plus a matching label config, so a
lab can move its LabelImg work into Label Studio.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converters.dataset import DatasetWriter, format_line
from converters.images import image_size
from converters.predictions import boxes_to_results
from converters.report import ConversionReport
from converters.split import assign_split, group_of

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class LabelImgItem:
    image: Path
    width: int
    height: int
    boxes: list[tuple[str, float, float, float, float]] = field(default_factory=list)
    """(label, x0, y0, x1, y1) in pixels."""
    source: str = ""


def _image_for(folder: Path, stem: str, hint: str | None = None) -> Path | None:
    if hint and (folder / Path(hint).name).is_file():
        return folder / Path(hint).name
    for suffix in IMAGE_SUFFIXES:
        for cand in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if cand.is_file():
                return cand
    return None


def _read_voc(xml: Path, report: ConversionReport) -> LabelImgItem | None:
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as exc:
        report.skip(xml.name, f"not valid XML ({exc})")
        return None
    image = _image_for(xml.parent, xml.stem, root.findtext("filename"))
    if image is None:
        report.skip(xml.name, f"no image for {root.findtext('filename') or xml.stem}")
        return None
    try:
        width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
    except (TypeError, ValueError):
        width, height = image_size(image)
    if width <= 0 or height <= 0:
        width, height = image_size(image)
    item = LabelImgItem(image, width, height, source=xml.name)
    for n, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        try:
            x0, y0, x1, y1 = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            report.skip(f"{xml.name} object {n}", "bndbox without numeric xmin/ymin/xmax/ymax")
            continue
        if not name:
            report.skip(f"{xml.name} object {n}", "object without a name")
            continue
        item.boxes.append((name, x0, y0, x1, y1))
    return item


def _read_yolo(txt: Path, classes: list[str], report: ConversionReport) -> LabelImgItem | None:
    image = _image_for(txt.parent, txt.stem)
    if image is None:
        report.skip(txt.name, f"no image {txt.stem}.*")
        return None
    try:
        width, height = image_size(image)
    except OSError as exc:
        report.skip(txt.name, f"image {image.name} is not readable ({exc})")
        return None
    item = LabelImgItem(image, width, height, source=txt.name)
    for n, line in enumerate(txt.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            cid = int(parts[0])
            xc, yc, w, h = (float(v) for v in parts[1:5])
            if len(parts) != 5:
                raise ValueError
        except (ValueError, IndexError):
            report.skip(f"{txt.name} line {n}", "not a YOLO line 'class xc yc w h'")
            continue
        if not 0 <= cid < len(classes):
            report.skip(
                f"{txt.name} line {n}", f"class id {cid} is not in classes.txt ({len(classes)} classes)"
            )
            continue
        item.boxes.append(
            (
                classes[cid],
                (xc - w / 2) * width,
                (yc - h / 2) * height,
                (xc + w / 2) * width,
                (yc + h / 2) * height,
            )
        )
    return item


def read_labelimg(folder: str | Path, report: ConversionReport | None = None) -> list[LabelImgItem]:
    """Every annotated image of a LabelImg folder (VOC XML and/or YOLO txt + classes.txt)."""
    folder = Path(folder)
    report = report if report is not None else ConversionReport()
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    items: dict[str, LabelImgItem] = {}
    for xml in sorted(folder.glob("*.xml")):
        item = _read_voc(xml, report)
        if item:
            items[xml.stem] = item
    txts = [t for t in sorted(folder.glob("*.txt")) if t.name != "classes.txt" and t.stem not in items]
    if txts:
        classes_file = folder / "classes.txt"
        if not classes_file.is_file():
            for t in txts:
                report.skip(t.name, "YOLO labels without classes.txt in the folder")
        else:
            classes = [c.strip() for c in classes_file.read_text().splitlines() if c.strip()]
            for t in txts:
                item = _read_yolo(t, classes, report)
                if item:
                    items[t.stem] = item
    return [items[k] for k in sorted(items)]


def _checked_boxes(item: LabelImgItem, report: ConversionReport) -> list[tuple[str, np.ndarray]]:
    out = []
    for n, (label, *box) in enumerate(item.boxes):
        raw = np.array(box, dtype=np.float64)
        clipped = np.clip(raw, 0, [item.width, item.height, item.width, item.height])
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            report.skip(f"{item.source} box {n}", "zero-area box (or outside the image)")
            continue
        if not np.array_equal(clipped, raw):
            report.warn(f"{item.source} box {n}", "box clipped to the image")
        out.append((label, clipped))
    return out


def labelimg_to_yolo(
    folder: str | Path,
    out_dir: str | Path,
    *,
    classes: list[str] | None = None,
    val_fraction: float = 0.2,
    group_regex: str | None = None,
    seed: int = 0,
) -> ConversionReport:
    """A LabelImg folder → YOLO detection dataset (images copied; non-PNG/JPEG converted to PNG)."""
    from converters.images import ImageLoader

    report = ConversionReport()
    items = read_labelimg(folder, report)
    if classes is None:
        classes = []
        for it in items:
            classes.extend(b[0] for b in it.boxes if b[0] not in classes)
        if (Path(folder) / "classes.txt").is_file():  # keep LabelImg's class order when it has one
            listed = [c.strip() for c in (Path(folder) / "classes.txt").read_text().splitlines() if c.strip()]
            classes = listed + [c for c in classes if c not in listed]
    index = {c: i for i, c in enumerate(classes)}
    writer = DatasetWriter(out_dir, "detect", classes)
    with writer.publishing(report, val_fraction=val_fraction, seed=seed):
        for it in items:
            lines = []
            for n, (label, (x0, y0, x1, y1)) in enumerate(_checked_boxes(it, report)):
                if label not in index:
                    report.skip(f"{it.source} box {n}", f"label '{label}' is not one of the classes")
                    continue
                lines.append(
                    format_line(
                        index[label],
                        (
                            (x0 + x1) / 2 / it.width,
                            (y0 + y1) / 2 / it.height,
                            (x1 - x0) / it.width,
                            (y1 - y0) / it.height,
                        ),
                    )
                )
            if it.boxes and not lines:
                report.skip(it.source, "none of its boxes could be converted")
                continue
            stem = writer.unique_stem(it.image.stem)
            group = group_of(stem, group_regex)
            split = assign_split(group, group_regex=r"(.+)", val_fraction=val_fraction, seed=seed)
            copy = it.image.suffix.lower() in (".png", ".jpg", ".jpeg")
            writer.write_image(
                split,
                stem,
                source=it.image if copy else None,
                name=it.image.name,
                array=None if copy else ImageLoader().load(it.image),
            )
            writer.write_labels(split, stem, lines)
            writer.add_item(stem, split, None, [], group, source=it.source)
            report.add_converted(regions=len(lines))
    return report


def label_config_for(classes: list[str], from_name: str = "box", to_name: str = "image") -> str:
    """A Label Studio label config (Image + RectangleLabels) for these classes."""
    from xml.sax.saxutils import quoteattr

    labels = "\n".join(f"    <Label value={quoteattr(c)}/>" for c in classes)
    return (
        f'<View>\n  <Image name={quoteattr(to_name)} value="$image"/>\n'
        f"  <RectangleLabels name={quoteattr(from_name)} toName={quoteattr(to_name)}>\n{labels}\n"
        "  </RectangleLabels>\n</View>\n"
    )


def labelimg_to_labelstudio(
    folder: str | Path,
    out_json: str | Path,
    *,
    url_prefix: str = "/data/local-files/?d=",
    relative_to: str | Path | None = None,
    as_annotations: bool = False,
    model_version: str = "labelimg",
    from_name: str = "box",
    to_name: str = "image",
) -> ConversionReport:
    """A LabelImg folder → Label Studio tasks (``out_json``) with the boxes as predictions (pre-annotations)
    or, with ``as_annotations``, as annotations; also writes ``<out_json stem>.label_config.xml``.

    Each task's image is ``url_prefix`` + the image path relative to ``relative_to`` (Label Studio's
    local-files document root; default: the folder's parent).
    """
    folder = Path(folder).resolve()
    base = Path(relative_to).resolve() if relative_to else folder.parent
    report = ConversionReport()
    items = read_labelimg(folder, report)
    tasks, classes = [], []
    for it in items:
        boxes = _checked_boxes(it, report)
        for label, _ in boxes:
            if label not in classes:
                classes.append(label)
        try:
            rel = it.image.resolve().relative_to(base).as_posix()
        except ValueError:
            report.skip(it.source, f"image {it.image} is not under {base}")
            continue
        results = boxes_to_results(
            [b for _, b in boxes],
            [1.0] * len(boxes),
            [lbl for lbl, _ in boxes],
            it.width,
            it.height,
            from_name,
            to_name,
        )
        task = {"data": {"image": url_prefix + rel}}
        if as_annotations:
            for r in results:
                r.pop("score", None)
            task["annotations"] = [{"result": results}]
        else:
            task["predictions"] = [{"model_version": model_version, "score": 1.0, "result": results}]
        tasks.append(task)
        report.add_converted(regions=len(results))
    if tasks:
        out_json = Path(out_json)
        out_json.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_json.with_name(f".{out_json.name}.tmp")
        tmp.write_text(json.dumps(tasks, indent=1) + "\n")
        tmp.replace(out_json)
        out_json.with_name(out_json.stem + ".label_config.xml").write_text(
            label_config_for(classes, from_name, to_name)
        )
        report.output = str(out_json)
    return report
