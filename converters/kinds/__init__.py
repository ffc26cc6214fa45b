"""The dataset kinds as rows, as ultralytics' ``task_map``: one :class:`DatasetSpec` per dataset kind
(:data:`kernel.tags.DATASET_KINDS`), found by :func:`dataset_spec`.

A row carries what differs between dataset kinds, so that the converters hold no branch on a kind's
name: which Label Studio results it reads (the tag table's, :func:`kernel.tags.dataset_types`), how one
annotation's regions become its labels, where its images go and whether they are copied as they are,
whether it is a YOLO dataset, how its labels are cut into tiles, how pathology polygons and points
become its labels, and how an item's ground truth is drawn back as Label Studio results. A kind that
cannot be made from a source (an ``obb`` dataset is never tiled, a ``classify`` one has no polygons)
has None there, and the converter of that source names the kinds that can.

**One module per kind** (:mod:`converters.kinds.detect`, ``obb``, ``yolo_segment``, ``segment``,
``classify``), each with its ``SPEC``, rather than one module of rows: most fields are code (how a
polygon becomes a YOLO line, how a line is clipped to a tile, how a mask is painted...), and a kind's
code in one module keeps the kind in one place; adding a dataset kind is a module here and its name in
:data:`kernel.tags.DATASET_KINDS`. The modules use the converters' helpers (geometry, YOLO lines,
tiling) and those converters look rows up, so a row is imported on first use, as the training kinds'
rows are: no module imports one that imports it back while it loads. This module holds the row's type
and what a row hands back (:class:`ItemLabels`), and imports no kind.

>>> spec = dataset_spec("segment")
>>> spec.kind, spec.result_types, spec.copies_images, spec.yolo
('segment', ('brushlabels', 'polygonlabels'), False, False)
>>> kinds_where(lambda s: s.tiler is not None)
('detect', 'yolo-segment', 'segment')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from converters.layout import DatasetLayout
from converters.report import ConversionReport
from kernel.kinds import Kind
from kernel.labelstudio import LabelConfig
from kernel.tags import DATASET_KINDS, DatasetKind, dataset_tags, dataset_types, is_dataset_kind


@dataclass
class ItemLabels:
    """One dataset item's labels, as its kind writes them (:meth:`converters.dataset.DatasetWriter.write_item`):
    YOLO lines, a class-index mask (with a mask per class and an instance map), or a class (a classify
    item's label is the folder its image is in)."""

    lines: list[str] | None = None
    """YOLO kinds: the label file's lines (possibly none: an image without objects)."""
    mask: np.ndarray | None = None
    """segment: (H, W) uint8 class index (0 background, i+1 = classes[i])."""
    binary: dict[str, np.ndarray] = field(default_factory=dict)
    """segment: a bool (H, W) mask per class (written when asked for)."""
    instances: np.ndarray | None = None
    """segment: (H, W) uint16, one id per object (a polygon or a brush stroke), later objects on top."""
    cls: str | None = None
    """classify: the item's class."""
    regions: int = 0
    """How many regions (objects, choices) the labels hold."""


class RegionReader(Protocol):
    """One annotation's Label Studio regions → one item's labels (:mod:`converters.labelstudio_regions`)."""

    def add(
        self,
        rtype: str,
        value: dict[str, Any],
        result: dict[str, Any],
        labels: list[str],
        warn: Callable[[str], None],
    ) -> None:
        """Add one region of a type the kind reads (its labels: strings, at least one); ``RegionError``
        (or ``LabelValueError``) when it cannot be used, and then nothing of it is added."""

    def finish(self, attempted: int, where: object, report: ConversionReport) -> ItemLabels | None:
        """The item's labels after ``attempted`` regions; None when the item must be skipped (recorded)."""


class Tiler(Protocol):
    """How one item's labels are cut into tiles (:mod:`converters.tiling`)."""

    def tiles(
        self,
        src: Path,
        kind: str,
        split: str,
        stem: str,
        size: tuple[int, int],
        windows: list[tuple[int, int, int, int]],
        classes: list[str],
        min_visible: float,
        report: ConversionReport,
    ) -> list[ItemLabels] | None:
        """The labels of each window of an item of (width, height) ``size``; None when the item's labels
        cannot be read (recorded)."""


class PolygonLabels(Protocol):
    """How pathology polygons become a kind's labels (:func:`converters.pathology.aperio_to_dataset`)."""

    def lines(self, cid: int, points: np.ndarray, width: int, height: int) -> list[str]:
        """One polygon's label lines (pixel points, inside the image); ``LabelValueError`` when it is too
        small to write. No line for a kind whose polygons are painted by :meth:`item`."""

    def item(
        self,
        regions: Sequence[Any],
        classes: list[str],
        height: int,
        width: int,
        lines: list[str],
        binary_masks: bool,
    ) -> ItemLabels:
        """The item's labels from its usable regions (``converters.pathology.Region``) and their lines."""


def _image_folder(layout: DatasetLayout, split: str, cls: str | None) -> Path:
    return layout.images(split)


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset kind: what differs between kinds (see the module docstring)."""

    kind: DatasetKind
    regions: Callable[[DatasetKind, LabelConfig, dict[str, int], tuple[int, int] | None], RegionReader]
    """A fresh reader of one annotation's regions (the kind, the label config, class → index, and the
    image's (width, height) when known)."""
    plain_lines: (
        Callable[[list[Any], frozenset[tuple[str, str]] | None, dict[str, int]], list[str] | None] | None
    ) = None
    """A fast path for the common annotation (plain rectangles): its lines, or None to read it region by
    region (same lines, plus the checks and messages)."""
    copies_images: bool = True
    """PNG and JPEG images are copied as they are; else every image is decoded and written as PNG."""
    yolo: bool = False
    """A YOLO dataset: ``data.yaml`` and ``labels/`` (else ``classes.txt``)."""
    image_dir: Callable[[DatasetLayout, str, str | None], Path] = _image_folder
    """The folder of an item's image, given its split and class."""
    tiler: Tiler | None = None
    """How its labels are cut into tiles; None: it is not tiled."""
    polygons: PolygonLabels | None = None
    """How Aperio XML polygons become its labels; None: none can."""
    points: Callable[[dict[str, np.ndarray], list[str], int, int, float, float], ItemLabels] | None = None
    """BreCaHAD nucleus centres (class → normalised points, classes, width, height, box size, disc radius)
    → its labels; None: none can."""
    truth: (
        Callable[
            [list[str], DatasetLayout, str, str, dict[str, Any], int, int, str, str], list[dict[str, Any]]
        ]
        | None
    ) = None
    """An item's labels as the Label Studio results a specialist would submit (classes, layout, split,
    stem, manifest extra, width, height, from_name, to_name); None: it is no ground truth to replay."""
    truth_tag: str | None = None
    """The control tag of :attr:`truth`'s results (a replay's label config)."""
    replays: Kind | None = None
    """The model kind whose replay (``histoloop simulate``) reads its ground truth."""
    binary_masks: bool = False
    """``histoloop convert`` also writes one 0/255 mask per class (``masks_binary/``) beside its labels."""

    @property
    def tags(self) -> tuple[str, ...]:
        """The control tags whose results it reads (:func:`kernel.tags.dataset_tags`)."""
        return dataset_tags(self.kind)

    @property
    def result_types(self) -> tuple[str, ...]:
        """The result types it reads (:func:`kernel.tags.dataset_types`)."""
        return dataset_types(self.kind)


def dataset_spec(kind: str) -> DatasetSpec:
    """The row of a dataset kind; ``ValueError`` naming the kinds for anything else."""
    found = _ROWS.get(kind) if type(kind) is str else None
    if found is not None:  # the converters ask once per item
        return found
    if not is_dataset_kind(kind):
        raise ValueError(f"kind must be one of {', '.join(DATASET_KINDS)}, not {kind!r}")
    spec: DatasetSpec = import_module(f"{__name__}.{kind.replace('-', '_')}").SPEC
    _ROWS[kind] = spec
    return spec


_ROWS: dict[str, DatasetSpec] = {}
"""The rows looked up so far."""


def kinds_where(test: Callable[[DatasetSpec], bool]) -> tuple[DatasetKind, ...]:
    """The dataset kinds whose row passes ``test``, in :data:`kernel.tags.DATASET_KINDS` order."""
    return tuple(k for k in DATASET_KINDS if test(dataset_spec(k)))


def one_of(kinds: Sequence[str], last: str = "or") -> str:
    """``"detect, yolo-segment or segment"``: kinds for a message.

    >>> one_of(["detect", "segment"]), one_of(["segment"]), one_of(["a", "b", "c"], "and")
    ('detect or segment', 'segment', 'a, b and c')
    """
    return kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} {last} {kinds[-1]}"


__all__ = [
    "DatasetSpec",
    "ItemLabels",
    "PolygonLabels",
    "RegionReader",
    "Tiler",
    "dataset_spec",
    "kinds_where",
    "one_of",
]
