"""Pathology annotation formats: Aperio/ImageScope XML polygons (MoNuSeg) and BreCaHAD point JSON.

Aperio XML has one ``<Region>`` per object with ``<Vertex X Y>`` children (floats, some a little outside
the image) and an ``Area`` attribute in px². :func:`aperio_to_dataset` writes masks (pixel centres inside
the polygon: the pixel count agrees with ``Area`` within about 1 %), YOLO boxes or YOLO polygons, with
vertices outside the image clipped (counted as a warning). BreCaHAD JSON maps a class to a list of
nucleus centres ``{"x", "y"}`` normalised to [0, 1]; the image is not part of the annotation, so its size
is passed in. :func:`brecahad_to_dataset` writes circular masks or fixed-size boxes around each centre.

**Bad input** is skipped with a reason naming the file (and region or class): XML or JSON that does not
parse (or is nested too deeply), an image that is missing, empty, truncated or not an image (verified
before it is copied), vertices or points that are not finite numbers; the rest converts. An XML folder
without XML files says so.

>>> pts = {"tumor": np.array([[0.5, 0.5]])}
>>> points_to_boxes(pts, ["tumor"], width=100, height=50, box_size=10)
[(0, 45.0, 20.0, 55.0, 30.0)]
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as fromstring_xml
from tqdm import tqdm

from converters.dataset import MIN_EXTENT, DatasetWriter, LabelValueError, check_output
from converters.images import ImageError, ImageLoader, read_regular
from converters.inputs import COPY_FORMATS, InputError, read_json, verify_image
from converters.kinds import DatasetSpec, ItemLabels, dataset_spec, kinds_where, one_of
from converters.regions import MAX_IMAGE_PIXELS, MAX_POLYGON_VERTICES, polygon_window, too_many_vertices
from converters.report import ConversionReport
from converters.split import DEFAULT_SPLIT, SplitOptions, group_of, split_of_group

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
CASE_REGEX = r"^(.+?)[-_]\d+$"  # BreCaHAD: Case_1-01 -> Case_1
BRECAHAD_CLASSES = ("mitosis", "non_mitosis", "apoptosis", "tumor", "non_tumor", "lumen", "non_lumen")


@dataclass
class Region:
    id: str
    points: np.ndarray
    """(K, 2) pixel vertices (x, y), as in the file."""
    area: float | None
    """The file's ``Area`` attribute (px²), when present."""
    label: str


def parse_aperio_xml(path: str | Path, default_label: str = "nucleus") -> list[Region]:
    """The regions of an Aperio/ImageScope XML file; ``ValueError`` naming the file when it is malformed.

    A region's label is its ``<Annotation Name>`` when set, else ``default_label``. Regions with fewer
    than 3 vertices or non-numeric coordinates are returned with an empty ``points`` array (the caller
    reports them).
    """
    path = Path(path)
    try:
        root = fromstring_xml(read_regular(path))
    except ET.ParseError as exc:
        raise ValueError(f"{path.name}: not valid XML ({exc})") from None
    except DefusedXmlException as exc:  # entity declarations, external references: what XML bombs are made of
        raise ValueError(
            f"{path.name}: refused: the XML declares entities or external references ({exc})"
        ) from None
    except OSError as exc:
        raise ValueError(f"{path.name}: cannot read ({exc.strerror})") from None
    regions = []
    for annotation in root.iter("Annotation"):
        label = (annotation.get("Name") or "").strip() or default_label
        for r in annotation.iter("Region"):
            try:
                pts = np.array([[float(v.get("X")), float(v.get("Y"))] for v in r.iter("Vertex")], np.float64)
                ok = pts.ndim == 2 and len(pts) >= 3 and np.isfinite(pts).all()
            except (TypeError, ValueError):
                pts, ok = np.zeros((0, 2)), False
            try:
                area = float(r.get("Area")) if r.get("Area") is not None else None
            except ValueError:
                area = None
            regions.append(
                Region(str(r.get("Id", len(regions))), pts if ok else np.zeros((0, 2)), area, label)
            )
    if not regions and root.tag != "Annotations":
        raise ValueError(f"{path.name}: not an Aperio XML file (root <{root.tag}>)")
    return regions


def _drawn(
    regions: list[Region], classes: list[str], height: int, width: int
) -> Iterator[tuple[Region, Any, Any, np.ndarray]]:
    """``(region, rows, cols, inside)`` of each drawable region of a class in ``classes`` with a pixel inside
    the image, in order: what :func:`regions_to_mask` and :func:`regions_to_instances` both paint."""
    wanted = set(classes)
    for r in regions:
        if len(r.points) < 3 or r.label not in wanted:
            continue
        win = polygon_window(np.clip(r.points, 0, [width, height]), height, width)
        if win is not None:
            yield (r, *win)


def regions_to_mask(regions: list[Region], classes: list[str], height: int, width: int) -> np.ndarray:
    """Class-index mask (0 background, i+1 = classes[i]) of the regions, later regions on top."""
    mask = np.zeros((height, width), np.uint8)
    index = {c: i + 1 for i, c in enumerate(classes)}
    for r, rows, cols, inside in _drawn(regions, classes, height, width):
        mask[rows, cols][inside] = index[r.label]
    return mask


def regions_to_instances(regions: list[Region], classes: list[str], height: int, width: int) -> np.ndarray:
    """Instance map (uint16: 0 background, k = the k-th drawable region of a class in ``classes``; later
    regions on top), drawn exactly as :func:`regions_to_mask` draws the class mask."""
    inst = np.zeros((height, width), np.uint16)
    for k, (_, rows, cols, inside) in enumerate(_drawn(regions, classes, height, width), 1):
        inst[rows, cols][inside] = k
    return inst


@dataclass(frozen=True)
class PolygonLines:
    """The :class:`converters.kinds.PolygonLabels` of a YOLO kind: each polygon is the lines ``line``
    makes of it (class id, pixel points inside the image, width, height)."""

    line: Callable[[int, np.ndarray, int, int], list[str]]

    def lines(self, cid: int, points: np.ndarray, width: int, height: int) -> list[str]:
        return self.line(cid, points, width, height)

    def item(
        self,
        regions: Sequence[Region],
        classes: list[str],
        height: int,
        width: int,
        lines: list[str],
        binary_masks: bool,
    ) -> ItemLabels:
        return ItemLabels(lines=lines, regions=len(regions))


class PolygonMasks:
    """The :class:`converters.kinds.PolygonLabels` of a mask kind: the usable polygons painted into the
    class mask (:func:`regions_to_mask`) and the instance map (:func:`regions_to_instances`)."""

    def lines(self, cid: int, points: np.ndarray, width: int, height: int) -> list[str]:
        return []

    def item(
        self,
        regions: Sequence[Region],
        classes: list[str],
        height: int,
        width: int,
        lines: list[str],
        binary_masks: bool,
    ) -> ItemLabels:
        usable = list(regions)
        mask = regions_to_mask(usable, classes, height, width)
        binary = {c: mask == i + 1 for i, c in enumerate(classes)} if binary_masks else {}
        instances = regions_to_instances(usable, classes, height, width)
        return ItemLabels(mask=mask, binary=binary, instances=instances, regions=len(usable))


def _find_image(images_dir: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        for cand in (images_dir / f"{stem}{suffix}", images_dir / f"{stem}{suffix.upper()}"):
            if cand.is_file():
                return cand
    return None


def aperio_to_dataset(
    xml_dir: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    kind: str = "segment",
    *,
    classes: list[str] | None = None,
    default_label: str = "nucleus",
    split_options: SplitOptions = DEFAULT_SPLIT,
    binary_masks: bool = False,
    progress: bool = False,
    force: bool = False,
) -> ConversionReport:
    """Aperio XML folder + images folder (same stems) → ``segment`` masks, ``detect`` boxes or
    ``yolo-segment`` polygons. Classes default to the region labels in order of appearance.

    ``out_dir`` is replaced by the dataset; it may not be or hold either input folder, and must be new,
    empty or a dataset histoloop wrote unless ``force`` (:func:`converters.dataset.check_output`)."""
    drawn = kinds_where(lambda s: s.polygons is not None)
    if kind not in drawn:
        raise ValueError(f"kind must be {one_of(drawn)}, not {kind!r}")
    spec = dataset_spec(kind)
    xml_dir, images_dir = Path(xml_dir), Path(images_dir)
    check_output(out_dir, [xml_dir, images_dir], force=force)
    report = ConversionReport()
    parsed: list[tuple[Path, list[Region]]] = []
    xmls = sorted(xml_dir.glob("*.xml"))
    if not xmls:
        report.skip(str(xml_dir), "no Aperio XML files (*.xml)")
        return report
    for xml in xmls:
        try:
            parsed.append((xml, parse_aperio_xml(xml, default_label)))
        except ValueError as exc:
            report.skip(xml.name, str(exc).split(": ", 1)[-1])
    if classes is None:
        classes = []
        for _, regions in parsed:
            classes.extend(r.label for r in regions if r.label not in classes)
        classes = classes or [default_label]
    writer = DatasetWriter(out_dir, kind, classes, inputs=[xml_dir, images_dir], force=force)
    loader = ImageLoader()
    with writer.publishing(report, split_options=split_options):
        for xml, regions in tqdm(parsed, desc="aperio", unit="file", disable=not progress, leave=False):
            try:
                item = _prepare_aperio(xml, regions, images_dir, spec, classes, loader, report)
            except Exception as exc:  # unforeseen input: this file is skipped, never the batch
                report.skip_unforeseen(xml.name, exc)
                continue
            if item is not None:
                _write_aperio(item, spec, classes, writer, report, binary_masks, split_options)
    return report


@dataclass
class _AperioItem:
    xml: Path
    image: Path
    array: np.ndarray | None
    """The decoded image, or None when the file is copied as it is."""
    width: int
    height: int
    usable: list[Region]
    lines: list[str]


def _prepare_aperio(
    xml, regions, images_dir, spec: DatasetSpec, classes, loader, report
) -> _AperioItem | None:
    """Read, check and convert one XML file and its image (nothing written); None when skipped."""
    image_path = _find_image(images_dir, xml.stem)
    if image_path is None:
        report.skip(xml.name, f"no image {xml.stem}.* in {images_dir}")
        return None
    try:
        info = verify_image(image_path, name=image_path.name)
        copy = (
            spec.copies_images
            and image_path.suffix.lower() in (".png", ".jpg", ".jpeg")
            and info.format in COPY_FORMATS
        )
        array = None if copy else loader.load(image_path)
    except ImageError as exc:
        report.skip(xml.name, f"image {exc}")
        return None
    width, height = (array.shape[1], array.shape[0]) if array is not None else (info.width, info.height)
    index = {c: i for i, c in enumerate(classes)}
    usable, lines, clipped = [], [], 0
    for r in regions:
        where = f"{xml.name} region {r.id}"
        if len(r.points) < 3:
            report.skip(where, "fewer than 3 numeric vertices")
            continue
        if len(r.points) > MAX_POLYGON_VERTICES:
            report.skip(where, too_many_vertices(len(r.points)))
            continue
        if r.label not in index:
            report.skip(where, f"label '{r.label}' is not one of the classes")
            continue
        pts = np.clip(r.points, 0, [width, height])
        if not np.array_equal(pts, r.points):
            clipped += 1
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0)
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            report.skip(where, "zero area inside the image")
            continue
        if spec.polygons is None:
            raise ValueError(f"dataset kind {spec.kind!r} writes no polygons")
        try:
            lines.extend(spec.polygons.lines(index[r.label], pts, width, height))
        except LabelValueError as exc:
            report.skip(where, str(exc))
            continue
        usable.append(r)
    if clipped:
        report.warn(xml.name, f"{clipped} regions had vertices outside the {width}x{height} image (clipped)")
    if regions and not usable:
        report.skip(xml.name, f"none of its {len(regions)} regions could be converted")
        return None
    return _AperioItem(xml, image_path, array, width, height, usable, lines)


def _write_aperio(
    it: _AperioItem, spec: DatasetSpec, classes, writer, report, binary_masks, split_options: SplitOptions
) -> None:
    stem = writer.unique_stem(it.xml.stem)
    group = group_of(stem, split_options.group_regex)
    split = split_of_group(group, split_options)
    writer.write_image(
        split, stem, source=it.image if it.array is None else None, array=it.array, name=it.image.name
    )
    if spec.polygons is None:
        raise ValueError(f"dataset kind {spec.kind!r} writes no polygons")
    writer.write_item(
        split, stem, spec.polygons.item(it.usable, classes, it.height, it.width, it.lines, binary_masks)
    )
    writer.add_item(stem, split, None, [], group, source=it.xml.name, regions=len(it.usable))
    report.add_converted(regions=len(it.usable))


# -- BreCaHAD points ------------------------------------------------------------------------------------
def load_brecahad(path: str | Path) -> dict[str, np.ndarray]:
    """class → (N, 2) normalised centres; ``ValueError`` naming the file when malformed."""
    path = Path(path)
    try:
        data = read_json(path)
    except InputError as exc:
        raise ValueError(f"{path.name}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: expected an object mapping class -> list of points")
    out = {}
    for cls, pts in data.items():
        try:
            arr = np.array([[_coordinate(p["x"]), _coordinate(p["y"])] for p in pts or []], np.float64)
        except (TypeError, KeyError, ValueError, OverflowError):
            raise ValueError(f"{path.name}: class '{cls}' has points without numeric x/y") from None
        out[str(cls)] = arr.reshape(-1, 2)
    return out


def _coordinate(value: Any) -> float:
    """A point's x or y: a JSON number (``true`` is not 1, ``"0.5"`` is not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a number: {value!r}")
    return float(value)


def points_to_boxes(
    points: dict[str, np.ndarray], classes: list[str], width: int, height: int, box_size: float
) -> list[tuple[int, float, float, float, float]]:
    """(class index, x0, y0, x1, y1) pixel boxes of ``box_size`` around each centre, clipped to the image."""
    out = []
    half = box_size / 2
    for cid, cls in enumerate(classes):
        for x, y in points.get(cls, np.zeros((0, 2))).tolist():
            cx, cy = x * width, y * height
            box = (max(cx - half, 0.0), max(cy - half, 0.0), min(cx + half, width), min(cy + half, height))
            if (box[2] - box[0]) / width >= MIN_EXTENT and (box[3] - box[1]) / height >= MIN_EXTENT:
                out.append((cid, *box))
    return out


def points_to_mask(
    points: dict[str, np.ndarray], classes: list[str], width: int, height: int, radius: float
) -> np.ndarray:
    """Class-index mask with a disc of ``radius`` px around each centre (later classes on top)."""
    mask = np.zeros((height, width), np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    for cid, cls in enumerate(classes):
        for x, y in points.get(cls, np.zeros((0, 2))):
            cx, cy = x * width, y * height
            y0, y1 = max(int(cy - radius), 0), min(int(np.ceil(cy + radius)) + 1, height)
            x0, x1 = max(int(cx - radius), 0), min(int(np.ceil(cx + radius)) + 1, width)
            win = (xx[y0:y1, x0:x1] + 0.5 - cx) ** 2 + (yy[y0:y1, x0:x1] + 0.5 - cy) ** 2 <= radius**2
            mask[y0:y1, x0:x1][win] = cid + 1
    return mask


def _prepare_brecahad(path: Path, classes, width, height, images_dir, loader, report):
    """(points, image path, decoded image or None) of one BreCaHAD file, checked; None when skipped."""
    try:
        points = load_brecahad(path)
    except ValueError as exc:
        report.skip(path.name, str(exc).split(": ", 1)[-1])
        return None
    given = sum(len(pts) for pts in points.values())
    for cls, read in points.items():
        pts = read
        if cls not in classes and len(pts):
            report.skip(
                f"{path.name} class {cls}", f"class '{cls}' is not one of the classes ({len(pts)} points)"
            )
        bad = ~np.isfinite(pts).all(axis=1)
        if bad.any():
            report.skip(f"{path.name} class {cls}", f"{int(bad.sum())} points are not finite numbers")
            pts = pts[~bad]
        outside = ((pts < 0) | (pts > 1)).any(axis=1)
        if outside.any():
            report.skip(f"{path.name} class {cls}", f"{int(outside.sum())} points outside [0, 1]")
            pts = pts[~outside]
        points[cls] = pts
    kept = sum(len(pts) for cls, pts in points.items() if cls in classes)
    if given and not kept:  # an item without points would teach "no cells here"
        report.skip(path.name, f"none of its {given} points could be used")
        return None
    image = arr = None
    if images_dir is not None:
        image = _find_image(Path(images_dir), path.stem)
        if image is None:
            report.skip(path.name, f"no image {path.stem}.* in {images_dir}")
            return None
        try:
            arr = loader.load(image)
        except ImageError as exc:
            report.skip(path.name, f"image: {exc}")
            return None
        if arr.shape[:2] != (height, width):
            report.skip(path.name, f"image is {arr.shape[1]}x{arr.shape[0]}, not {width}x{height}")
            return None
    return points, image, arr


def brecahad_to_dataset(
    json_paths: list[str | Path] | str | Path,
    out_dir: str | Path,
    *,
    width: int,
    height: int,
    kind: str = "detect",
    classes: list[str] | None = None,
    box_size: float = 32.0,
    radius: float = 12.0,
    images_dir: str | Path | None = None,
    split: str | None = None,
    split_options: SplitOptions = DEFAULT_SPLIT,
    force: bool = False,
) -> ConversionReport:
    """BreCaHAD point files → ``detect`` (fixed-size boxes) or ``segment`` (discs) datasets, per class.

    The images are not part of BreCaHAD's annotations: give ``images_dir`` (same stems) to copy them,
    else only labels/masks are written. Points outside [0, 1] are skipped. An item's group is its case
    (``Case_1-01`` → ``Case_1``) unless ``split_options.group_regex`` says otherwise; ``split`` puts
    every item in that split instead of hashing. ``out_dir`` is replaced by the dataset; it may not be or
    hold an input, and must be new, empty or a dataset histoloop wrote unless ``force``.
    """
    placed = kinds_where(lambda s: s.points is not None)
    if kind not in placed:
        raise ValueError(f"kind must be {one_of(placed)}, not {kind!r}")
    points_labels = dataset_spec(kind).points
    if points_labels is None:  # kinds_where above chose the kinds with points
        raise ValueError(f"kind {kind!r} places no points")
    if width <= 0 or height <= 0 or width * height > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"image size must be positive and at most {MAX_IMAGE_PIXELS} pixels, got {width}x{height}"
        )
    for option, value in (("box_size", box_size), ("radius", radius)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ValueError(f"{option} must be a positive number, got {value}")
        if value > max(width, height):  # every box or disc would be the whole image
            raise ValueError(
                f"{option} must be at most the image's longer side ({max(width, height)} px), got {value:g}"
            )
    paths = [Path(p) for p in ([json_paths] if isinstance(json_paths, str | Path) else json_paths)]
    classes = list(classes or BRECAHAD_CLASSES)
    report = ConversionReport()
    inputs = [*paths, *([images_dir] if images_dir is not None else [])]
    writer = DatasetWriter(out_dir, kind, classes, inputs=inputs, force=force)
    loader = ImageLoader()
    with writer.publishing(report, split_options=split_options if split is None else None):
        for path in paths:
            try:
                item = _prepare_brecahad(path, classes, width, height, images_dir, loader, report)
            except Exception as exc:  # unforeseen input: this file is skipped, never the batch
                report.skip_unforeseen(path.name, exc)
                continue
            if item is None:
                continue
            points, image, arr = item
            stem = writer.unique_stem(path.stem)
            group = group_of(stem, split_options.group_regex or CASE_REGEX)
            s = split or split_of_group(group, split_options)
            if arr is not None:
                writer.write_image(
                    s,
                    stem,
                    array=arr,
                    source=image if image.suffix.lower() in (".png", ".jpg") else None,
                    name=image.name,
                )
            n = sum(len(points.get(c, ())) for c in classes)
            writer.write_item(s, stem, points_labels(points, classes, width, height, box_size, radius))
            writer.add_item(stem, s, None, [], group, source=path.name, regions=n)
            report.add_converted(regions=n)
    return report
