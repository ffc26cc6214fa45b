"""LabelImg output (Pascal VOC XML, or YOLO txt + classes.txt) → YOLO datasets and Label Studio tasks.

A LabelImg folder holds images and, per image, either ``<stem>.xml`` (Pascal VOC: ``<size>``, one
``<object>`` with ``<name>`` and ``<bndbox>`` xmin/ymin/xmax/ymax in pixels per box) or ``<stem>.txt``
(YOLO lines, class ids into ``classes.txt``). :func:`read_labelimg` reads both (VOC wins when an image has
both), :func:`labelimg_to_yolo` writes the YOLO detection dataset, :func:`labelimg_to_labelstudio` writes
Label Studio tasks with the boxes as pre-annotations (or annotations) plus a matching label config, so a
lab can move its LabelImg work into Label Studio.

**Bad input** is skipped with a reason naming the file (and the object or line): XML that does not
parse, an image that is missing, empty, truncated or not an image (every image is verified before it is
used; its real size wins over a ``<size>`` that disagrees, with a warning), a label file or
``classes.txt`` that is not UTF-8, a coordinate that is not a finite number, a class id not in
``classes.txt``; the rest converts. A folder with no annotation file at all says so.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as fromstring_xml

from converters.dataset import MIN_EXTENT, DatasetWriter, OutputRefused, box_line, check_output
from converters.images import ImageError, read_regular
from converters.inputs import COPY_FORMATS, InputError, read_text, verify_image
from converters.predictions import boxes_to_results
from converters.report import ConversionReport
from converters.split import DEFAULT_SPLIT, SplitOptions, group_of, split_of_group

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
CLASSES_FILE = "classes.txt"
DATASET_KIND: Final = "detect"
"""The dataset kind :func:`labelimg_to_yolo` writes (LabelImg draws boxes only)."""


@dataclass
class LabelImgItem:
    image: Path
    width: int
    height: int
    boxes: list[tuple[str, float, float, float, float]] = field(default_factory=list)
    """(label, x0, y0, x1, y1) in pixels."""
    source: str = ""
    format: str = ""
    """The image's format as verified (``PNG``, ``JPEG``, ``TIFF``...)."""
    dropped: int = 0
    """Objects (VOC) or lines (YOLO) of the file that could not be read (each reported)."""


def _image_for(folder: Path, stem: str, hint: str | None = None) -> Path | None:
    try:
        if hint and (folder / Path(hint).name).is_file():
            return folder / Path(hint).name
        for suffix in IMAGE_SUFFIXES:
            for cand in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
                if cand.is_file():
                    return cand
    except (OSError, ValueError):  # a <filename> too long for the file system, or with a NUL
        return None
    return None


def _verified(image: Path, source: str, report: ConversionReport):
    """The image's ImageInfo, or None with the reason recorded against ``source``."""
    try:
        return verify_image(image, name=image.name)
    except ImageError as exc:
        report.skip(source, f"image {exc}")
        return None


def _read_voc(xml: Path, report: ConversionReport) -> LabelImgItem | None:
    try:
        root = fromstring_xml(read_regular(xml))
    except ET.ParseError as exc:
        report.skip(xml.name, f"not valid XML ({exc})")
        return None
    except DefusedXmlException as exc:  # entity declarations, external references: what XML bombs are made of
        report.skip(xml.name, f"refused: the XML declares entities or external references ({exc})")
        return None
    except OSError as exc:
        report.skip(xml.name, f"cannot read ({exc.strerror or exc})")
        return None
    filename = root.findtext("filename")
    image = _image_for(xml.parent, xml.stem, filename)
    if image is None:
        report.skip(xml.name, f"no image for {(filename or xml.stem)[:200]}")
        return None
    info = _verified(image, xml.name, report)
    if info is None:
        return None
    try:
        declared = int(root.findtext("size/width") or ""), int(root.findtext("size/height") or "")
    except ValueError:
        declared = None
    if declared is not None and declared != (info.width, info.height):
        report.warn(
            xml.name,
            f"<size> says {declared[0]}x{declared[1]}, the image is {info.width}x{info.height} (the image's is used)",
        )
    item = LabelImgItem(image, info.width, info.height, source=xml.name, format=info.format)
    for n, obj in enumerate(root.iter("object")):
        where = f"{xml.name} object {n}"
        name = (obj.findtext("name") or "").strip()
        coords: list[float] = []
        for key in ("xmin", "ymin", "xmax", "ymax"):
            text = obj.findtext(f"bndbox/{key}")
            try:
                value = float(text)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                report.skip(where, "bndbox without numeric xmin/ymin/xmax/ymax")
                break
            if not math.isfinite(value):
                report.skip(where, f"bndbox {key} is not a finite number ({(text or '').strip()[:20]!r})")
                break
            coords.append(value)
        else:
            if not name:
                report.skip(where, "object without a name")
                item.dropped += 1
                continue
            x0, y0, x1, y1 = coords
            item.boxes.append((name, x0, y0, x1, y1))
            continue
        item.dropped += 1
    return item


def _yolo_line(line: str, classes: list[str]) -> tuple[int, list[float]]:
    """(class id, [xc, yc, w, h]) of a YOLO line; ValueError with the reason."""
    parts = line.split()
    try:
        if len(parts) != 5:
            raise ValueError
        cid = int(parts[0])
        values = [float(v) for v in parts[1:]]
    except ValueError:
        raise ValueError("not a YOLO line 'class xc yc w h'") from None
    for token, value in zip(parts[1:], values, strict=True):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {token[:20]!r}")
    if not 0 <= cid < len(classes):
        raise ValueError(f"class id {cid} is not in classes.txt ({len(classes)} classes)")
    return cid, values


def _read_yolo(txt: Path, classes: list[str], report: ConversionReport) -> LabelImgItem | None:
    image = _image_for(txt.parent, txt.stem)
    if image is None:
        report.skip(txt.name, f"no image {txt.stem}.*")
        return None
    try:
        text = read_text(txt)
    except InputError as exc:
        report.skip(txt.name, str(exc))
        return None
    info = _verified(image, txt.name, report)
    if info is None:
        return None
    width, height = info.width, info.height
    item = LabelImgItem(image, width, height, source=txt.name, format=info.format)
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            cid, (xc, yc, w, h) = _yolo_line(line, classes)
        except ValueError as exc:
            report.skip(f"{txt.name} line {n}", str(exc))
            item.dropped += 1
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


def listed_classes(folder: str | Path) -> list[str] | None:
    """The classes of ``folder/classes.txt`` in order; None when there is none; InputError when unreadable."""
    path = Path(folder) / CLASSES_FILE
    if not path.exists():
        return None
    return [c.strip() for c in read_text(path).splitlines() if c.strip()]


def read_labelimg(folder: str | Path, report: ConversionReport | None = None) -> list[LabelImgItem]:
    """Every annotated image of a LabelImg folder (VOC XML and/or YOLO txt + classes.txt), its image
    verified. Whatever cannot be used is recorded in ``report``; so is a folder with no annotation file."""
    folder = Path(folder)
    report = report if report is not None else ConversionReport()
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    items: dict[str, LabelImgItem] = {}
    xmls = sorted(folder.glob("*.xml"))
    for xml in xmls:
        item = _read_voc(xml, report)
        if item:
            items[xml.stem] = item
    voc_stems = {x.stem for x in xmls}
    txts = [t for t in sorted(folder.glob("*.txt")) if t.name != CLASSES_FILE and t.stem not in voc_stems]
    if txts:
        try:
            classes = listed_classes(folder)
        except InputError as exc:
            report.skip(CLASSES_FILE, str(exc))
            for t in txts:
                report.skip(t.name, "YOLO labels without a readable classes.txt in the folder")
        else:
            if classes is None:
                for t in txts:
                    report.skip(t.name, "YOLO labels without classes.txt in the folder")
            else:
                for t in txts:
                    item = _read_yolo(t, classes, report)
                    if item:
                        items[t.stem] = item
    images = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    if not xmls and not txts:
        report.skip(
            str(folder),
            "no LabelImg annotations (<stem>.xml, or <stem>.txt with classes.txt) "
            f"beside the {len(images)} images",
        )
    else:
        annotated = voc_stems | {t.stem for t in txts}
        bare = [p for p in images if p.stem not in annotated]
        if bare:
            report.warn(str(folder), f"{len(bare)} images have no annotation file (not converted)")
    return [items[k] for k in sorted(items)]


def _checked_boxes(item: LabelImgItem, report: ConversionReport) -> list[tuple[str, np.ndarray]]:
    out = []
    for n, (label, *box) in enumerate(item.boxes):
        raw = np.array(box, dtype=np.float64)
        if not np.isfinite(raw).all():
            report.skip(f"{item.source} box {n}", "a coordinate is not a finite number")
            continue
        clipped = np.clip(raw, 0, [item.width, item.height, item.width, item.height])
        w, h = (clipped[2] - clipped[0]) / item.width, (clipped[3] - clipped[1]) / item.height
        if not (w >= MIN_EXTENT and h >= MIN_EXTENT):
            report.skip(f"{item.source} box {n}", "zero-area box (or outside the image)")
            continue
        if not np.array_equal(clipped, raw):
            report.warn(f"{item.source} box {n}", "box clipped to the image")
        out.append((label, clipped))
    return out


def _yolo_lines(it: LabelImgItem, index: dict[str, int], report: ConversionReport) -> list[str] | None:
    """The item's YOLO lines; None (reason recorded) when it had boxes and none could be converted."""
    lines = []
    for n, (label, (x0, y0, x1, y1)) in enumerate(_checked_boxes(it, report)):
        if label not in index:
            report.skip(f"{it.source} box {n}", f"label '{label}' is not one of the classes")
            continue
        lines.append(box_line(index[label], x0, y0, x1, y1, it.width, it.height))
    if (it.boxes or it.dropped) and not lines:  # an empty label file would say "nothing here"
        report.skip(it.source, f"none of its {len(it.boxes) + it.dropped} boxes could be converted")
        return None
    return lines


def labelimg_to_yolo(
    folder: str | Path,
    out_dir: str | Path,
    *,
    classes: list[str] | None = None,
    split_options: SplitOptions = DEFAULT_SPLIT,
    force: bool = False,
) -> ConversionReport:
    """A LabelImg folder → YOLO detection dataset (PNG/JPEG images copied; anything else written as PNG).

    ``out_dir`` is replaced by the dataset; it may not be or hold ``folder``, and must be new, empty or a
    dataset histoloop wrote unless ``force`` (:func:`converters.dataset.check_output`)."""
    from converters.images import ImageLoader

    check_output(out_dir, [folder], force=force)
    report = ConversionReport()
    items = read_labelimg(folder, report)
    if classes is None:
        classes = []
        for it in items:
            classes.extend(b[0] for b in it.boxes if b[0] not in classes)
        try:  # keep LabelImg's class order when it has one
            listed = listed_classes(folder) or []
        except InputError:  # already reported by read_labelimg
            listed = []
        classes = listed + [c for c in classes if c not in listed]
    index = {c: i for i, c in enumerate(classes)}
    writer = DatasetWriter(out_dir, DATASET_KIND, classes, inputs=[folder], force=force)
    loader = ImageLoader()
    with writer.publishing(report, split_options=split_options):
        for it in items:
            try:
                lines = _yolo_lines(it, index, report)
                if lines is None:
                    continue
                copy = it.image.suffix.lower() in (".png", ".jpg", ".jpeg") and it.format in COPY_FORMATS
                array = None if copy else loader.load(it.image)
            except ImageError as exc:
                report.skip(it.source, f"image {exc}")
                continue
            except Exception as exc:  # unforeseen input: this item is skipped, never the batch
                report.skip_unforeseen(it.source, exc)
                continue
            stem = writer.unique_stem(it.image.stem)
            group = group_of(stem, split_options.group_regex)
            split = split_of_group(group, split_options)
            writer.write_image(
                split, stem, source=it.image if copy else None, name=it.image.name, array=array
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


def _check_tasks_output(folder: Path, out_json: Path, force: bool) -> None:
    config = out_json.with_name(out_json.stem + ".label_config.xml")
    inside = folder.resolve()
    for target in (out_json, config):
        if target.exists() and target.resolve().is_relative_to(inside):
            raise OutputRefused(
                f"{target}: is a file in the input folder {folder}; writing it would overwrite it"
            )
    if force or not out_json.exists():
        return
    try:
        with out_json.open("rb") as f:
            head = f.read(64).lstrip()
    except OSError as exc:
        raise OutputRefused(
            f"{out_json}: exists and cannot be read as a task list ({exc.strerror})"
        ) from None
    if not head.startswith(b"["):
        raise OutputRefused(
            f"{out_json}: exists and is not a JSON list of tasks; writing would replace it "
            "(give --force to replace it)"
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
    force: bool = False,
) -> ConversionReport:
    """A LabelImg folder → Label Studio tasks (``out_json``) with the boxes as predictions (pre-annotations)
    or, with ``as_annotations``, as annotations; also writes ``<out_json stem>.label_config.xml``.

    Each task's image is ``url_prefix`` + the image path relative to ``relative_to`` (Label Studio's
    local-files document root; default: the folder's parent). Neither output may be a file in ``folder``;
    an existing ``out_json`` that is not a JSON list is replaced only with ``force``.
    """
    _check_tasks_output(Path(folder), Path(out_json), force)
    folder = Path(folder).resolve()
    base = Path(relative_to).resolve() if relative_to else folder.parent
    report = ConversionReport()
    items = read_labelimg(folder, report)
    tasks, classes = [], []
    for it in items:
        try:
            boxes = _checked_boxes(it, report)
            if (it.boxes or it.dropped) and not boxes:  # an empty annotation would say "nothing here"
                report.skip(it.source, f"none of its {len(it.boxes) + it.dropped} boxes could be converted")
                continue
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
        except Exception as exc:  # unforeseen input: this item is skipped, never the batch
            report.skip_unforeseen(it.source, exc)
            continue
        for label, _ in boxes:
            if label not in classes:
                classes.append(label)
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
        config = out_json.with_name(out_json.stem + ".label_config.xml")
        tmp = config.with_name(f".{config.name}.tmp")
        tmp.write_text(label_config_for(classes, from_name, to_name))
        tmp.replace(config)
        report.output = str(out_json)
    return report
