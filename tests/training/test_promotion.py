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
