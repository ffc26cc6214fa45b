"""What every written dataset must satisfy, whatever went in: the checks the bad-input tests share.

:func:`assert_clean_dataset` reads a dataset the way a trainer would and fails on: a label line that is not
``class v1 v2 ...`` with an integer class in range and finite coordinates in [0, 1] (4 values for detect,
8 for OBB, an even number >= 6 for yolo-segment); an image that does not decode completely; a mask that does
not decode, is not the image's size or holds a class index out of range; a manifest item without its files;
a file outside the dataset folder's layout.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from converters.layout import SPLITS, DatasetLayout

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def decode(path: Path) -> np.ndarray:
    """The image's pixels; raises when it does not decode completely."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    with Image.open(path) as im:
        im.load()
        return np.asarray(im)


def check_label_file(path: Path, kind: str, n_classes: int) -> int:
    """The number of lines; asserts each is a valid, finite, in-range YOLO line of ``kind``."""
    text = path.read_bytes().decode("utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        parts = ln.split()
        assert parts[0].isdigit() and int(parts[0]) < n_classes, f"{path}: bad class in {ln!r}"
        vals = [float(v) for v in parts[1:]]
        assert all(math.isfinite(v) for v in vals), f"{path}: not finite: {ln!r}"
        assert all(0.0 <= v <= 1.0 for v in vals), f"{path}: out of [0, 1]: {ln!r}"
        if kind == "detect":
            assert len(vals) == 4 and vals[2] > 0 and vals[3] > 0, f"{path}: {ln!r}"
            assert vals[0] - vals[2] / 2 >= -1e-6 and vals[0] + vals[2] / 2 <= 1 + 1e-6, f"{path}: {ln!r}"
            assert vals[1] - vals[3] / 2 >= -1e-6 and vals[1] + vals[3] / 2 <= 1 + 1e-6, f"{path}: {ln!r}"
        else:
            assert len(vals) == 8 if kind == "obb" else len(vals) >= 6 and len(vals) % 2 == 0, (
                f"{path}: {ln!r}"
            )
            xs, ys = vals[0::2], vals[1::2]
            assert max(xs) > min(xs) and max(ys) > min(ys), f"{path}: a line or a point: {ln!r}"
    return len(lines)


def assert_clean_dataset(root: Path, images: int | None = None) -> None:
    """Assert that the dataset at ``root`` (if one was written) is what a trainer can read, completely.

    ``images``: the number of items converted, each with its image (None: any).
    """
    root = Path(root)
    if not root.exists():
        assert not images, f"{root}: no dataset, expected {images} images"
        return
    manifest = json.loads((root / "manifest.json").read_text())
    kind, classes = manifest["kind"], manifest["classes"]
    layout = DatasetLayout(root)
    image_roots = [root / s for s in SPLITS] if kind == "classify" else [root / "images"]
    found_images = [p for r in image_roots for p in r.rglob("*") if p.is_file()]
    assert all(p.suffix.lower() in IMAGE_SUFFIXES for p in found_images), found_images
    sizes = {}
    for p in found_images:
        arr = decode(p)
        assert arr.ndim in (2, 3) and arr.shape[0] > 0 and arr.shape[1] > 0, p
        sizes[(p.parent.name, p.stem)] = arr.shape[:2]
    if images is not None:  # one image per item; an item copied into val (a split balance) has its own
        originals = [i for i in manifest["items"] if not i.get("copy_of")]
        assert len(originals) == images, f"{root}: {len(originals)} items, expected {images}"
        assert len(found_images) == len(manifest["items"]), f"{root}: {len(found_images)} images"
    for p in root.rglob("*.txt"):
        if p.name == "classes.txt":
            continue
        assert p.is_relative_to(root / "labels"), f"{p}: a label file outside labels/"
        check_label_file(p, kind, len(classes))
    for item in manifest["items"]:
        stem, split = item["stem"], item["split"]
        assert split in SPLITS and "/" not in stem, item
        if kind in ("detect", "obb", "yolo-segment"):
            assert layout.label(split, stem).is_file(), f"{root}: no label file for {item}"
        if kind == "segment":
            mask = decode(layout.mask(split, stem))
            assert mask.ndim == 2 and int(mask.max(initial=0)) <= len(classes), item
            if (split, stem) in sizes:
                assert mask.shape == sizes[(split, stem)], f"{item}: mask {mask.shape} vs image"
    for p in root.rglob("*"):
        assert p.resolve().is_relative_to(root.resolve()), p
