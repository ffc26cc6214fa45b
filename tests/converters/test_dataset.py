"""The dataset writer: atomic publish, manifest, data.yaml."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from converters.dataset import DatasetWriter, safe_stem


def test_publish_replaces_an_old_dataset_atomically(tmp_path):
    out = tmp_path / "ds"
    for n, split in ((1, "train"), (2, "val")):
        w = DatasetWriter(out, "detect", ["tumor", "stroma"])
        w.write_labels(split, f"item{n}", ["0 0.5 0.5 0.1 0.1"])
        w.add_item(f"item{n}", split, n, [10 * n], f"P{n}")
        assert not (out / "labels" / split / f"item{n}.txt").exists()  # nothing visible before publish
        w.publish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temp or old folders left
    assert (
        not (out / "labels" / "train" / "item1.txt").exists()
        and (out / "labels" / "val" / "item2.txt").is_file()
    )
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert (
        data["names"] == {0: "tumor", 1: "stroma"}
        and data["train"] == "images/train"
        and data["path"] == str(out)
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["items"] == [
        {"stem": "item2", "split": "val", "task_id": 2, "annotation_ids": [20], "group": "P2"}
    ]
    assert len(manifest["fingerprint"]) == 64


def test_abandon_leaves_nothing_and_masks_are_class_indices(tmp_path):
    w = DatasetWriter(tmp_path / "seg", "segment", ["tumor"])
    w.write_mask(
        "train", "a", np.array([[0, 1], [1, 0]], np.uint8), {"tumor": np.array([[0, 1], [1, 0]], bool)}
    )
    w.abandon()
    assert list(tmp_path.iterdir()) == []
    w = DatasetWriter(tmp_path / "seg", "segment", ["tumor"])
    w.add_item("a", "train")
    with pytest.raises(ValueError, match="array is needed"):
        w.write_image("train", "a")
    w.publish()
    assert (tmp_path / "seg" / "classes.txt").read_text() == "tumor\n"


def test_safe_stems():
    assert safe_stem("a b/c?.png") == "a_b_c_.png"
    assert safe_stem("../..") == "item"


def test_unique_stems(tmp_path):
    w = DatasetWriter(tmp_path / "d", "detect", ["a"])
    assert [w.unique_stem("x"), w.unique_stem("x"), w.unique_stem("x", "t9"), w.unique_stem("x")] == [
        "x",
        "x-2",
        "x-t9",
        "x-3",
    ]
    w.abandon()


def test_class_folders_keep_the_class_name(tmp_path):
    from converters.dataset import class_folder

    assert class_folder("invasive ductal") == "invasive ductal"  # as in classes.txt
    assert class_folder("a/b") == "a_b" and class_folder("..") == "item"
    w = DatasetWriter(tmp_path / "c", "classify", ["invasive ductal"])
    path = w.image_path("train", "x", ".png", "invasive ductal")
    assert path.parent.name == "invasive ductal"
    w.abandon()
