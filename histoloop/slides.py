"""Whole-slide images into Label Studio tasks: fields cut from each slide's tissue, written under Label
Studio's local-files root, one task each (``histoloop slides import``).

A task's data carries everything needed to put what is drawn on it back onto the slide, so nothing depends
on file names:

``image``       ``/data/local-files/?d=<subdir>/<slide id>/<stem>_x<X>_y<Y>_<mpp>um.png``
``slide``       the slide's file name; ``slide_path`` its absolute path when imported
``slide_id``    a content fingerprint (:meth:`converters.slides.Slide.fingerprint`): the same slide renamed
``group``       the patient/slide group for the train/val split (TCGA patient, ``--group-regex``, else the
                slide's stem): every field of a slide is on the same side
``x``, ``y``    the field's top-left in the slide's level-0 pixels
``size``        the field's side in pixels; ``mpp`` its resolution (µm/px); ``slide_mpp`` the slide's;
                ``downsample`` = level-0 px per field px; ``tissue`` the fraction of tissue in it
``valid_width``, ``valid_height``   only on a field that crosses the slide's right or bottom edge: the
                field px from its left / top that are on the slide; the rest is white padding, which
                training leaves out and ``/predict`` suggests nothing in

Re-running on the same slides adds nothing twice: a field (slide id, x, y, size, mpp) already a task of the
project is skipped, and its image is not rewritten. A slide that cannot be read is reported by name; the
batch goes on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.slides import Field, SlideError, open_slide, read_field, sample_fields, tissue_fields
from converters.split import group_of

log = logging.getLogger(__name__)

DEFAULT_SUBDIR = "slides"
IMPORT_BATCH = 200
"""Tasks per import request."""

Progress = Callable[[str, int, int], None]
"""progress(slide name, fields done, fields of this slide)."""


@dataclass
class ImportReport:
    slides: int = 0
    fields: int = 0
    """Fields of the slides read (sampled), new or not."""
    created: int = 0
    """Tasks created."""
    existing: int = 0
    """Fields already tasks of the project (nothing added)."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(slide, reason) for slides that could not be read."""

    def summary(self) -> str:
        lines = [
            (
                f"{self.slides} slides: {self.created} tasks created, {self.existing} fields already in the project"
                f" ({self.fields} fields in tissue sampled)"
            )
        ]
        lines += [f"  could not read {name}: {why}" for name, why in self.failed]
        return "\n".join(lines)


def field_key(data: dict[str, Any]) -> tuple[str, int, int, int, float] | None:
    """What makes a field the same field: (slide id, x, y, size, mpp); None for a task of no slide."""
    try:
        return (
            str(data["slide_id"]),
            int(data["x"]),
            int(data["y"]),
            int(data["size"]),
            round(float(data["mpp"]), 6),
        )
    except (KeyError, TypeError, ValueError):
        return None


def existing_fields(client: Any, project: int) -> set[tuple[str, int, int, int, float]]:
    """The field keys of the project's tasks."""
    keys = set()
    for task in client.tasks.list(project=project, fields="all", page_size=500, resolve_uri=False):
        data = task.data if not isinstance(task, dict) else task.get("data")
        key = field_key(data or {})
        if key:
            keys.add(key)
    return keys


def image_data_key(client: Any, project: int) -> str:
    """The data key of the project's image (``$image`` → ``image``)."""
    from kernel.labelstudio import LabelConfigError, read_label_config

    try:
        config = read_label_config(client.projects.get(id=project).label_config or "")
    except LabelConfigError:
        return "image"
    keys = [c.data_key for c in config.controls if c.on_image and c.data_key]
    return keys[0] if keys else "image"


def ensure_storage(client: Any, project: int, folder: Path) -> None:
    """A local-files storage of the project covering ``folder`` (Label Studio serves nothing without one)."""
    folder = folder.resolve()
    for storage in client.import_storage.local.list(project=project):
        path = getattr(storage, "path", None)
        if path and folder.is_relative_to(Path(path).resolve()):
            return
    client.import_storage.local.create(project=project, path=str(folder), use_blob_urls=True, title="slides")


def _write_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        Image.fromarray(image).save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def fields_folder(local_files_root: str | Path, subdir: str) -> Path:
    """``local_files_root/subdir``, resolved; ``ValueError`` when it is not inside the root (``../x``, an
    absolute path, a link out of it): Label Studio serves only the root, and nothing is written elsewhere."""
    root = Path(local_files_root).resolve()
    folder = (root / subdir).resolve()
    if not folder.is_relative_to(root):
        raise ValueError(
            f"--subdir {subdir!r} is outside the local-files root {root} (it resolves to {folder})"
        )
    return folder


def import_slides(
    client: Any,
    project: int,
    slides: Sequence[str | Path],
    local_files_root: str | Path,
    *,
    size: int = 1024,
    mpp: float = 0.5,
    stride: int | None = None,
    per_slide: int | None = None,
    min_tissue: float = 0.5,
    subdir: str = DEFAULT_SUBDIR,
    group_regex: str | None = None,
    reader: str = "auto",
    slide_mpp: float | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> ImportReport:
    """Cut tissue fields of ``size`` px at ``mpp`` µm/px from each slide (grid ``stride`` px, default no
    overlap; ``per_slide`` sampled at random, reproducibly, or all), write them under
    ``local_files_root/subdir`` and create one task each in ``project`` (see the module docstring)."""
    root = Path(local_files_root).resolve()
    folder = fields_folder(root, subdir)
    folder.mkdir(parents=True, exist_ok=True)
    report = ImportReport()
    data_key = image_data_key(client, project)
    ensure_storage(client, project, folder)
    known = existing_fields(client, project)
    for path in slides:
        name = Path(path).name
        try:
            created, existing, n = _import_one(
                client,
                project,
                Path(path),
                folder,
                root,
                known,
                data_key,
                size=size,
                mpp=mpp,
                stride=stride,
                per_slide=per_slide,
                min_tissue=min_tissue,
                group_regex=group_regex,
                reader=reader,
                slide_mpp=slide_mpp,
                seed=seed,
                progress=progress,
            )
        except (SlideError, OSError) as exc:
            log.warning("slide %s: %s", name, exc)
            report.failed.append((name, str(exc)))
            continue
        report.slides += 1
        report.created += created
        report.existing += existing
        report.fields += n
    return report


def _import_one(
    client: Any,
    project: int,
    path: Path,
    folder: Path,
    root: Path,
    known: set,
    data_key: str,
    *,
    size: int,
    mpp: float,
    stride: int | None,
    per_slide: int | None,
    min_tissue: float,
    group_regex: str | None,
    reader: str,
    slide_mpp: float | None,
    seed: int,
    progress: Progress | None,
) -> tuple[int, int, int]:
    with open_slide(path, reader=reader, mpp=slide_mpp) as slide:
        slide_id = slide.fingerprint()
        fields = tissue_fields(slide, size, mpp, stride=stride, min_tissue=min_tissue)
        fields = sample_fields(fields, per_slide, seed=f"{seed}:{slide_id}")
        group = group_of(path.name, group_regex)
        tasks: list[dict[str, Any]] = []
        existing = 0
        for i, f in enumerate(fields):
            key = (slide_id, f.x, f.y, f.size, round(float(f.mpp), 6))
            if key in known:
                existing += 1
            else:
                out = folder / slide_id / f"{path.stem}_x{f.x}_y{f.y}_{f.mpp:g}um.png"
                if not out.is_file():
                    _write_png(read_field(slide, f), out)
                rel = out.relative_to(root).as_posix()
                tasks.append(
                    {
                        data_key: f"/data/local-files/?d={rel}",
                        "slide": path.name,
                        "slide_path": str(path.resolve()),
                        "slide_id": slide_id,
                        "group": group,
                        "x": f.x,
                        "y": f.y,
                        "size": f.size,
                        "mpp": f.mpp,
                        "slide_mpp": slide.mpp,
                        "downsample": f.downsample,
                        "tissue": f.tissue,
                        **_valid_area(f),
                    }
                )
                known.add(key)
            if progress:
                progress(path.name, i + 1, len(fields))
        for i in range(0, len(tasks), IMPORT_BATCH):
            client.projects.import_tasks(project, request=tasks[i : i + IMPORT_BATCH])
    return len(tasks), existing, len(fields)


def _valid_area(f: Field) -> dict[str, int]:
    """``valid_width`` / ``valid_height`` of a field crossing the slide's right or bottom edge (field px on
    the slide; the rest of the image is white padding); nothing for a field wholly on the slide."""
    if not f.padded:
        return {}
    width, height = f.valid
    return {"valid_width": width, "valid_height": height}


def slide_tasks(tasks: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Exported tasks that are slide fields, grouped by slide id."""
    out: dict[str, list[dict[str, Any]]] = {}
    for t in tasks:
        data = t.get("data") or {}
        if field_key(data):
            out.setdefault(str(data["slide_id"]), []).append(t)
    return out
