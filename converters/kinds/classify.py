"""``classify``: class folders, ``{split}/<class>/<stem>.<ext>``: an image's folder is its label.

An annotation gives exactly one choice (a second, different one is skipped); an annotation without a
usable choice is no item. The ground truth is that choice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from converters.dataset import class_folder
from converters.kinds import DatasetSpec, ItemLabels
from converters.labelstudio_regions import Reader
from converters.layout import DatasetLayout
from converters.regions import RegionError
from converters.report import ConversionReport


class ChoiceReader(Reader):
    """The one choice of an annotation."""

    def add(
        self, rtype: str, value: dict, result: dict, labels: list[str], warn: Callable[[str], None]
    ) -> None:
        if len(labels) != 1:
            raise RegionError(f"{len(labels)} choices; a classification item needs exactly one")
        (cls,) = labels
        if cls not in self.index:
            raise RegionError(self.config.why_not_a_class(cls, self.kind))
        if self.out.cls is not None and self.out.cls != cls:
            raise RegionError(f"a second choice '{cls}' (already '{self.out.cls}')")
        self.out.cls = cls
        self.out.regions += 1

    def finish(self, attempted: int, where: object, report: ConversionReport) -> ItemLabels | None:
        if self.out.cls is None:
            report.skip(where, "no choice for classification" if not attempted else "no usable choice")
            return None
        return super().finish(attempted, where, report)


def class_dir(layout: DatasetLayout, split: str, cls: str | None) -> Path:
    """The folder of the class's images (:func:`converters.dataset.class_folder`)."""
    return layout.class_dir(split, class_folder(cls or "unknown"))


def choice_truth(
    classes: list[str],
    layout: DatasetLayout,
    split: str,
    stem: str,
    extra: dict[str, Any],
    w: int,
    h: int,
    from_name: str,
    to_name: str,
) -> list[dict[str, Any]]:
    """The item's class as a choice."""
    from converters.predictions import choices_result

    return [choices_result(str(extra.get("class")), 1.0, from_name, to_name)]


SPEC = DatasetSpec(
    kind="classify",
    regions=ChoiceReader,
    image_dir=class_dir,
    truth=choice_truth,
    truth_tag="Choices",
    replays="classify",
)
