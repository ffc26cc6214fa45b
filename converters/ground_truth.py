"""Labelled data of any format → Label Studio tasks whose annotation is the ground truth (a replayable set).

What ``histoloop simulate`` replays, and what a test or benchmark needs to play a specialist: every
item becomes a PNG in ``document_root/images/`` (a local-files URL), its ground truth the Label Studio
results a specialist would submit, and its group (patient/slide) for a split that never mixes groups.

1. :func:`source_to_dataset`: anything the converters read, all items in ``train`` — a Label Studio export
   JSON (with its label config), an Aperio/ImageScope XML folder (``annotations/*.xml`` + ``images/``, as
   MoNuSeg ships; or the XML folder with ``images=``), a LabelImg folder (VOC XML or YOLO txt), or a
   dataset directory written by ``histoloop convert`` (its ``manifest.json``);
2. :func:`tile` cuts fields larger than ``tile`` px into tiles (labels clipped; groups kept), so that a
   round of annotation holds several tasks;
3. :func:`dataset_tasks` reads the dataset into :class:`GroundTruthTask` s.

Objects stay objects: for ``segment`` the source's polygons are kept (the dataset is written as
``yolo-segment``, one polygon per object) and each object becomes a brush region of its own, as a
specialist draws one region per nucleus; from a mask dataset (class-index PNGs) the objects are the
connected components of each class.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from converters.kinds import dataset_spec, kinds_where, one_of
from converters.layout import DatasetLayout, Manifest
from converters.report import ConversionReport
from kernel.kinds import KINDS
from kernel.tags import TAGS, DatasetKind

FROM_NAME, TO_NAME = "label", "image"


def source_kinds(kind: str) -> tuple[DatasetKind, ...]:
    """The dataset kinds a replay of model kind ``kind`` reads, in order of preference (the first is the
    one a source is converted to): those whose row replays it.

    >>> source_kinds("segment"), source_kinds("detect")
    (('yolo-segment', 'segment'), ('detect',))
    """
    return kinds_where(lambda s: s.replays == kind)


@dataclass
class GroundTruthTask:
    """One replayable task: its image (in the document root), group and ground-truth results."""

    id: int
    stem: str
    image: Path
    url: str
    """``/data/local-files/?d=images/<stem>.png`` (relative to the document root)."""
    group: str
    width: int
    height: int
    truth: list[dict[str, Any]]

    def task(self, annotation_id: int | None = None) -> dict[str, Any]:
        """The task as Label Studio exports it; with ``annotation_id``, the ground truth as its annotation."""
        task: dict[str, Any] = {"id": self.id, "data": {"image": self.url}}
        if annotation_id is not None:
            task["annotations"] = [
                {
                    "id": annotation_id,
                    "result": self.truth,
                    "was_cancelled": False,
                    "ground_truth": False,
                    "completed_by": 1,
                    "updated_at": "2026-01-01T00:00:00Z",
                }
            ]
        return task


def label_config(kind: str, classes: list[str]) -> str:
    """The label config of a replay: one ``Image`` and the kind's control with the classes, in order."""
    tag = dataset_spec(source_kinds(kind)[0]).truth_tag
    if tag is None:
        raise ValueError(f"kind {kind!r} has no Label Studio tag for its ground truth")
    item = TAGS[tag].label_element
    labels = "".join(f"<{item} value={quoteattr(c)}/>" for c in classes)
    return (
        f'<View><Image name="{TO_NAME}" value="$image"/>'
        f'<{tag} name="{FROM_NAME}" toName="{TO_NAME}">{labels}</{tag}></View>'
    )


def _is_aperio(folder: Path) -> tuple[Path, Path] | None:
    xml = folder / "annotations"
    if xml.is_dir() and (folder / "images").is_dir() and any(xml.glob("*.xml")):
        return xml, folder / "images"
    return None


def source_to_dataset(
    data: str | Path,
    kind: str,
    out_dir: str | Path,
    *,
    label_config: str | Path | None = None,
    images: str | Path | None = None,
    local_root: str | Path | None = None,
    group_regex: str | None = None,
) -> tuple[Path, ConversionReport]:
    """``data`` (see the module docstring) → a dataset directory of ``kind``, every item in ``train``.

    Returns the dataset directory (``data`` itself when it already is one) and the conversion report.
    ``ValueError`` when ``data`` is none of the formats, or holds no ground truth of ``kind``.
    """
    from converters.images import ImageLoader
    from converters.split import SplitOptions

    sources = source_kinds(kind)
    if not sources:
        raise ValueError(f"kind must be {one_of(KINDS)}, not {kind!r}")
    data, out_dir = Path(data), Path(out_dir)
    all_train = SplitOptions(val_fraction=0.0, group_regex=group_regex)  # each item's group kept, none in val
    report = ConversionReport()
    if data.is_dir() and DatasetLayout(data).manifest.is_file():
        manifest = Manifest.read(data)
        if manifest.kind not in sources:
            raise ValueError(
                f"{data}: a {manifest.kind} dataset has no {kind} ground truth (needs {' or '.join(sources)})"
            )
        report.add_converted(len(manifest.items))
        return data, report
    target = sources[0]
    if data.is_file() and data.suffix.lower() == ".json":
        from converters.labelstudio import export_to_dataset

        report = export_to_dataset(
            data,
            target,
            out_dir,
            label_config=label_config,
            images=ImageLoader(local_root=local_root),
            split="train",
            split_options=all_train,
        )
    elif data.is_dir() and (images is not None or _is_aperio(data)):
        if dataset_spec(target).polygons is None:
            drawn = one_of(kinds_where(lambda s: s.polygons is not None))
            raise ValueError(f"{data}: Aperio XML has no {kind} labels (its polygons make {drawn} datasets)")
        from converters.pathology import aperio_to_dataset

        xml_dir, images_dir = (data, Path(images)) if images is not None else _is_aperio(data)  # type: ignore[misc]
        report = aperio_to_dataset(xml_dir, images_dir, out_dir, target, split_options=all_train)
    elif data.is_dir():
        from converters.labelimg import DATASET_KIND as LABELIMG_KIND
        from converters.labelimg import labelimg_to_yolo

        if target != LABELIMG_KIND:
            raise ValueError(
                f"{data}: not a dataset directory (no manifest.json) nor an Aperio folder; "
                f"a LabelImg folder has boxes only (--kind {LABELIMG_KIND})"
            )

        report = labelimg_to_yolo(data, out_dir, split_options=all_train)
    else:
        raise ValueError(
            f"{data}: expected a Label Studio export (.json), an Aperio folder, a LabelImg "
            "folder or a dataset directory"
        )
    if not report.converted:
        reasons = "; ".join(f"{i}: {r}" for i, r in report.skipped[:5])
        raise ValueError(f"{data}: no {kind} ground truth could be converted ({reasons or 'nothing found'})")
    return out_dir, report


def tile(dataset_dir: Path, out_dir: Path, size: int, overlap: int = 0) -> Path:
    """The dataset cut into ``size`` px tiles when any image is larger (else the dataset itself)."""
    from converters.images import image_size
    from converters.tiling import tile_dataset

    manifest = Manifest.read(dataset_dir)
    if dataset_spec(manifest.kind).tiler is None or size <= 0:  # classify: class folders are not tiled
        return dataset_dir
    layout = DatasetLayout(dataset_dir)
    large = False
    for item in manifest.items:
        found = sorted(layout.images(item.split).glob(f"{item.stem}.*"))
        if found:
            w, h = image_size(found[0])
            large = large or max(w, h) > size
    if not large:
        return dataset_dir
    tile_dataset(dataset_dir, out_dir, tile=size, overlap=overlap)
    return out_dir


def dataset_tasks(dataset_dir: Path, document_root: Path) -> tuple[list[GroundTruthTask], list[str], str]:
    """The items of a dataset as :class:`GroundTruthTask` s (images written as PNG into
    ``document_root/images``), the classes, and the dataset's kind."""
    from PIL import Image

    from converters.dataset import safe_stem
    from converters.images import ImageLoader

    manifest = Manifest.read(dataset_dir)
    layout = DatasetLayout(dataset_dir)
    folder = Path(document_root) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    loader = ImageLoader()
    tasks: list[GroundTruthTask] = []
    spec = dataset_spec(manifest.kind)
    if spec.truth is None:
        raise ValueError(f"{dataset_dir}: a {manifest.kind} dataset is no ground truth to replay")
    for item in manifest.items:
        cls = item.extra.get("class")
        where = spec.image_dir(layout, item.split, None if cls is None else str(cls))
        found = sorted(where.glob(f"{item.stem}.*"))
        if not found:
            continue
        image = loader.load(found[0])
        h, w = image.shape[:2]
        stem = safe_stem(item.stem)
        path = folder / f"{stem}.png"
        Image.fromarray(image).save(path, compress_level=1)
        truth = spec.truth(
            manifest.classes, layout, item.split, item.stem, item.extra, w, h, FROM_NAME, TO_NAME
        )
        for r in truth:
            r.pop("score", None)
        tasks.append(
            GroundTruthTask(
                len(tasks) + 1,
                stem,
                path,
                f"/data/local-files/?d=images/{path.name}",
                item.group or stem,
                w,
                h,
                truth,
            )
        )
    return tasks, list(manifest.classes), manifest.kind


def write_tasks(tasks: list[GroundTruthTask], path: Path) -> None:
    """The tasks with their ground truth as a Label Studio import/export JSON file (atomically)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps([t.task(annotation_id=t.id) for t in tasks]))
    shutil.move(tmp, path)


__all__ = ["GroundTruthTask", "dataset_tasks", "label_config", "source_to_dataset", "tile", "write_tasks"]
