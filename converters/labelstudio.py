"""Label Studio JSON exports → training datasets (YOLO detect/OBB/segment, PNG masks, class folders).

**Which annotation counts** (:func:`select_annotations`): the approval rule is
:func:`kernel.labelstudio.is_approved`'s, the one the webhook counts with (cancelled annotations and
drafts never count; ``approval="ground_truth"`` keeps only ground truth, ``"reviewed"`` only accepted or
ground-truth ones). Of those, the ground-truth one when one is marked (the most recent, if several), else
the most recent one (by ``updated_at``, then ``created_at``, then id). ``per_annotator=True`` keeps one
per annotator (by the same rule among theirs), each a dataset item of its own.

**Splits**: by patient (TCGA barcode in the image name) or ``group_regex``, by hash
(:mod:`converters.split`); a group already in ``out_dir/manifest.json`` keeps its split. If hashing leaves
val empty with two groups or more, one group is moved to val (and then kept there by the manifest).

**Bad input** never stops the batch: a task that is not an object, whose ``data`` is not an object or
``annotations`` not a list, with no usable annotation, a missing or unreadable image (empty, truncated,
not an image: checked before it is copied), a label not in the config, a label that is not a string, an
RLE of the wrong size, a zero-area box or a coordinate that is not a finite number is recorded in the
:class:`ConversionReport` with the task id (``task #n`` for a task without a usable id) and the reason;
the rest converts. Anything unforeseen in one item skips that item with the exception's text.

>>> tasks = load_export("tests/data/labelstudio_export.json")
>>> [len(select_annotations(t)) for t in tasks]
[1, 1, 1, 0]
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tqdm import tqdm

from converters.dataset import DatasetWriter, check_output, safe_stem
from converters.images import ImageError, ImageLoader
from converters.inputs import COPY_FORMATS, InputError, read_json, verify_image
from converters.kinds import DatasetSpec, dataset_spec
from converters.labelstudio_regions import convert_regions
from converters.layout import DatasetLayout
from converters.regions import finite_number, short
from converters.report import ConversionReport
from converters.slides import valid_area
from converters.split import DEFAULT_SPLIT, SplitOptions, group_of, split_fraction, split_of_group
from kernel.labelstudio import (
    LabelConfig,
    LabelConfigError,
    check_approval,
    is_approved,
    is_submitted,
    read_label_config,
)

COPY_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_export(path_or_list: str | Path | list | dict) -> list[dict]:
    """The list of tasks of an export (a JSON file path, a task list, one task, or ``{"tasks": [...]}``).

    Raises ``ValueError`` naming the file and the problem when it is not valid JSON or not tasks.
    """
    where = "export"
    data: Any = path_or_list
    if isinstance(path_or_list, str | Path):
        where = str(path_or_list)
        try:
            data = read_json(path_or_list)
        except InputError as exc:
            raise ValueError(f"{where}: {exc}") from None
    if isinstance(data, dict):
        data = data.get("tasks", [data]) if "tasks" in data or "data" in data else None
    if not isinstance(data, list):
        raise ValueError(f"{where}: expected a list of Label Studio tasks")
    return data


def read_config(config: str | Path) -> LabelConfig:
    """A label config from its XML text or a file path (:func:`kernel.labelstudio.read_label_config`);
    ``ValueError`` naming the file when it cannot be read, or saying why the XML is no label config."""
    text = str(config)
    if not text.lstrip().startswith("<"):
        path = Path(text)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the label config ({exc.strerror})") from None
    try:
        return read_label_config(text)
    except LabelConfigError as exc:
        raise ValueError(f"label config is not valid XML: {exc}") from None


def annotator_of(annotation: dict) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("id", who.get("email"))
    return str(who)


def _recency(a: dict) -> tuple:
    return (
        str(a.get("updated_at") or a.get("created_at") or ""),
        str(a.get("created_at") or ""),
        a.get("id") if isinstance(a.get("id"), int) else 0,
    )


def select_annotations(task: dict, approval: str = "submitted", per_annotator: bool = False) -> list[dict]:
    """The annotations of a task that count (see the module docstring); possibly none."""
    anns = task.get("annotations")
    if approval == "submitted" and type(anns) is list and len(anns) == 1:  # the common case, fast
        a = anns[0]
        if type(a) is dict and is_submitted(a):
            return [a]
    check_approval(approval)
    raw = task.get("annotations") or task.get("completions") or []
    anns = (
        [a for a in raw if isinstance(a, dict) and is_approved(a, approval)] if isinstance(raw, list) else []
    )
    if not anns:
        return []

    def best(group: list[dict]) -> dict:
        gt = [a for a in group if a.get("ground_truth")]
        return max(gt or group, key=_recency)

    if not per_annotator:
        return [best(anns)]
    by_user: dict[str, list[dict]] = {}
    for a in anns:
        by_user.setdefault(annotator_of(a), []).append(a)
    return [best(by_user[u]) for u in sorted(by_user)]


def image_url(task: dict, data_key: str | None = None) -> str | None:
    data = task.get("data")
    if not isinstance(data, dict):
        return None
    if data_key:
        value = data.get(data_key)
        return value if isinstance(value, str) else None
    if isinstance(data.get("image"), str):
        return data["image"]
    return next((v for v in data.values() if isinstance(v, str) and ("/" in v or "." in v)), None)


def stem_of(url: str) -> str:
    """The file stem an image URL points to (``?d=`` of local-files URLs, else the URL path)."""
    if "?d=" in url:
        name = url.split("?d=", 1)[1].split("&", 1)[0]
        name = (unquote(name) if "%" in name else name).rsplit("/", 1)[-1]
        return name.rsplit(".", 1)[0] if "." in name[1:] else name
    parts = urlsplit(url)
    d = parse_qs(parts.query).get("d")
    name = unquote(d[0]) if d else unquote(parts.path)
    return PurePosixPath(name).stem


def _why_unusable(task: dict, approval: str) -> str:
    anns = task.get("annotations")
    anns = anns if isinstance(anns, list) else []
    cancelled = sum(1 for a in anns if isinstance(a, dict) and (a.get("was_cancelled") or a.get("skipped")))
    drafts = task.get("drafts")
    drafts = len(drafts) if isinstance(drafts, list) else 0
    detail = [f"{len(anns)} annotations", f"{cancelled} cancelled"] + ([f"{drafts} drafts"] if drafts else [])
    need = "submitted" if approval == "submitted" else approval.replace("_", "-")
    return f"no {need} annotation ({', '.join(detail)})"


def _previous_splits(out_dir: Path) -> dict[str, str]:
    try:
        manifest = json.loads(DatasetLayout(out_dir).manifest.read_text())
        return {str(i["group"]): i["split"] for i in manifest.get("items", []) if i.get("group")}
    except Exception:  # no manifest, or a damaged one: splits are hashed afresh
        return {}


@dataclass(slots=True)
class ExportItem:
    """One annotation of one task to convert: what pass 1 (:func:`_plan`) found and pass 2 converts."""

    task: dict[str, Any]
    task_id: Any
    annotation: dict[str, Any]
    url: str
    stem: str
    """The item's file stem in the dataset (unique)."""
    name: str
    """The image's own stem (what the split group is found in)."""
    group: str = ""
    split: str = ""


def _task_id(task: dict, n: int) -> Any:
    """The task's id for messages and the manifest: its ``id`` when that is an int or a short string,
    else ``#n`` (its position in the export)."""
    tid = task.get("id")
    if isinstance(tid, int) and not isinstance(tid, bool) and -(2**63) <= tid < 2**63:
        return tid
    if isinstance(tid, str) and 0 < len(tid) <= 64 and tid.isprintable():
        return tid
    return f"#{n}"


def _unusable_task(task: dict) -> str | None:
    """Why a task's shape is wrong (data not an object, annotations not a list), or None."""
    data = task.get("data")
    if not isinstance(data, dict):
        return "no data" if data is None else f"data is not an object (a {type(data).__name__})"
    for key in ("annotations", "completions"):
        value = task.get(key)
        if value is not None and not isinstance(value, list):
            return f"{key} is not a list (a {type(value).__name__})"
    return None


def _unique(stem: str, seen: set[str], tid: Any) -> str:
    """A stem not in ``seen`` (then added): ``stem``, else ``stem-t<task>``, else ``stem-t<task>-2``..."""
    stem = safe_stem(stem)  # idempotent, and cheap on a stem that is safe already
    if stem in seen:
        base = f"-t{tid}"
        stem = safe_stem(stem[: 200 - len(base)] + base)
        n = 2
        while stem in seen:
            stem = safe_stem(f"{stem[:190]}-{n}")
            n += 1
    seen.add(stem)
    return stem


def _plan(
    tasks: list[Any], *, approval: str, per_annotator: bool, data_key: str | None, report: ConversionReport
) -> list[ExportItem]:
    """Pass 1: the items to convert (task, annotation, image URL, stem, group); skips recorded."""
    items: list[ExportItem] = []
    seen: set[str] = set()
    for n, task in enumerate(tasks):
        if not isinstance(task, dict):
            report.skip(f"task #{n}", f"not a JSON object (a {type(task).__name__})")
            continue
        tid = _task_id(task, n)
        wrong = _unusable_task(task)
        if wrong:
            report.skip(f"task {tid}", wrong)
            continue
        url = image_url(task, data_key)
        if not url:
            keys = sorted(str(k)[:40] for k in task["data"])
            report.skip(f"task {tid}", f"no image URL in data ({keys[:10]})")
            continue
        try:
            name = stem_of(url)
        except ValueError as exc:
            report.skip(f"task {tid}", f"image URL is not a valid URL ({exc}: {short(url, 80)})")
            continue
        anns = select_annotations(task, approval, per_annotator)
        if not anns:
            report.skip(f"task {tid}", _why_unusable(task, approval))
            continue
        base = safe_stem(name)
        for ann in anns:
            stem = _unique(f"{base}-a{id_text(ann.get('id'))}" if per_annotator else base, seen, tid)
            items.append(ExportItem(task, tid, ann, url, stem, name))
    return items


SplitChoice = str | Mapping[str, str] | Callable[[ExportItem], str | None] | None
"""One split name for all, a mapping (stem, task id or group -> split), a callable(item), or None (hashing)."""


def _assign(
    items: list[ExportItem], out_dir: Path, *, split: SplitChoice, split_options: SplitOptions
) -> None:
    for it in items:
        given = (it.task.get("data") or {}).get("group")  # slide fields carry their patient/slide group
        it.group = str(given) if given not in (None, "") else group_of(it.name, split_options.group_regex)
    if isinstance(split, str):
        for it in items:
            it.split = split
        return
    if isinstance(split, Mapping) or callable(split):
        for it in items:
            if isinstance(split, Mapping):
                s = split.get(it.stem, split.get(str(it.task_id), split.get(it.group)))
            else:
                s = split(it)
            it.split = s or split_of_group(it.group, split_options)
        return
    previous = _previous_splits(Path(out_dir))
    by_group: dict[str, str] = {}
    for it in items:
        g = it.group
        if g not in by_group:
            by_group[g] = previous.get(g) or split_of_group(g, split_options)
        it.split = by_group[g]
    groups = {it.group for it in items}
    if split_options.val_fraction > 0 and len(groups) >= 2 and not any(it.split == "val" for it in items):
        free = sorted(
            (g for g in groups if g not in previous), key=lambda g: split_fraction(g, split_options.seed)
        )
        if free and len(groups - {free[0]}) >= 1:
            for it in items:
                if it.group == free[0]:
                    it.split = "val"


def export_to_dataset(
    tasks: list[dict] | str | Path,
    kind: str,
    out_dir: str | Path,
    *,
    label_config: str | Path | None,
    images: ImageLoader | None,
    split_options: SplitOptions = DEFAULT_SPLIT,
    split: SplitChoice = None,
    approval: str = "submitted",
    per_annotator: bool = False,
    binary_masks: bool = False,
    data_key: str | None = None,
    progress: bool = False,
    inputs: Sequence[str | Path] = (),
    force: bool = False,
) -> ConversionReport:
    """Convert tasks into the dataset layout of ``kind`` (detect, obb, yolo-segment, segment, classify).

    ``out_dir`` is replaced by the dataset; it may not be or hold the export, ``inputs`` or the images'
    local root, and must be new, empty or a dataset histoloop wrote unless ``force``
    (:func:`converters.dataset.check_output`).

    ``images=None`` writes labels only (no image files): for checks and benchmarks. ``split_options``
    split by hash; ``split`` forces splits instead: one split name for all, a mapping (stem, task id or
    group → split) or a callable(item), hashing (``split_options``) where it names none.
    """
    spec = dataset_spec(kind)
    inputs = [*inputs, *([tasks] if isinstance(tasks, str | Path) else [])]
    if images is not None and images.local_root is not None:
        inputs.append(images.local_root)
    check_output(out_dir, inputs, force=force)
    with _collector_paused():
        return _export(
            load_export(tasks),
            spec,
            kind,
            out_dir,
            label_config=label_config,
            images=images,
            split_options=split_options,
            split=split,
            approval=approval,
            per_annotator=per_annotator,
            binary_masks=binary_masks,
            data_key=data_key,
            progress=progress,
            inputs=inputs,
            force=force,
        )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while an export converts (its previous state restored after).

    Converting allocates a few objects per task; each time they fill the youngest generation the collector
    may walk the older ones too, i.e. the whole export parsed so far (a dict or list per task, result and value)
    again and again: a third of the conversion's time on a large export. Reference counting still frees
    everything as usual; only reference cycles (the converter makes none per item) wait for the next
    collection after it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _export(
    tasks: list[dict],
    spec: DatasetSpec,
    kind: str,
    out_dir: str | Path,
    *,
    label_config: str | Path | None,
    images: ImageLoader | None,
    split_options: SplitOptions,
    split: SplitChoice,
    approval: str,
    per_annotator: bool,
    binary_masks: bool,
    data_key: str | None,
    progress: bool,
    inputs: list[str | Path],
    force: bool,
) -> ConversionReport:
    config = read_config(label_config) if label_config is not None else None
    report = ConversionReport()
    if not tasks:
        report.skip("export", "no tasks in the export")
        return report
    items = _plan(tasks, approval=approval, per_annotator=per_annotator, data_key=data_key, report=report)
    if config is None:  # the classes are those the annotations use
        config = LabelConfig.infer(spec.kind, (it.annotation.get("result") for it in items))
    classes = config.classes(spec.kind)
    if not classes:
        report.skip("label config", f"no labels for a {kind} dataset")
        return report
    _assign(items, out_dir, split=split, split_options=split_options)
    writer = DatasetWriter(out_dir, kind, classes, inputs=inputs, force=force)
    with writer.publishing(report, split_options=split_options if split is None else None):
        for it in tqdm(items, desc=f"{kind}", unit="task", disable=not progress, leave=False):
            _convert_item(it, spec, config, classes, images, writer, report, binary_masks)
    return report


def _read_image(
    it: ExportItem, spec: DatasetSpec, images: ImageLoader
) -> tuple[Path | None, bytes | None, str, Any, tuple[int, int]]:
    """(local source, fetched bytes, name, decoded array or None, (width, height)) of an item's image,
    checked: every image is verified, one copied as it is only then; anything else is decoded. Raises
    ImageError."""
    url = it.url
    try:
        source = images.local_path(url)
        data: bytes | None = None
        if source is not None:
            if not source.is_file():
                raise ImageError(f"{url}: image not found ({source})")
            name = source.name
        else:
            data, name = images.read_bytes(url)
        info = verify_image(source, data=data, name=url, max_pixels=images.max_pixels)
        if spec.copies_images and Path(name).suffix.lower() in COPY_SUFFIXES and info.format in COPY_FORMATS:
            return source, data, name, None, (info.width, info.height)
        raw = data if data is not None else source.read_bytes()  # type: ignore[union-attr]
        array = images.decode(raw, name, url)
        return None, None, name, array, (array.shape[1], array.shape[0])
    except ImageError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:  # a name too long, a symlink loop, a bad URL...
        raise ImageError(f"{url}: cannot read ({type(exc).__name__}: {exc})") from None


class _Where:
    """'task 3 (annotation 5)', formatted only when a message needs it."""

    __slots__ = ("annotation_id", "task_id")

    def __init__(self, task_id, annotation_id) -> None:
        self.task_id, self.annotation_id = task_id, annotation_id

    def __str__(self) -> str:
        return f"task {self.task_id} (annotation {id_text(self.annotation_id)})"


def id_text(value: Any) -> str:
    """An id as text for a message or a file name: a string as it is (at most 64 characters), anything
    else as its (shortened) repr."""
    return value[:64] if isinstance(value, str) else short(value, 64)


def _convert_item(
    it: ExportItem,
    spec: DatasetSpec,
    config: LabelConfig,
    classes: list[str],
    images: ImageLoader | None,
    writer: DatasetWriter,
    report: ConversionReport,
    binary_masks: bool,
) -> None:
    task_id, ann, url = it.task_id, it.annotation, it.url
    where = _Where(task_id, ann.get("id"))
    results = ann.get("result") or []
    if not isinstance(results, list):
        report.skip(where, "annotation result is not a list")
        return
    source = array = data = None
    name = ""
    size = None
    if images is not None:
        try:
            source, data, name, array, size = _read_image(it, spec, images)
        except ImageError as exc:
            report.skip(where, f"image: {exc}")
            return
    try:
        out = convert_regions(results, spec.kind, config, classes, size, where, report)  # type: ignore[arg-type]
    except Exception as exc:  # unforeseen input: this item is skipped, never the batch
        report.skip_unforeseen(where, exc)
        return
    if out is None:
        return
    split, stem = it.split, it.stem
    if images is not None:
        writer.write_image(split, stem, source=source, data=data, name=name, array=array, cls=out.cls)
    if not binary_masks:
        out.binary = {}
    writer.write_item(split, stem, out)
    extra = {"image": url}
    mpp = (it.task.get("data") or {}).get("mpp")  # a slide field's resolution (µm/px): the model's, later
    mpp = finite_number(mpp)
    if mpp is not None and mpp > 0:
        extra["mpp"] = mpp
    extra.update(valid_area(it.task.get("data"), size))
    if out.cls is not None:  # a classify item's class
        extra["class"] = out.cls
    aid = ann.get("id")
    aid = aid if isinstance(aid, str) or (isinstance(aid, int) and not isinstance(aid, bool)) else None
    writer.add_item(stem, split, task_id, [aid], it.group, **extra)
    report.add_converted(regions=out.regions)


def to_yolo_detect(tasks, out_dir, *, label_config, images=None, obb=False, **kw) -> ConversionReport:
    """YOLO detection (or, with ``obb=True``, YOLO-OBB) dataset from rectangles and polygons."""
    return export_to_dataset(
        tasks, "obb" if obb else "detect", out_dir, label_config=label_config, images=images, **kw
    )


def to_yolo_segment(tasks, out_dir, *, label_config, images=None, **kw) -> ConversionReport:
    """YOLO segmentation dataset (normalised polygons) from polygons and brush masks (their contours)."""
    return export_to_dataset(tasks, "yolo-segment", out_dir, label_config=label_config, images=images, **kw)


def to_masks(tasks, out_dir, *, label_config, images=None, binary_masks=True, **kw) -> ConversionReport:
    """PNG masks (class index + binary per class) from brushes and polygons."""
    return export_to_dataset(
        tasks, "segment", out_dir, label_config=label_config, images=images, binary_masks=binary_masks, **kw
    )


def to_classification(tasks, out_dir, *, label_config, images=None, **kw) -> ConversionReport:
    """Image-classification folder tree from choices."""
    return export_to_dataset(tasks, "classify", out_dir, label_config=label_config, images=images, **kw)


__all__ = [
    "ConversionReport",
    "ImageLoader",
    "annotator_of",
    "export_to_dataset",
    "load_export",
    "select_annotations",
    "to_classification",
    "to_masks",
    "to_yolo_detect",
    "to_yolo_segment",
]
