"""Reading and checking the dataset layouts the converters write (:mod:`converters.layout`, docs/datasets.md).

Every check raises :class:`TrainingError` naming the directory or file and what is wrong: an empty
split, a class with no training examples, an unreadable image or mask.

- detect: ``images/{train,val}/*``, ``labels/{train,val}/*.txt`` (YOLO), ``data.yaml`` with ``names``
- segment: ``images/{split}/<stem>.png``, ``masks/{split}/<stem>.png`` (0 = background, i+1 = classes[i]),
  ``classes.txt``
- classify: ``{split}/<class>/<stem>.<ext>``, ``classes.txt``
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.dataset import class_folder
from converters.layout import DatasetLayout, Manifest
from training.base import TrainingError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def list_images(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; :class:`TrainingError` naming the file when it cannot be decoded."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except Exception as exc:  # PIL raises many types for bad files
        raise TrainingError(f"{path}: corrupt or unreadable image ({exc})") from exc


def read_mask(path: Path) -> np.ndarray:
    """(H, W) uint8 class-index mask."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            mask = np.array(im)
    except Exception as exc:
        raise TrainingError(f"{path}: corrupt or unreadable mask ({exc})") from exc
    if mask.ndim == 3:
        mask = mask[..., 0]
    return mask.astype(np.uint8)


def read_instances(mask_path: Path, mask: np.ndarray) -> np.ndarray:
    """The instance map beside a class mask (``instances/<split>/<stem>.png``, written by the converters
    where they know the objects), else the connected components of the mask's foreground (touching
    objects then count as one). (H, W) int32, 0 = background."""
    from PIL import Image

    from training.objects import label_instances, relabel

    path = DatasetLayout(mask_path.parents[2]).instance(mask_path.parent.name, mask_path.stem)
    if path.is_file():
        try:
            with Image.open(path) as im:
                inst = np.array(im).astype(np.int32)
        except Exception as exc:
            raise TrainingError(f"{path}: corrupt or unreadable instance map ({exc})") from exc
        if inst.shape == mask.shape:
            return relabel(np.where(mask > 0, inst, 0))
        raise TrainingError(f"{path}: instance map {inst.shape} does not match its mask {mask.shape}")
    return label_instances(mask > 0)


def verify_images(paths: list[Path]) -> None:
    """Open every image header and check it decodes; one bad file fails the run, named."""
    from PIL import Image

    for p in paths:
        try:
            with Image.open(p) as im:
                im.verify()
        except Exception as exc:
            raise TrainingError(f"{p}: corrupt or unreadable image ({exc})") from exc


def read_classes(dataset_dir: Path) -> list[str]:
    path = DatasetLayout(dataset_dir).classes_file
    if not path.is_file():
        raise TrainingError(
            f"{dataset_dir}: no classes.txt (is this a dataset written by histoloop convert?)"
        )
    classes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not classes:
        raise TrainingError(f"{path}: no classes")
    return classes


def dataset_classes(dataset_dir: Path) -> list[str]:
    """The class names a converted dataset declares, whatever its kind: ``classes.txt`` (segment, classify)
    or ``data.yaml``'s ``names`` (a YOLO dataset, detect)."""
    if DatasetLayout(dataset_dir).classes_file.is_file():
        return read_classes(dataset_dir)
    return detect_names(dataset_dir)


def detect_names(dataset_dir: Path) -> list[str]:
    import yaml

    path = DatasetLayout(dataset_dir).data_yaml
    if not path.is_file():
        raise TrainingError(f"{dataset_dir}: no data.yaml (not a YOLO detection dataset)")
    try:
        names = (yaml.safe_load(path.read_text()) or {}).get("names")
    except yaml.YAMLError as exc:
        raise TrainingError(f"{path}: bad YAML: {exc}") from exc
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names, key=int)]
    if not names:
        raise TrainingError(f"{path}: no class names")
    return [str(n) for n in names]


def check_detect(dataset_dir: Path) -> list[str]:
    """Check a YOLO dataset; return its class names."""
    names = detect_names(dataset_dir)
    layout = DatasetLayout(dataset_dir)
    counts = np.zeros(len(names), dtype=int)
    for split in ("train", "val"):
        images = list_images(layout.images(split))
        if not images:
            raise TrainingError(f"{dataset_dir}: no {split} images in images/{split}")
        verify_images(images)
        for img in images:
            label = layout.label(split, img.stem)
            if not label.is_file():
                continue  # an image with no objects
            for n, line in enumerate(label.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    cls = int(parts[0])
                    coords = [float(v) for v in parts[1:5]]
                except ValueError as exc:
                    raise TrainingError(f"{label}:{n}: not a YOLO label line: {line!r}") from exc
                if len(coords) != 4 or not 0 <= cls < len(names):
                    raise TrainingError(f"{label}:{n}: bad YOLO label {line!r} ({len(names)} classes)")
                if split == "train":
                    counts[cls] += 1
    missing = [names[i] for i in np.flatnonzero(counts == 0)]
    if missing:
        raise TrainingError(f"{dataset_dir}: no training examples of class(es) {missing}")
    return names


def valid_areas(dataset_dir: Path) -> dict[str, tuple[int, int]]:
    """stem → (width, height) of the items whose images are padded past their slide's edge (the manifest's
    ``valid_width`` / ``valid_height``, :func:`converters.labelstudio.valid_area`): the part of the image
    that is the slide. Empty when the dataset has no manifest (a folder of images and masks made by hand).
    """
    layout = DatasetLayout(dataset_dir)
    if not layout.manifest.is_file():
        return {}
    try:
        items = Manifest.read(dataset_dir).items
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    out = {}
    for item in items:
        width, height = item.extra.get("valid_width"), item.extra.get("valid_height")
        if width is None and height is None:
            continue
        if not all(v is None or (type(v) is int and v > 0) for v in (width, height)):
            raise TrainingError(
                f"{layout.manifest}: item {item.stem!r}: valid_width / valid_height must be positive integers"
            )
        out[item.stem] = (width or 1 << 30, height or 1 << 30)
    return out


def segment_pairs(dataset_dir: Path, split: str) -> list[tuple[Path, Path]]:
    layout = DatasetLayout(dataset_dir)
    pairs = []
    for img in list_images(layout.images(split)):
        mask = layout.mask(split, img.stem)
        if not mask.is_file():
            raise TrainingError(f"{img}: no mask at {mask}")
        pairs.append((img, mask))
    return pairs


def check_segment(dataset_dir: Path) -> list[str]:
    """Check a mask dataset (every mask readable, the image's size, values within the classes)."""
    classes = read_classes(dataset_dir)
    seen = np.zeros(len(classes) + 1, dtype=bool)
    for split in ("train", "val"):
        pairs = segment_pairs(dataset_dir, split)
        if not pairs:
            raise TrainingError(f"{dataset_dir}: no {split} images in images/{split}")
        for img, mask_path in pairs:
            verify_images([img])
            mask = read_mask(mask_path)
            if mask.max() > len(classes):
                raise TrainingError(f"{mask_path}: value {int(mask.max())} but only {len(classes)} classes")
            if split == "train":
                seen[np.unique(mask)] = True
    missing = [classes[i] for i in np.flatnonzero(~seen[1:])]
    if missing:
        raise TrainingError(f"{dataset_dir}: no training pixels of class(es) {missing}")
    return classes


def classify_items(dataset_dir: Path, split: str, classes: list[str]) -> list[tuple[Path, int]]:
    layout = DatasetLayout(dataset_dir)
    return [
        (p, i) for i, c in enumerate(classes) for p in list_images(layout.class_dir(split, class_folder(c)))
    ]


def check_classify(dataset_dir: Path) -> list[str]:
    """Check class folders: every class has training images, every image decodes."""
    classes = read_classes(dataset_dir)
    for split in ("train", "val"):
        items = classify_items(dataset_dir, split, classes)
        if not items:
            raise TrainingError(f"{dataset_dir}: no {split} images in {split}/<class>/")
        verify_images([p for p, _ in items])
        if split == "train":
            present = {i for _, i in items}
            missing = [c for i, c in enumerate(classes) if i not in present]
            if missing:
                raise TrainingError(
                    f"{dataset_dir}: no training images of class(es) {missing} in train/<class>/"
                )
    return classes
