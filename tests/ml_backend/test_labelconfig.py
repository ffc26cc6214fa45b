"""Label configs parsed with label_studio_sdk's LabelInterface into the controls the backend fills."""

from __future__ import annotations

import logging

import pytest
from backend_testkit import FULL_CONFIG, observed_predict_body

from ml_backend.labelconfig import LabelConfigError, parse_label_config


def test_the_observed_config() -> None:
    plan = parse_label_config(observed_predict_body()["label_config"])
    assert [(c.tag, c.kind, c.from_name, c.to_name, c.data_key) for c in plan.controls] == [
        ("RectangleLabels", "detect", "label", "image", "image")
    ]


def test_every_supported_control_and_the_kinds_in_order() -> None:
    plan = parse_label_config(FULL_CONFIG)
    assert [c.tag for c in plan.controls] == ["RectangleLabels", "BrushLabels", "PolygonLabels", "Choices"]
    assert plan.kinds == ("detect", "segment", "classify")
    assert plan.controls[3].labels == ("benign", "malignant")


def test_unsupported_controls_are_skipped_with_the_reason() -> None:
    config = (
        '<View><Image name="slide" value="$url"/><Text name="note" value="$text"/>'
        '<KeyPointLabels name="kp" toName="slide"><Label value="Mitosis"/></KeyPointLabels>'
        '<Choices name="sentiment" toName="note"><Choice value="a"/></Choices>'
        '<BrushLabels name="mask" toName="slide"><Label value="Tumor"/></BrushLabels></View>'
    )
    plan = parse_label_config(config)
    assert [(c.from_name, c.data_key) for c in plan.controls] == [("mask", "url")]
    assert any("kp" in s for s in plan.skipped) and any("sentiment" in s for s in plan.skipped)


@pytest.mark.parametrize("config", ["", "<View><Image", "not xml at all"])
def test_a_broken_config_raises(config: str) -> None:
    with pytest.raises(LabelConfigError):
        parse_label_config(config)


def test_every_tag_a_model_feeds_has_its_predictor_of_that_kind() -> None:
    from kernel.tags import CONTROL_KIND
    from ml_backend.predictors import PREDICTORS, ControlPredictor

    assert set(PREDICTORS) == set(CONTROL_KIND)
    assert {tag: p.kind for tag, p in PREDICTORS.items()} == dict(CONTROL_KIND)
    with pytest.raises(TypeError, match="no model kind feeds <KeyPointLabels>"):
        type("KeyPointPredictor", (ControlPredictor,), {"tag": "KeyPointLabels"})


def test_the_plan_is_derived_from_the_one_cached_parse() -> None:
    from kernel.labelstudio import read_label_config

    plan = parse_label_config(FULL_CONFIG)
    assert plan == parse_label_config(FULL_CONFIG)
    assert plan.skipped == read_label_config(FULL_CONFIG).skipped
    assert not hasattr(parse_label_config, "cache_info")


SMART_CONFIG = (  # the README's smart-tool config: a click and a box that only prompt, a brush that answers
    '<View><Image name="image" value="$image" zoom="true"/>'
    '<BrushLabels name="tumor_mask" toName="image"><Label value="{label}"/></BrushLabels>'
    '<KeyPointLabels name="click" toName="image" smart="true" smartOnly="true">'
    '<Label value="{label}" smart="true"/></KeyPointLabels>'
    '<RectangleLabels name="box" toName="image" smart="true" smartOnly="true">'
    '<Label value="{label}" smart="true"/></RectangleLabels></View>'
)


def test_smart_tools_that_only_prompt_feed_no_model_and_are_not_skipped() -> None:
    from kernel.labelstudio import read_label_config

    plan = parse_label_config(SMART_CONFIG.format(label="Tumor"))
    assert [c.from_name for c in plan.controls] == ["tumor_mask"] and plan.kinds == ("segment",)
    assert plan.skipped == ()
    config = read_label_config(SMART_CONFIG.format(label="Tumor"))
    assert config.classes("detect") == [] and ("box", "rectanglelabels") not in (
        config.accepted_pairs() or ()
    )
    # a box that is also a plain tool (smart, not smartOnly) still feeds the detector; a plain keypoint is skipped
    mixed = parse_label_config(
        SMART_CONFIG.format(label="Tumor").replace(' smartOnly="true"', "").replace(' smart="true"', "", 2)
    )
    assert mixed.kinds == ("detect", "segment") and mixed.skipped == (
        "click: no predictor for <KeyPointLabels>",
    )


def test_setup_with_prompt_only_smart_tools_logs_no_warning(make_settings, serve, caplog) -> None:
    live = serve(make_settings())
    caplog.set_level(logging.WARNING)
    # the parse is cached per config: labels no other test uses make each config new here
    live.setup(SMART_CONFIG.format(label="Warned").replace(' smart="true" smartOnly="true"', "", 1))
    assert any("skipping control click" in r.getMessage() for r in caplog.records)  # the check can fail
    caplog.clear()
    live.setup(SMART_CONFIG.format(label="Quiet"))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_health_is_up_for_a_prompt_only_box(make_settings, serve) -> None:
    from backend_testkit import add_version

    settings = make_settings()
    live = serve(settings)
    live.setup(SMART_CONFIG.format(label="Tumor"))
    health = live.session.get(f"{live.url}/health", params={"project": "4"}, timeout=5).json()
    assert health["status"] == "UP"
    assert health["projects"]["4"]["without_model"] == {"segment": "no production version"}  # no detect
    add_version(settings, "4", "segment")
    health = live.session.get(f"{live.url}/health", params={"project": "4"}, timeout=5).json()
    assert health["status"] == "UP" and health["projects"]["4"]["without_model"] == {}
