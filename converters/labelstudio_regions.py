"""One annotation's results → what a dataset item needs: YOLO lines, a class-index mask, or a class.

Rules: a rectangle's ``rotation`` is honoured (its axis-aligned bounding box for detect, its corners for
OBB); a polygon gives its bounding box (detect), its minimum-area rectangle (OBB), normalised points
(yolo-segment) or filled pixels (masks); a brush gives its contours (yolo-segment) or pixels (masks).
Coordinates outside the image are clipped (a warning; an oriented box's corners too, so that every
written coordinate lies in [0, 1]); a region with a label not in the config, a zero-area box, a bad RLE,
or numbers that are missing, not numbers or not finite (NaN, infinity, too large for a float) is skipped
with the reason — a ``nan`` is never written, and never reported as "clipped"; when an annotation had
regions and none was usable the whole item is skipped (an empty label file would teach "background").
Anything else wrong with one region (a label that is a list, a ``from_name`` that is not a string...)
skips that region with the reason, never the batch. For masks, overlapping regions take the class of
the later region.

How a region becomes a kind's labels is the kind's row's (:attr:`converters.kinds.DatasetSpec.regions`:
a :class:`converters.kinds.RegionReader`, most of them a :class:`Reader`); this module is the loop every
kind shares: which results a kind reads, the checks every region needs, and what is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from converters.dataset import MIN_EXTENT, LabelValueError
from converters.kinds import ItemLabels, RegionReader, dataset_spec
from converters.regions import RegionError, image_size_of, short
from converters.report import ConversionReport
from kernel.labelstudio import LabelConfig
from kernel.tags import DatasetKind, type_spec

logger = logging.getLogger(__name__)

MIN_PERCENT = MIN_EXTENT * 100
"""The smallest rectangle side (percent of the image) written: 1e-6 of the image, what 6 decimals say."""


def drawn_size(result: dict, size: tuple[int, int] | None) -> tuple[int, int]:
    """The (width, height) a result was drawn on, else the image's; ``RegionError`` when neither is known."""
    s = image_size_of(result) or size
    if s is None:
        raise RegionError("no original_width/original_height in the result and no image to measure")
    return s


def polygon_area(points: np.ndarray) -> float:
    """The (absolute) area of a polygon (K, 2), by the shoelace formula."""
    x, y = points[:, 0], points[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2


class _Region:
    """A region's name ('task 3 (annotation 5) region abc', built only when printed) and its warnings."""

    __slots__ = ("report", "rid", "where")

    def __init__(self, report: ConversionReport, where: str, rid) -> None:
        self.report, self.where, self.rid = report, where, rid

    def __str__(self) -> str:
        return f"{self.where} region {self.rid}"

    def __call__(self, msg: str) -> None:
        self.report.warn(str(self), msg)


class Reader:
    """What every kind's :class:`converters.kinds.RegionReader` shares: the annotation's context, its
    labels so far (:attr:`out`), the check that a region's labels are classes, and the end (an item whose
    regions all failed is skipped: an empty label file would teach "background")."""

    def __init__(
        self, kind: DatasetKind, config: LabelConfig, index: dict[str, int], size: tuple[int, int] | None
    ) -> None:
        self.kind, self.config, self.index, self.size = kind, config, index, size
        self.out = ItemLabels()

    def class_ids(self, labels: list[str]) -> list[int]:
        """The class index of each label; ``RegionError`` naming the first that is no class."""
        for label in labels:
            if label not in self.index:
                raise RegionError(self.config.why_not_a_class(label, self.kind))
        return [self.index[label] for label in labels]

    def finish(self, attempted: int, where: object, report: ConversionReport) -> ItemLabels | None:
        if attempted and not self.out.regions:
            report.skip(where, f"none of its {attempted} regions could be converted")
            return None
        return self.out


RegionLines = Callable[[str, dict, dict, int, tuple[int, int] | None, Callable[[str], None]], list[str]]
"""A YOLO kind's lines of one region for one class: (type, value, result, class id, image size, warn)."""


class LineReader(Reader):
    """The reader of the YOLO kinds: each label of a region gives the region's lines (by the kind's
    :data:`RegionLines`) for that class; a region is added only when every label of it converted."""

    def __init__(
        self,
        kind: DatasetKind,
        config: LabelConfig,
        index: dict[str, int],
        size: tuple[int, int] | None,
        *,
        lines: RegionLines,
    ) -> None:
        super().__init__(kind, config, index, size)
        self.out.lines = []
        self.region_lines = lines

    def add(
        self, rtype: str, value: dict, result: dict, labels: list[str], warn: Callable[[str], None]
    ) -> None:
        lines: list[str] = []
        for cid in self.class_ids(labels):
            lines.extend(self.region_lines(rtype, value, result, cid, self.size, warn))
        if self.out.lines is None:  # set to a list in __init__
            raise RuntimeError("a lines writer without its list of lines")
        self.out.lines.extend(lines)
        self.out.regions += len(labels)


def convert_regions(
    results: list[dict],
    kind: str,
    config: LabelConfig,
    classes: list[str],
    size: tuple[int, int] | None,
    where: str,
    report: ConversionReport,
) -> ItemLabels | None:
    """Convert one annotation's results; None when the item must be skipped (recorded in ``report``)."""
    spec = dataset_spec(kind)
    index = {c: i for i, c in enumerate(classes)}
    accepted = config.accepted_pairs()
    if spec.plain_lines is not None:
        lines = spec.plain_lines(results, accepted, index)
        if lines is not None:
            return ItemLabels(lines=lines, regions=len(lines))
    types = spec.result_types
    reader = spec.regions(spec.kind, config, index, size)
    attempted = 0
    others: dict[str, int] = {}  # regions this kind does not read, by type
    for n, r in enumerate(results):
        if type(r) is not dict:
            report.skip(f"{where} result #{n}", f"not a JSON object (a {type(r).__name__})")
            attempted += 1
            continue
        rtype = r.get("type")
        if rtype not in types:
            rtype = str(rtype).lower()
            if rtype not in types:
                if _is_region(rtype):
                    others[rtype] = others.get(rtype, 0) + 1
                continue
        attempted += 1
        rid = warn = _Region(report, where, r.get("id", n))
        try:
            _add_region(reader, r, rtype, accepted, warn)
        except (RegionError, LabelValueError) as exc:
            report.skip(rid, str(exc))
        except (ValueError, TypeError, ArithmeticError, LookupError, MemoryError) as exc:
            logger.debug("region %s", rid, exc_info=True)
            report.skip(rid, f"cannot be converted ({type(exc).__name__}: {exc})")
    if not attempted and others:
        # regions drawn only with another control say nothing about this kind's: not a background example
        drawn = ", ".join(f"{n} {t}" for t, n in sorted(others.items()))
        report.skip(
            where,
            f"its only regions ({drawn}) are of another control; a {kind} dataset reads {', '.join(types)}",
        )
        return None
    return reader.finish(attempted, where, report)


def _is_region(result_type: str) -> bool:
    """Whether a result of this type is a region drawn on the image (a labelled or plain geometry), as
    opposed to a choice or text about the whole item."""
    row = type_spec(result_type)
    return row is not None and row.label_element == "Label"


def _add_region(
    reader: RegionReader, r: dict, rtype: str, accepted: frozenset[tuple[str, str]] | None, warn: _Region
) -> None:
    """Check what every kind needs of a region (a tag of the config, a value, string labels), then hand
    it to the kind's reader. Raises RegionError."""
    from_name = r.get("from_name", "")
    if accepted is not None and (not isinstance(from_name, str) or (from_name, rtype) not in accepted):
        raise RegionError(f"{short(from_name)} is not a {rtype} tag of the label config")
    value: Any = r.get("value")
    if not isinstance(value, dict):
        raise RegionError("result without a value")
    labels = value.get(rtype) or []  # the labels are under the result's type (kernel.tags.TagSpec.label_key)
    if not isinstance(labels, list) or not labels:
        raise RegionError(f"no {rtype} label")
    for label in labels:
        if not isinstance(label, str):
            raise RegionError(f"label {short(label)} is not a string")
    reader.add(rtype, value, r, labels, warn)
