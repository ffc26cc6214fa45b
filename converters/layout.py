"""The dataset layouts between the converters (who write them) and the trainers (who read them).

One typed module both sides import: every folder and file name of a dataset is a method or a constant
here, never a string literal in a writer or a reader. The layouts, by dataset kind (the kinds are
:data:`kernel.tags.DATASET_KINDS`, each a row of :mod:`converters.kinds`; docs/datasets.md):

- ``detect`` / ``obb`` / ``yolo-segment`` (YOLO): ``images/{split}/<stem>.<ext>``,
  ``labels/{split}/<stem>.txt`` (YOLO lines, normalised), ``data.yaml`` (``path``, ``train``, ``val``
  [, ``test``], ``names`` in class order);
- ``segment`` (masks): ``images/{split}/<stem>.<ext>``, ``masks/{split}/<stem>.png`` (uint8 class index:
  0 = background, i+1 = classes[i]), optional ``masks_binary/{split}/<stem>/<class>.png`` (0/255),
  optional ``instances/{split}/<stem>.png`` (16-bit object ids), ``classes.txt``;
- ``classify`` (class folders): ``{split}/<class>/<stem>.<ext>``, ``classes.txt``;
- all: ``manifest.json`` (:class:`Manifest`).

>>> layout = DatasetLayout(Path("/data/4-segment"))
>>> layout.images("train").as_posix(), layout.mask("val", "TCGA-A1").as_posix()
('/data/4-segment/images/train', '/data/4-segment/masks/val/TCGA-A1.png')
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

Split = Literal["train", "val", "test"]
SPLITS: Final[tuple[Split, ...]] = ("train", "val", "test")

MANIFEST: Final = "manifest.json"
CLASSES: Final = "classes.txt"
DATA_YAML: Final = "data.yaml"


@dataclass(frozen=True)
class DatasetLayout:
    """Where each part of a dataset rooted at ``root`` lives."""

    root: Path

    def images(self, split: str) -> Path:
        return self.root / "images" / split

    def labels(self, split: str) -> Path:
        return self.root / "labels" / split

    def label(self, split: str, stem: str) -> Path:
        return self.labels(split) / f"{stem}.txt"

    def masks(self, split: str) -> Path:
        return self.root / "masks" / split

    def mask(self, split: str, stem: str) -> Path:
        return self.masks(split) / f"{stem}.png"

    def instances(self, split: str) -> Path:
        return self.root / "instances" / split

    def instance(self, split: str, stem: str) -> Path:
        """A segment dataset's optional instance map: 16-bit PNG, 0 = background, 1..N = one object each
        (touching nuclei stay apart, which the class mask cannot say)."""
        return self.instances(split) / f"{stem}.png"

    def binary_masks(self, split: str, stem: str) -> Path:
        return self.root / "masks_binary" / split / stem

    def class_dir(self, split: str, folder: str) -> Path:
        """A classify dataset's folder of one class (``folder``: :func:`converters.dataset.class_folder`)."""
        return self.root / split / folder

    @property
    def classes_file(self) -> Path:
        return self.root / CLASSES

    @property
    def data_yaml(self) -> Path:
        return self.root / DATA_YAML

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST


@dataclass
class ManifestItem:
    """One dataset item: where it came from and which side of the split it is on."""

    stem: str
    split: str
    task_id: Any = None
    annotation_ids: list[Any] = field(default_factory=list)
    group: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    """Kind-specific keys (``image``, ``class``, a tile's ``source`` and ``window``...), kept flat in the file."""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {**{k: v for k, v in d.items() if k != "extra"}, **self.extra}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ManifestItem:
        known = {"stem", "split", "task_id", "annotation_ids", "group"}
        return cls(
            **{k: raw[k] for k in known if k in raw}, extra={k: v for k, v in raw.items() if k not in known}
        )


@dataclass
class Manifest:
    """``manifest.json``: the dataset's kind, classes, content fingerprint and items."""

    kind: str
    classes: list[str]
    fingerprint: str
    items: list[ManifestItem]

    @classmethod
    def read(cls, root: Path) -> Manifest:
        """The manifest of the dataset at ``root``; ``ValueError`` naming the file when it is missing or bad."""
        path = DatasetLayout(Path(root)).manifest
        try:
            raw = json.loads(path.read_text())
            return cls(
                raw["kind"],
                list(raw["classes"]),
                str(raw.get("fingerprint", "")),
                [ManifestItem.from_json(i) for i in raw["items"]],
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}: not a histoloop dataset manifest ({type(exc).__name__}: {exc})"
            ) from None
