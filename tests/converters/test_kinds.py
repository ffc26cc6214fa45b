"""The dataset kinds as rows (converters/kinds): one row per kind, the converters branch on none, and an
annotation counts for a model kind exactly when that kind's retraining converts it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from waits import LONG

from converters.kinds import dataset_spec, kinds_where
from converters.labelstudio import export_to_dataset
from converters.rle import mask_to_rle
from kernel.kinds import KINDS
from kernel.labelstudio import result_kinds
from kernel.tags import DATASET_KINDS, TAGS, dataset_types

ROOT = Path(__file__).resolve().parents[2]


def test_one_row_per_dataset_kind() -> None:
    for kind in DATASET_KINDS:
        spec = dataset_spec(kind)
        assert spec.kind == kind and spec.result_types == dataset_types(kind)
        assert spec.replays in (None, *KINDS)
        assert (spec.truth is None) == (spec.truth_tag is None)
        assert spec.truth_tag is None or spec.truth_tag in TAGS
    for bad in ("keypoints", "", None, ["detect"]):
        with pytest.raises(ValueError, match="kind must be one of detect, obb, yolo-segment, segment"):
            dataset_spec(bad)  # type: ignore[arg-type]
    assert kinds_where(lambda s: s.yolo) == ("detect", "obb", "yolo-segment")
    assert kinds_where(lambda s: not s.copies_images) == ("segment",)
    assert kinds_where(lambda s: s.replays is not None) == ("detect", "yolo-segment", "segment", "classify")


def test_rows_are_imported_on_first_use() -> None:
    """The converters that look rows up import none while they load (the rows use their helpers)."""
    code = (
        "import sys, converters.kinds, converters.dataset, converters.labelstudio, converters.tiling, "
        "converters.pathology, converters.ground_truth\n"
        "print(sorted(m for m in sys.modules if m.startswith('converters.kinds.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=LONG
    )
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def _kind_branches(tree: ast.AST) -> list[int]:
    """Lines comparing anything with a dataset kind's name (``kind == "detect"``, ``k in ("obb", ...)``)."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        for side in (node.left, *node.comparators):
            values = side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) else [side]
            if any(isinstance(v, ast.Constant) and v.value in DATASET_KINDS for v in values):
                lines.append(node.lineno)
    return lines


def test_the_converters_branch_on_no_dataset_kind() -> None:
    """What differs between dataset kinds is their rows' (converters/kinds/), never a comparison with a
    kind's name in a converter."""
    found = []
    for path in sorted((ROOT / "converters").rglob("*.py")):
        if "kinds" in path.relative_to(ROOT / "converters").parts[:-1]:
            continue
        found += [f"{path.relative_to(ROOT)}:{n}" for n in _kind_branches(ast.parse(path.read_text()))]
    assert not found, "comparisons with a dataset kind's name:\n" + "\n".join(found)


# -- what counts is what trains -----------------------------------------------------------------------
SQUARE = np.zeros((100, 100), bool)
SQUARE[20:60, 30:70] = True
REGION_VALUES = {
    "rectanglelabels": {"x": 10, "y": 20, "width": 30, "height": 40, "rotation": 0},
    "polygonlabels": {"points": [[10, 10], [60, 15], [40, 70]]},
    "brushlabels": {"format": "rle", "rle": mask_to_rle(SQUARE)},
    "choices": {},
}


def _project(tag: str) -> tuple[str, dict]:
    """A label config with one ``tag`` control, and a task whose annotation is one region of it."""
    row = TAGS[tag]
    config = (
        f'<View><Image name="image" value="$image"/><{tag} name="ctl" toName="image">'
        f'<{row.label_element} value="Tumor"/></{tag}></View>'
    )
    region = {
        "id": "r1",
        "from_name": "ctl",
        "to_name": "image",
        "type": row.result_type,
        "original_width": 100,
        "original_height": 100,
        "value": {**REGION_VALUES[row.result_type], row.label_key: ["Tumor"]},
    }
    task = {
        "id": 1,
        "data": {"image": "/data/local-files/?d=TCGA-AA-0001.png"},
        "annotations": [{"id": 7, "result": [region], "was_cancelled": False}],
    }
    return config, task


@pytest.mark.parametrize("tag", [t.tag for t in TAGS.values() if t.trains])
@pytest.mark.parametrize("kind", KINDS)
def test_an_annotation_counts_for_a_kind_iff_its_retraining_trains_on_it(tag, kind, tmp_path) -> None:
    """The webhook counts an annotation for the kinds of :func:`kernel.labelstudio.result_kinds`; the
    retraining of a kind converts the dataset of the same name. They agree, region type by region type
    (a polygon alone counts for detect, and the detect dataset holds its box)."""
    config, task = _project(tag)
    counted = kind in result_kinds(task["annotations"][0]["result"])
    report = export_to_dataset([task], kind, tmp_path / "ds", label_config=config, images=None, split="train")
    trained = report.regions > 0
    assert counted == trained, (tag, kind, report.summary())


def test_a_polygon_trains_the_detector_its_bounding_box(tmp_path) -> None:
    config, task = _project("PolygonLabels")
    assert result_kinds(task["annotations"][0]["result"]) == ("detect", "segment")
    report = export_to_dataset(
        [task], "detect", tmp_path / "ds", label_config=config, split="train", images=None
    )
    lines = (tmp_path / "ds" / "labels" / "train" / "TCGA-AA-0001.txt").read_text().split()
    assert report.regions == 1 and [float(v) for v in lines[1:]] == pytest.approx([0.35, 0.4, 0.5, 0.6])
