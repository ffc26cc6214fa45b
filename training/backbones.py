"""timm backbones inside ultralytics models: a detector's features can start from pretrained weights.

An ultralytics model YAML names its layers by class; :class:`TimmBackbone` is one more such class, a timm
model's feature pyramid (``features_only``) as layer 0, whose outputs the YAML picks with ultralytics' own
``Index`` rows. :func:`register` makes the name known to ultralytics' YAML parser; the YAMLs histoloop ships
(``training/models``) are found by :func:`model_yaml`. The packaged one, ``yolo11n-lite0.yaml``, is YOLO11n's
neck and head on EfficientNet-Lite0's P3/P4/P5 features (strides 8, 16, 32; 40, 112 and 320 channels).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

MODELS = Path(__file__).parent / "models"
"""The model YAMLs histoloop ships."""


class TimmBackbone(nn.Module):
    """The feature maps of a timm model at ``out_indices`` (a list, for ultralytics' ``Index`` rows).

    ultralytics feeds RGB scaled to [0, 1]; the body sees it normalised by the mean and std its pretrained
    weights expect (buffers, not parameters: they are not trained and not saved).

    >>> body = TimmBackbone("tf_efficientnet_lite0")
    >>> [tuple(f.shape) for f in body(torch.zeros(1, 3, 64, 64))]
    [(1, 40, 8, 8), (1, 112, 4, 4), (1, 320, 2, 2)]
    """

    def __init__(self, name: str, out_indices: Sequence[int] = (2, 3, 4)) -> None:
        import timm

        from training.pretrained import normalisation

        super().__init__()
        self.name = name
        self.body = timm.create_model(
            name, pretrained=False, features_only=True, out_indices=tuple(out_indices)
        )
        mean, std = normalisation(name)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    mean: torch.Tensor
    std: torch.Tensor

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body((x - self.mean.to(x.dtype)) / self.std.to(x.dtype)))


def register() -> None:
    """Make :class:`TimmBackbone` a layer name that ultralytics' YAML parser knows (it looks layer names
    up in the namespace of ``ultralytics.nn.tasks``); ultralytics is imported offline."""
    from training.offline import ultralytics

    ultralytics()
    from ultralytics.nn import tasks

    tasks.TimmBackbone = TimmBackbone  # type: ignore[attr-defined]


def model_yaml(name: str) -> str:
    """The path of a YAML histoloop ships, else ``name`` itself (an ultralytics YAML or the user's file).

    >>> Path(model_yaml("yolo11n-lite0.yaml")).is_file(), model_yaml("yolo11n.yaml")
    (True, 'yolo11n.yaml')
    """
    shipped = MODELS / Path(name).name
    return str(shipped) if Path(name).name == name and shipped.is_file() else name


def backbone_of(model: Any) -> TimmBackbone | None:
    """The timm backbone of an ultralytics model (its first layer), None for YOLO's own backbones."""
    layers = getattr(model, "model", None)
    first = layers[0] if isinstance(layers, nn.Sequential) and len(layers) else None
    return first if isinstance(first, TimmBackbone) else None
