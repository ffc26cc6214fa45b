"""Writing the dataset layouts the trainers read (:mod:`converters.layout`, docs/datasets.md), atomically.

A :class:`DatasetWriter` builds the whole dataset in a hidden temporary folder beside ``out_dir`` and
moves it into place with one rename when :meth:`DatasetWriter.publish` is called, so a trainer never
sees half a dataset and a failed conversion leaves the old one untouched.

The layouts themselves are :mod:`converters.layout`'s; what differs between dataset kinds (where an
image goes, whether it is copied as it is, a YOLO ``data.yaml`` or a ``classes.txt``) is the kind's row
(:mod:`converters.kinds`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from converters.kinds import ItemLabels, dataset_spec
from converters.layout import SPLITS, DatasetLayout

if TYPE_CHECKING:
    from converters.report import ConversionReport
    from converters.split import SplitOptions

COPY_SUFFIXES = {".png", ".jpg", ".jpeg"}


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(name: str) -> str:
    """A file-system-safe stem (letters, digits, ``-_.``), never empty, at most 200 characters."""
    stem = _UNSAFE.sub("_", name).strip("._") or "item"
    return stem[:200]


def class_folder(name: str) -> str:
    """The folder of a class in a classify dataset: the class name itself (as classes.txt has it), unless
    it cannot be one path component, then :func:`safe_stem` of it."""
    ok = name not in ("", ".", "..") and not any(c in name for c in "/\\\0") and len(name) <= 200
    return name if ok else safe_stem(name)


MIN_EXTENT = 1e-6
"""The smallest width/height (normalised) a written box or polygon may have: what 6 decimals can say."""


class LabelValueError(ValueError):
    """A YOLO label coordinate that is not a finite number in [0, 1]: such a line is never written."""


def format_line(class_id: int, coords) -> str:
    """One YOLO label line with 6 decimals. Every coordinate must be a finite number in [0, 1] (a rounding
    error up to 1e-6 is clamped), else :class:`LabelValueError`: a ``nan`` never reaches a label file.

    >>> format_line(0, [0.5, 1.0000001, 0.25, -1e-9])
    '0 0.500000 1.000000 0.250000 0.000000'
    >>> format_line(1, [0.5, float("nan")])
    Traceback (most recent call last):
    ...
    converters.dataset.LabelValueError: coordinate nan is not a finite number in [0, 1]
    """
    out = []
    for v in coords:
        f = float(v)
        if not -1e-6 <= f <= 1.000001:  # NaN fails this too
            raise LabelValueError(f"coordinate {f:.6g} is not a finite number in [0, 1]")
        out.append("0.000000" if f <= 0.0 else "1.000000" if f >= 1.0 else f"{f:.6f}")
    return f"{class_id} " + " ".join(out)


def box_line(class_id: int, x0: float, y0: float, x1: float, y1: float, width: float, height: float) -> str:
    """The YOLO detect line (centre, size, normalised) of a pixel box already inside the image; a box
    narrower or lower than :data:`MIN_EXTENT` of the image raises :class:`LabelValueError`.

    >>> box_line(0, 10, 20, 30, 60, 100, 100)
    '0 0.200000 0.400000 0.200000 0.400000'
    """
    w, h = (x1 - x0) / width, (y1 - y0) / height
    if not (w >= MIN_EXTENT and h >= MIN_EXTENT):
        raise LabelValueError(f"box of {w:.3g} x {h:.3g} of the image is too small to write")
    return format_line(class_id, ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, w, h))


def points_line(class_id: int, points) -> str:
    """The YOLO polygon/OBB line of normalised points (K, 2); ``LabelValueError`` when they span less than
    :data:`MIN_EXTENT` in x or y (a line or a point, once written)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    extent = pts.max(0) - pts.min(0) if len(pts) else np.zeros(2)
    if not (extent >= MIN_EXTENT).all():
        raise LabelValueError(
            f"shape of {extent[0]:.3g} x {extent[1]:.3g} of the image is too small to write"
        )
    return format_line(class_id, pts.ravel())


class OutputRefused(ValueError):
    """``out_dir`` holds something histoloop did not write, or an input: publishing would delete it."""


def is_histoloop_dataset(folder: Path) -> bool:
    """Whether ``folder`` is a dataset a :class:`DatasetWriter` published (its manifest names a kind and
    a fingerprint)."""
    try:
        with (folder / "manifest.json").open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b'{"kind": ') and b'"fingerprint": ' in head


def check_output(out_dir: str | Path, inputs: Iterable[str | Path] = (), *, force: bool = False) -> None:
    """Refuse an ``out_dir`` that publishing would destroy: one that is, or holds, one of ``inputs``
    (always), or that exists and is neither empty nor a dataset histoloop wrote (unless ``force``).

    A dataset replaces ``out_dir`` wholesale, so this is the one place that decides what may go."""
    out = Path(out_dir)
    where = out.resolve()
    for given in inputs:
        source = Path(given).resolve()
        if source == where or source.is_relative_to(where):
            what = "is" if source == where else "contains"
            raise OutputRefused(
                f"{out}: the output folder {what} the input {given}; the dataset replaces the output "
                "folder, which would delete the input. Choose an output folder outside the inputs."
            )
    if force or not (out.exists() or out.is_symlink()):
        return
    if out.is_dir() and not out.is_symlink():
        if is_histoloop_dataset(out) or not any(out.iterdir()):
            return
        what = "is not empty and is not a dataset histoloop wrote"
    else:
        what = "exists and is not a folder"
    raise OutputRefused(
        f"{out}: the output {what}; the dataset would replace it and delete what it holds. "
        "Choose a new or empty folder, or give --force to replace it."
    )


class DatasetWriter:
    """Collects one dataset's files in a temporary folder; :meth:`publish` moves it to ``out_dir``.

    ``out_dir`` is checked first (:func:`check_output`): never one that is or holds one of ``inputs``, and
    only an empty folder or a dataset histoloop wrote unless ``force``."""

    def __init__(
        self,
        out_dir: str | Path,
        kind: str,
        classes: list[str],
        *,
        inputs: Iterable[str | Path] = (),
        force: bool = False,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.inputs = [Path(p) for p in inputs]
        self.force = force
        check_output(self.out_dir, self.inputs, force=force)
        self.spec = dataset_spec(kind)
        self.kind = kind
        self.classes = list(classes)
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.out_dir.parent / f".{self.out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir()
        self.layout = DatasetLayout(self.tmp)
        self.items: list[dict] = []
        self._stems: set[str] = set()
        self._hash = hashlib.sha256()
        self._dirs: set[Path] = set()
        self._label_dirs: dict[str, str] = {}
        self._files: dict[str, list[Path | str]] = {}
        """stem -> the files (and binary-mask folders) written for it, for :meth:`balance_splits` (label
        files as the string of their path: made a ``Path`` only for the few items a balance moves)."""

    def _paths(self, stem: str) -> list[Path]:
        """The files written for ``stem`` (see ``_files``)."""
        return [Path(p) for p in self._files.get(stem, [])]

    # -- names ----------------------------------------------------------------------------------------
    def unique_stem(self, stem: str, suffix: str = "") -> str:
        stem = safe_stem(stem)
        cand = stem if stem not in self._stems else safe_stem(f"{stem}-{suffix}") if suffix else stem
        n = 2
        while cand in self._stems:
            cand = f"{stem}-{n}"
            n += 1
        self._stems.add(cand)
        return cand

    def _path(self, path: Path) -> Path:
        """``path`` with its folder made (once)."""
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        return path

    # -- files ----------------------------------------------------------------------------------------
    def image_path(self, split: str, stem: str, suffix: str, cls: str | None = None) -> Path:
        path = self._path(self.spec.image_dir(self.layout, split, cls) / (stem + suffix))
        self._files.setdefault(stem, []).append(path)
        return path

    def write_image(
        self,
        split: str,
        stem: str,
        *,
        source: Path | None = None,
        data: bytes | None = None,
        name: str = "",
        array: np.ndarray | None = None,
        cls: str | None = None,
    ) -> Path:
        """Write an image: PNG/JPEG bytes as they are (unless the layout wants PNG), anything else as PNG."""
        suffix = Path(name or (source.name if source else "")).suffix.lower()
        if not self.spec.copies_images or suffix not in COPY_SUFFIXES or (source is None and data is None):
            if array is None:
                raise ValueError("an image array is needed to write a PNG")
            dest = self.image_path(split, stem, ".png", cls)
            Image.fromarray(array).save(dest, compress_level=1)
            return dest
        dest = self.image_path(split, stem, ".jpg" if suffix == ".jpeg" else suffix, cls)
        if source is not None:
            shutil.copyfile(source, dest)
        else:
            dest.write_bytes(data)
        return dest

    def write_labels(self, split: str, stem: str, lines: list[str]) -> None:
        text = "\n".join(lines) + ("\n" if lines else "")
        folder = self._label_dirs.get(split)
        if folder is None:
            folder = self._label_dirs[split] = str(self._path(self.layout.label(split, "x")).parent) + os.sep
        data = text.encode()
        with open(folder + stem + ".txt", "wb") as f:  # bytes: no text wrapper per file
            f.write(data)
        self._files.setdefault(stem, []).append(folder + stem + ".txt")
        self._hash.update(f"{split}/{stem}\0".encode() + data + b"\0")

    def write_mask(
        self,
        split: str,
        stem: str,
        mask: np.ndarray,
        binary: dict[str, np.ndarray] | None = None,
        instances: np.ndarray | None = None,
    ):
        Image.fromarray(mask.astype(np.uint8)).save(
            self._path(self.layout.mask(split, stem)), compress_level=1
        )
        self._files.setdefault(stem, []).append(self.layout.mask(split, stem))
        if binary:
            self._files[stem].append(self.layout.binary_masks(split, stem))
        if instances is not None:
            if int(instances.max(initial=0)) > 65535:
                raise ValueError(f"{stem}: more than 65535 objects in one image")
            path = self._path(self.layout.instance(split, stem))
            Image.fromarray(instances.astype(np.uint16)).save(path, compress_level=1)
            self._files[stem].append(path)
        self._hash.update(f"{split}/{stem}\0".encode() + hashlib.sha256(mask.tobytes()).digest())
        for cls, m in (binary or {}).items():
            out = self._path(self.layout.binary_masks(split, stem) / (safe_stem(cls) + ".png"))
            Image.fromarray(np.where(m, np.uint8(255), np.uint8(0))).save(out, compress_level=1)

    def write_item(self, split: str, stem: str, labels: ItemLabels) -> None:
        """Write an item's labels as its kind holds them: its YOLO lines, its mask (with the masks per
        class and the instance map it has), or nothing (a classify image's folder is its label)."""
        if labels.lines is not None:
            self.write_labels(split, stem, labels.lines)
        if labels.mask is not None:
            self.write_mask(split, stem, labels.mask, labels.binary or None, instances=labels.instances)

    def add_item(
        self, stem: str, split: str, task_id=None, annotation_ids=(), group: str = "", **extra
    ) -> None:
        item = {
            "stem": stem,
            "split": split,
            "task_id": task_id,
            "annotation_ids": list(annotation_ids),
            "group": group,
            **extra,
        }
        self.items.append(item)

    # -- finishing ------------------------------------------------------------------------------------
    def balance_splits(self, report: ConversionReport, split_options: SplitOptions) -> None:
        """Move (or copy) items so that the trainer gets both a train and a val split, whatever the
        sizes (:func:`converters.split.balance`; what it did is a warning in ``report``). Called before
        :meth:`publish` by the converters that split by hash; a forced split is never balanced."""
        from converters.split import balance

        items = [i for i in self.items if i["split"] in ("train", "val")]
        decided = balance(
            {i["stem"]: i["split"] for i in items}, {i["stem"]: i["group"] for i in items}, split_options
        )
        for item in items:
            target = decided.splits[item["stem"]]
            if target != item["split"]:
                for path in self._paths(item["stem"]):
                    dest = self._in_split(path, item["split"], target)
                    self._path(dest)
                    os.replace(path, dest)
                self._files[item["stem"]] = [
                    self._in_split(p, item["split"], target) for p in self._paths(item["stem"])
                ]
                item["split"] = target
            if item["stem"] in decided.copies_to_val:
                for path in self._paths(item["stem"]):
                    dest = self._path(self._in_split(path, item["split"], "val"))
                    if path.is_dir():
                        shutil.copytree(path, dest)
                    else:
                        shutil.copyfile(path, dest)
                self.items.append({**item, "split": "val", "copy_of": "train"})
        if decided.note:
            report.warn("split", decided.note)

    def _in_split(self, path: Path, old: str, new: str) -> Path:
        """``path`` (in this dataset) moved from split ``old`` to ``new`` (``images/<split>/...``,
        ``<split>/<class>/...``)."""
        parts = list(path.relative_to(self.tmp).parts)
        parts[parts.index(old)] = new  # the first folder named like a split is the split's
        return self.tmp.joinpath(*parts)

    def splits(self) -> list[str]:
        found = {i["split"] for i in self.items}
        return [s for s in SPLITS if s in found or s in ("train", "val")]

    def publish(self) -> Path:
        """Write data.yaml/classes.txt and manifest.json, then move the dataset into place."""
        splits = self.splits()
        if self.spec.yolo:
            lines = [f"path: {self.out_dir.resolve()}"]
            lines += [f"{s}: images/{s}" for s in splits]
            lines.append("names:")
            lines += [f"  {i}: {json.dumps(c)}" for i, c in enumerate(self.classes)]
            self.layout.data_yaml.write_text("\n".join(lines) + "\n")
            for s in splits:  # ultralytics wants the folders even when a split is empty
                self.layout.images(s).mkdir(parents=True, exist_ok=True)
                self.layout.labels(s).mkdir(parents=True, exist_ok=True)
        else:
            self.layout.classes_file.write_text("".join(c + "\n" for c in self.classes))
        # one item per line; a single json.dumps is the fast C encoder (items always start with "stem")
        items = json.dumps(self.items, default=str).replace('}, {"stem": ', '},\n  {"stem": ')
        self._hash.update(json.dumps([self.kind, self.classes]).encode() + items.encode())
        head = json.dumps({"kind": self.kind, "classes": self.classes, "fingerprint": self._hash.hexdigest()})
        text = head[:-1] + ', "items": ' + (f"[\n  {items[1:-1]}\n]" if self.items else "[]") + "}\n"
        self.layout.manifest.write_text(text)
        check_output(self.out_dir, self.inputs, force=self.force)  # it may have changed meanwhile
        old = None
        if self.out_dir.exists() or self.out_dir.is_symlink():
            old = self.out_dir.parent / f".{self.out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.out_dir, old)
        os.replace(self.tmp, self.out_dir)
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:  # a file or a link (never what it points to) given with --force
                old.unlink()
        return self.out_dir

    @contextmanager
    def publishing(
        self, report: ConversionReport, *, split_options: SplitOptions | None = None
    ) -> Iterator[DatasetWriter]:
        """``with writer.publishing(report):`` — publish when something converted, else (or on any error)
        leave no trace. With ``split_options`` (a hash split), :meth:`balance_splits` first."""
        try:
            yield self
        except BaseException:
            self.abandon()
            raise
        if not report.converted:
            self.abandon()
            return
        try:
            if split_options is not None:
                self.balance_splits(report, split_options)
            report.output = str(self.publish())
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
