"""A version nobody trained: random-init weights of the model a card describes, registered like a trained
one. What the tests, the benchmarks and a smoke check of a deployment serve when the model's quality is
not the point (nothing is downloaded).

The output layer's bias steers what such a model says: a large bias makes every box a detection, every
pixel the class, or the last class the classifier's answer (the kind's row says which layers are its head,
:attr:`training.base.KindSpec.head`, and how their bias is set, :attr:`~training.base.KindSpec.head_bias`).

>>> import tempfile
>>> from training.artifacts import ModelCard
>>> from training.registry import Registry
>>> reg = Registry(Path(tempfile.mkdtemp()) / "registry.sqlite")
>>> card = ModelCard(kind="classify", classes=["benign", "malignant"], arch={"backbone": "resnet18"},
...                  input_size=64)
>>> register_untrained(reg, "3", card, head_bias=2.0).label
'classify-v1'
>>> reg.production("3", "classify").status
'production'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.artifacts import ModelCard, save_weights
from training.kinds import spec
from training.registry import ModelVersion, Registry


def untrained_state(
    card: ModelCard, head_bias: float | None = None, seed: int = 0, constant: bool = False
) -> dict[str, Any]:
    """The random-init state dict (torch seed ``seed``) of the model ``card`` describes; with ``head_bias``
    the output layer's bias is set to it: every class logit of a detector or a segmenter, the last class's
    logit of a classifier (the others 0). ``constant``: that layer's weights are zeroed too, so the model
    says exactly its bias whatever the image."""
    import torch

    torch.manual_seed(seed)
    row = spec(card.kind)
    model = row.build_model(card)
    with torch.no_grad():
        for layer in row.head(model):
            if head_bias is not None:
                row.head_bias(layer, head_bias)
            if constant:
                layer.weight.zero_()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def register_untrained(
    registry: Registry,
    project: str,
    card: ModelCard,
    *,
    head_bias: float | None = None,
    state: dict[str, Any] | None = None,
    seed: int = 0,
    constant: bool = False,
    promote: bool = True,
    by: str = "test",
    metrics: dict[str, Any] | None = None,
) -> ModelVersion:
    """Register ``card`` with :func:`untrained_state` weights (or ``state``) for ``project`` through the
    registry's own staging, and promote it unless ``promote`` is false."""
    staging: Path = registry.staging_dir()
    card.save(staging)
    save_weights(state if state is not None else untrained_state(card, head_bias, seed, constant), staging)
    version = registry.register(project, card.kind, staging, metrics=metrics or {"note": "untrained"})
    return registry.promote(version.id, by=by) if promote else version
