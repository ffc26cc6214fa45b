"""The tag table (kernel/tags.py): every tag, result type and kind view derives from its rows, and a
region feeds exactly the retrainings whose datasets read it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kernel.kinds import KINDS
from kernel.labelstudio import LabelConfig, read_label_config, result_kinds
from kernel.tags import (
    CONTROL_KIND,
    DATASET_KINDS,
    LABEL_KEYS,
    TAGS,
    dataset_tags,
    dataset_types,
    fed_tags,
    learned_by,
    predicted_by,
    tag_spec,
    type_spec,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("kernel", "converters", "training", "workers", "ml_backend", "histoloop")


def test_every_view_derives_from_the_rows() -> None:
    rows = list(TAGS.values())
    assert all(TAGS[r.tag] is r and tag_spec(r.tag) is r for r in rows)
    assert dict(CONTROL_KIND) == {r.tag: r.kind for r in rows if r.kind is not None}
    assert set(LABEL_KEYS) == {r.label_key for r in rows}
    for r in rows:
        for rtype in r.result_types:
            assert type_spec(rtype) is r and predicted_by(rtype) == r.kind
        assert learned_by(r.result_type) == tuple(k for k in KINDS if k in r.trains)
        if r.plain_type is not None:  # a plain tool's region has no label: no class to learn
            assert learned_by(r.plain_type) == ()
    for kind in DATASET_KINDS:
        assert dataset_tags(kind) == tuple(r.tag for r in rows if kind in r.trains)
        assert dataset_types(kind) == tuple(r.result_type for r in rows if kind in r.trains)
        assert dataset_tags(kind), f"no tag trains a {kind} dataset"
    assert type_spec("textarea") is None and predicted_by("textarea") is None and learned_by("textarea") == ()


def test_each_model_kind_is_fed_by_a_tag_that_trains_its_own_dataset() -> None:
    for kind in KINDS:
        fed = [r for r in TAGS.values() if r.kind == kind]
        assert fed and fed_tags(kind) == tuple(r.tag for r in fed)
        assert all(kind in r.trains for r in fed), kind


def test_a_polygon_feeds_the_detector_and_the_segmenter() -> None:
    """What triggers a retraining is what the retraining trains on: the detect dataset reads polygons
    (their bounding boxes), so a polygon counts for detect as well as for segment."""
    assert "detect" in TAGS["PolygonLabels"].trains and "polygonlabels" in dataset_types("detect")
    assert result_kinds([{"type": "polygonlabels"}]) == ("detect", "segment")
    assert result_kinds([{"type": "PolygonLabels"}]) == ("detect", "segment")
    assert result_kinds([{"type": "brushlabels"}]) == ("segment",)
    assert result_kinds([{"type": "rectanglelabels"}, {"type": "choices"}]) == ("detect", "classify")
    assert result_kinds([{"type": "rectangle"}, {"type": "keypointlabels"}]) == ()
    assert result_kinds("not a list") == () and result_kinds([["not", "a", "region"]]) == ()


def test_a_label_config_reads_its_classes_through_the_table() -> None:
    config = read_label_config(
        '<View><Image name="image" value="$image"/>'
        '<RectangleLabels name="box" toName="image"><Label value="Tumor"/></RectangleLabels>'
        '<PolygonLabels name="poly" toName="image"><Label value="Stroma"/><Label value="Tumor"/></PolygonLabels>'
        '<BrushLabels name="brush" toName="image"><Label value="Necrosis"/></BrushLabels>'
        '<Choices name="dx" toName="image"><Choice value="benign"/></Choices>'
        '<KeyPointLabels name="kp" toName="image" smart="true"><Label value="Tumor"/></KeyPointLabels></View>'
    )
    assert config.kinds == ("detect", "segment", "classify")
    assert config.classes("detect") == ["Tumor", "Stroma"]
    assert config.classes("segment") == ["Stroma", "Tumor", "Necrosis"]
    assert config.classes("classify") == ["benign"]
    pairs = config.accepted_pairs()
    assert pairs is not None and ("poly", "polygonlabels") in pairs and ("box", "polygonlabels") not in pairs
    assert config.skipped == ()  # the smart KeyPointLabels is a prompt: nothing to skip
    assert [c.name for c in config.controls if c.prompt_only] == ["kp"]
    assert config.why_not_a_class("benign", "detect") == (
        "label 'benign' is a label of 'dx' (Choices), not of a RectangleLabels or PolygonLabels tag"
    )
    assert read_label_config(config_xml := '<View><Image name="i" value="$i"/></View>') is read_label_config(
        config_xml
    )  # the one cache of parsed configs


def test_an_inferred_config_learns_the_labels_the_results_use() -> None:
    results = [
        [{"type": "polygonlabels", "from_name": "p", "value": {"polygonlabels": ["b", "a"]}}],
        [{"type": "BrushLabels", "from_name": "m", "value": {"brushlabels": ["c"]}}, "junk"],
        [{"type": "rectangle", "from_name": "r", "value": {"rectangle": ["d"]}}],
        None,
    ]
    config = LabelConfig.infer("segment", results)
    assert config.inferred and config.accepted_pairs() is None
    assert config.classes("segment") == ["b", "a", "c"]
    assert LabelConfig.infer("classify", results).controls == ()


def _second_homes(tree: ast.AST) -> list[str]:
    """Tuples/lists/sets of the model kinds' names, and dicts keyed by control tags, in a module's code."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            names = {e.value for e in node.elts if isinstance(e, ast.Constant)}
            if len(node.elts) >= 2 and names <= set(KINDS) and len(names) == len(node.elts):
                found.append(f"line {node.lineno}: a collection of model kinds (use kernel.kinds.KINDS)")
        elif isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if keys & set(TAGS):
                found.append(f"line {node.lineno}: a table keyed by control tags (derive it from TAGS)")
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_kinds_and_tags_have_one_home(package: str) -> None:
    """The model kinds are kernel.kinds.KINDS, the tags' views kernel.tags': no second tuple or table."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ("kernel/kinds.py", "kernel/tags.py"):
            continue
        found += [f"{rel} {what}" for what in _second_homes(ast.parse(path.read_text()))]
    assert not found, "\n".join(found)
