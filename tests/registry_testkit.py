"""Registered versions that hold only a model card (no weights), for tests of the registry's bookkeeping,
promotion and failure paths, where nothing loads the model."""

from __future__ import annotations

from typing import Any

from training.artifacts import ModelCard
from training.registry import ModelVersion, Registry

CLASSIFY_CARD = ModelCard(
    kind="classify", classes=["benign", "malignant"], arch={"backbone": "resnet18"}, input_size=32
)


def card_only_version(
    reg: Registry, project: str = "4", card: ModelCard = CLASSIFY_CARD, **register: Any
) -> ModelVersion:
    """Register a candidate of ``card.kind`` whose directory holds ``card`` alone; ``register``: the
    keyword arguments of :meth:`Registry.register` (metrics, lineage, ...)."""
    staging = reg.staging_dir()
    card.save(staging)
    return reg.register(project, card.kind, staging, **register)
