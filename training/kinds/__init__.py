"""The table of kinds: a kind is one row (:class:`training.base.KindSpec`), as in ultralytics' ``task_map``.

Its trainer, model builder, predictor, evaluator, dataset check, default recipe, correction model, slide
reading and untrained head are found here and nowhere else. Each kind is the module of its name in this
package (:mod:`training.kinds.detect`, :mod:`~training.kinds.segment`, :mod:`~training.kinds.classify`),
which defines its row as ``SPEC``; adding a kind is a new module and its name in :data:`kernel.kinds.KINDS`.
A row is imported on first use, so a process that serves only segmentation never imports ultralytics.
The kinds import nothing of each other, nor this table, nor the modules that look a kind up.

>>> spec("detect").default_model, spec("segment").curves
('yolo11n-lite0.yaml', ('dice', 'iou'))
>>> spec("keypoints")
Traceback (most recent call last):
...
ValueError: unknown model kind 'keypoints' (expected one of detect, segment, classify)
"""

from __future__ import annotations

from importlib import import_module

from kernel.kinds import check_kind
from training.base import KindSpec


def spec(kind: str) -> KindSpec:
    """The row of ``kind``; ``ValueError`` for an unknown kind."""
    row: KindSpec = import_module(f"{__name__}.{check_kind(kind)}").SPEC
    return row
