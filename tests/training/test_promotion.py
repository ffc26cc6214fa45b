"""The promotion gate (auto_promote never | if_better | always, margin, primary metric per kind)."""

from __future__ import annotations

import pytest

from training.promotion import should_promote


@pytest.mark.parametrize(
    ("policy", "cand", "prod", "has_prod", "margin", "expected"),
    [
        ("if_better", {"mAP50": 0.5}, None, False, 0.0, True),  # first version
        ("if_better", {"mAP50": 0.5}, {"mAP50": 0.4}, True, 0.0, True),
        ("if_better", {"mAP50": 0.5}, {"mAP50": 0.5}, True, 0.0, False),  # a tie does not promote
        ("if_better", {"mAP50": 0.5}, {"mAP50": 0.45}, True, 0.1, False),  # margin
        ("if_better", {"mAP50": 0.5}, None, True, 0.0, True),  # production could not be evaluated
        ("if_better", {"precision": 0.9}, None, False, 0.0, False),  # no primary metric
        ("if_better", {"mAP50": float("nan")}, None, False, 0.0, False),
        ("never", {"mAP50": 0.9}, {"mAP50": 0.1}, True, 0.0, False),
        ("always", {"mAP50": 0.1}, {"mAP50": 0.9}, True, 0.0, True),
    ],
)
def test_gate(policy, cand, prod, has_prod, margin, expected) -> None:
    promote, why = should_promote(policy, "detect", cand, prod, margin=margin, has_production=has_prod)
    assert promote is expected and why


def test_primary_metric_depends_on_kind() -> None:
    assert should_promote("if_better", "classify", {"balanced_accuracy": 0.8}, {"balanced_accuracy": 0.7})[0]
    assert not should_promote("if_better", "segment", {"dice": 0.6}, {"dice": 0.7})[0]
    with pytest.raises(ValueError):
        should_promote("sometimes", "segment", {"dice": 0.6}, None)


def test_by_corrections_refuses_nicer_masks_that_cost_more_work() -> None:
    production = {"dice": 0.70, "corrections_ratio": 0.80}
    nicer_but_costlier = {"dice": 0.75, "corrections_ratio": 0.85}
    assert should_promote("if_better", "segment", nicer_but_costlier, production)[0]  # by the primary metric
    promote, why = should_promote("if_better", "segment", nicer_but_costlier, production, by="corrections")
    assert not promote
    assert "corrections_ratio 0.8500" in why and "production 0.8000" in why and "lower" in why


def test_by_corrections_promotes_less_work_despite_a_lower_primary_metric() -> None:
    production = {"mAP50": 0.60, "corrections_ratio": 0.80}
    less_work = {"mAP50": 0.55, "corrections_ratio": 0.70}
    assert not should_promote("if_better", "detect", less_work, production)[0]
    promote, why = should_promote("if_better", "detect", less_work, production, by="corrections")
    assert promote and "0.7000 < production 0.8000" in why
    # the margin is taken off production's ratio: 0.70 is not below 0.80 - 0.15
    assert not should_promote("if_better", "detect", less_work, production, margin=0.15, by="corrections")[0]


@pytest.mark.parametrize(
    ("cand", "prod", "has_prod", "expected"),
    [
        ({"corrections_ratio": 0.8}, {"corrections_ratio": 0.8}, True, False),  # a tie does not promote
        ({"dice": 0.9}, {"corrections_ratio": 0.8}, True, False),  # the candidate has no ratio
        ({"corrections_ratio": 0.9}, None, False, True),  # first version
        ({"corrections_ratio": 0.9}, None, True, True),  # production could not be evaluated
        ({"corrections_ratio": 0.9}, {"dice": 0.5}, True, True),  # production's metrics lack the ratio
    ],
)
def test_by_corrections_edges(cand, prod, has_prod, expected) -> None:
    got, why = should_promote("if_better", "segment", cand, prod, has_production=has_prod, by="corrections")
    assert got is expected and why


def test_unknown_promotion_metric_is_refused() -> None:
    with pytest.raises(ValueError, match=r"promotion_metric must be primary\|corrections"):
        should_promote("if_better", "segment", {"dice": 0.6}, None, by="dice")
