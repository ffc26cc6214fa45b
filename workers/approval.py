"""Which annotations count as approved: a documented, per-project policy (``approval`` setting).

- ``submitted`` (default): every submitted annotation that was not cancelled ("skipped"). Drafts are not
  annotations in Label Studio (they live in their own table and send no webhook), so they never count.
  A submitted annotation with an empty result counts too: "no tumour here" is a label.
- ``ground_truth``: only submitted annotations marked as ground truth (the star in Label Studio).
- ``reviewed``: only submitted annotations a reviewer accepted, where the Label Studio edition sends
  reviews (Enterprise: ``review_result``/``reviews`` on the annotation, ``REVIEW_*`` webhooks).

The same rule decides what the export keeps (:func:`converters.labelstudio.select_annotations`), so
what is counted here is what a training run uses.

>>> ann = {"id": 7, "was_cancelled": False, "ground_truth": False, "result": []}
>>> is_approved(ann, "submitted"), is_approved(ann, "ground_truth")
(True, False)
>>> result_kinds([{"type": "rectanglelabels"}, {"type": "choices"}])
('detect', 'classify')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

POLICIES = ("submitted", "ground_truth", "reviewed")

RESULT_KIND = {
    "rectanglelabels": "detect",
    "rectangle": "detect",
    "brushlabels": "segment",
    "brush": "segment",
    "polygonlabels": "segment",
    "polygon": "segment",
    "choices": "classify",
}
KIND_ORDER = ("detect", "segment", "classify")


def is_reviewed(annotation: Mapping[str, Any]) -> bool:
    """True when a reviewer accepted the annotation (Label Studio Enterprise fields)."""
    if str(annotation.get("review_result") or "").lower() in ("accepted", "approved"):
        return True
    if annotation.get("reviewed") is True or annotation.get("is_accepted") is True:
        return True
    reviews = annotation.get("reviews") or []
    return any(isinstance(r, Mapping) and r.get("accepted") is True for r in reviews)


def is_approved(annotation: Mapping[str, Any], policy: str = "submitted") -> bool:
    """Whether ``annotation`` (as Label Studio sends it) counts as approved under ``policy``."""
    if policy not in POLICIES:
        raise ValueError(f"approval policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    if annotation.get("was_cancelled"):
        return False
    if policy == "ground_truth":
        return annotation.get("ground_truth") is True
    if policy == "reviewed":
        return is_reviewed(annotation)
    return True


def result_kinds(result: Iterable[Mapping[str, Any]] | None) -> tuple[str, ...]:
    """The model kinds an annotation's result regions feed, in the order detect, segment, classify."""
    used = {RESULT_KIND.get(str(region.get("type", "")).lower()) for region in result or ()}
    return tuple(k for k in KIND_ORDER if k in used)
