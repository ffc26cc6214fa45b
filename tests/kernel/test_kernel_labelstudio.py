"""kernel/labelstudio.py: the approval policy (submitted / ground_truth / reviewed) and the kinds a result feeds."""

from __future__ import annotations

import pytest

from kernel.labelstudio import is_approved, result_kinds

SUBMITTED = {"id": 1, "was_cancelled": False, "ground_truth": False, "result": [{"type": "rectanglelabels"}]}


def test_submitted_counts_unless_cancelled() -> None:
    assert is_approved(SUBMITTED, "submitted")
    assert not is_approved({**SUBMITTED, "was_cancelled": True}, "submitted")
    assert is_approved({**SUBMITTED, "result": []}, "submitted")  # "nothing here" is a label


def test_ground_truth_policy_needs_the_star() -> None:
    assert not is_approved(SUBMITTED, "ground_truth")
    assert is_approved({**SUBMITTED, "ground_truth": True}, "ground_truth")
    assert not is_approved({**SUBMITTED, "ground_truth": True, "was_cancelled": True}, "ground_truth")


def test_reviewed_policy_reads_enterprise_review_fields() -> None:
    assert not is_approved(SUBMITTED, "reviewed")
    assert is_approved({**SUBMITTED, "review_result": "accepted"}, "reviewed")
    assert is_approved({**SUBMITTED, "reviews": [{"accepted": False}, {"accepted": True}]}, "reviewed")
    assert not is_approved({**SUBMITTED, "reviews": [{"accepted": False}]}, "reviewed")


def test_unknown_policy_is_an_error() -> None:
    with pytest.raises(ValueError, match="approval policy"):
        is_approved(SUBMITTED, "maybe")


def test_result_kinds_follow_the_region_types() -> None:
    regions = [{"type": "choices"}, {"type": "brushlabels"}, {"type": "polygonlabels"}, {"type": "textarea"}]
    assert result_kinds(regions) == ("detect", "segment", "classify")  # a polygon's box trains detect too
    assert result_kinds([]) == ()
