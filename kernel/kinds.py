"""The model kinds histoloop trains and serves, and the metric that ranks the versions of each.

A kind is one row everywhere: :mod:`training.kinds` finds its trainer, model, predictor, evaluator and
dataset check; :mod:`kernel.tags` says which Label Studio controls it feeds and learns from.

>>> KINDS, PRIMARY_METRIC["segment"]
(('detect', 'segment', 'classify'), 'dice')
>>> in_kind_order({"classify", "detect"})
('detect', 'classify')
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal, TypeGuard

Kind = Literal["detect", "segment", "classify"]
KINDS: Final[tuple[Kind, ...]] = ("detect", "segment", "classify")
"""Every kind, in the fixed order ``model_version`` strings, tables and loops use."""

PRIMARY_METRIC: Final[dict[Kind, str]] = {
    "detect": "mAP50",
    "segment": "dice",
    "classify": "balanced_accuracy",
}
"""The held-out metric that decides promotion by default (higher is better)."""

CORRECTIONS_RATIO: Final = "corrections_ratio"
"""The held-out metric of every kind that counts a specialist's work: the corrections made to a version's
suggestions at its own served threshold, over the corrections of drawing from scratch (lower is better;
1.0 saves nothing). What ``promotion_metric = "corrections"`` promotes by."""


def is_kind(value: object) -> TypeGuard[Kind]:
    return value in KINDS


def check_kind(value: object) -> Kind:
    """``value`` as a :data:`Kind`; ``ValueError`` naming the kinds otherwise."""
    if not is_kind(value):
        raise ValueError(f"unknown model kind {value!r} (expected one of {', '.join(KINDS)})")
    return value


def in_kind_order(kinds: Iterable[str | None]) -> tuple[Kind, ...]:
    """The kinds among ``kinds``, once each, in :data:`KINDS` order."""
    present = set(kinds)
    return tuple(k for k in KINDS if k in present)
