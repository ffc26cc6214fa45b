"""Held-out evaluation of a version directory on a dataset split — one code path for candidates and
production, so both are measured on the same images the same way. Each kind's own evaluator (its row in
:mod:`training.kinds`) does the measuring:

- detect: ultralytics' DetectionValidator (P, R, F1, mAP50, mAP50-95, per-class AP50; PR curve, confusion matrix);
- segment: every image of the split predicted whole (tiled), then :func:`training.metrics.segmentation_metrics`;
- classify: every image predicted, then :func:`training.metrics.classification_metrics` (plots too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.artifacts import ModelCard
from training.kinds import spec
from training.runtime import resolve_device


def evaluate(
    version_dir: Path,
    dataset_dir: Path,
    split: str = "val",
    device: str = "auto",
    plots_dir: Path | None = None,
) -> dict[str, Any]:
    """Held-out metrics of a version on a dataset split: the same code for a candidate and production.

    ``plots_dir``: where to write the PNG plots (PR curve, confusion matrix); none when None.
    """
    card = ModelCard.load(version_dir)
    metrics = spec(card.kind).evaluate(
        card, Path(version_dir), Path(dataset_dir), split, resolve_device(device), plots_dir
    )
    metrics["split"] = split
    return metrics
