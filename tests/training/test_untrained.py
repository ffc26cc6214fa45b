"""An untrained version: registered and promoted like a trained one, its head bias steering what it says."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.artifacts import ModelCard
from training.registry import Registry
from training.untrained import register_untrained, untrained_state
from training.versions import load_model

CLASSIFY = ModelCard(
    kind="classify", classes=["benign", "malignant", "dcis"], arch={"backbone": "resnet18"}, input_size=32
)
SEGMENT = ModelCard(
    kind="segment",
    classes=["tumor"],
    input_size=64,
    arch={"arch": "Unet", "encoder": "resnet18", "mode": "binary"},
)


def test_the_head_bias_decides_the_answer(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry.sqlite", tmp_path)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    dcis = register_untrained(reg, "1", CLASSIFY, head_bias=20.0)
    assert load_model(dcis.artifact_dir).predict(image).top[0] == "dcis"
    tissue = register_untrained(reg, "1", SEGMENT, head_bias=20.0)
    assert load_model(tissue.artifact_dir).predict(image).probs.min() > 0.99
    glass = register_untrained(reg, "1", SEGMENT, head_bias=-20.0)
    assert load_model(glass.artifact_dir).predict(image).probs.max() < 0.01


def test_registered_promoted_or_not_and_reproducible(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry.sqlite", tmp_path)
    first = register_untrained(reg, "2", CLASSIFY, by="smoke check")
    assert reg.production("2", "classify").id == first.id and first.metrics == {"note": "untrained"}
    candidate = register_untrained(reg, "2", CLASSIFY, promote=False, metrics={"note": "x"})
    assert candidate.status == "candidate" and reg.production("2", "classify").id == first.id
    a, b, c = untrained_state(CLASSIFY), untrained_state(CLASSIFY), untrained_state(CLASSIFY, seed=1)
    assert all((a[k] == b[k]).all() for k in a) and any((a[k] != c[k]).any() for k in a)
    assert not list((tmp_path / "staging").iterdir())  # each staging directory moved into the store


def test_a_constant_model_says_its_bias_whatever_the_image() -> None:
    import torch

    from training.versions import build_model

    model = build_model(SEGMENT)
    model.load_state_dict(untrained_state(SEGMENT, head_bias=3.0, constant=True))
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64) * 5)
    assert torch.allclose(out, torch.full_like(out, 3.0))
    random_head = untrained_state(SEGMENT, head_bias=3.0)
    assert random_head["segmentation_head.0.weight"].abs().sum() > 0
