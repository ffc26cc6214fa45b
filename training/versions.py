"""A version directory as a model: the card's kind row builds the network, the version's weights go into
it, and the row's predictor runs it (:mod:`training.inference`).

>>> import tempfile, numpy as np, timm
>>> from training.artifacts import ModelCard, save_weights
>>> d = Path(tempfile.mkdtemp())
>>> ModelCard(kind="classify", classes=["benign", "malignant"], arch={"backbone": "resnet18"},
...           input_size=32).save(d)
>>> _ = save_weights(timm.create_model("resnet18", pretrained=False, num_classes=2).state_dict(), d)
>>> scores = load_model(d).predict(np.zeros((50, 70, 3), np.uint8))
>>> scores.probs.shape, scores.top[0] in ("benign", "malignant")
((2,), True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.artifacts import ModelCard
from training.inference import Predictor, fitted_model
from training.kinds import spec
from training.runtime import resolve_device


def build_model(card: ModelCard) -> Any:
    """The untrained ``torch.nn.Module`` a card describes (random init; nothing downloaded)."""
    return spec(card.kind).build_model(card)


def load_model(version_dir: Path, device: str = "cpu") -> Predictor:
    """Rebuild the model of a version directory from its card and safetensors weights.

    Raises :class:`~training.artifacts.ArtifactError` when the directory is not a version or the weights
    do not fit the architecture in its card.
    """
    card = ModelCard.load(version_dir)
    device = resolve_device(device)
    row = spec(card.kind)
    return row.predictor(card, fitted_model(version_dir, card, row.build_model), device)
