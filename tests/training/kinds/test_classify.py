"""The timm classifier, for real: tiny trainings on generated benign/malignant tiles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from training.base import Cancelled, Progress, TrainConfig, TrainingError
from training.inference import ClassScores
from training.trainer import get_trainer
from training.versions import load_model

TINY = {"epochs": 2, "batch": 4, "imgsz": 32, "model": "resnet18", "seed": 0}


@pytest.fixture(scope="module")
def classify_version(classify_data: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("classify-version")
    events: list[Progress] = []
    result = get_trainer("classify").train(classify_data, TrainConfig(**TINY), out, progress=events.append)
    return out, result, events


def test_trains_a_complete_version(classify_version) -> None:
    out, result, events = classify_version
    for name in (
        "model.json",
        "weights.safetensors",
        "metrics.json",
        "training_curves.png",
        "confusion_matrix.png",
    ):
        assert (out / name).is_file(), name
    m = result.metrics
    assert result.card.classes == ["benign", "malignant"] and result.card.arch == {"backbone": "resnet18"}
    for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["roc_auc"] is None or 0.0 <= m["roc_auc"] <= 1.0
    assert np.array(m["confusion_matrix"]).sum() == 6 == m["n_images"]
    assert m["balanced_accuracy"] == max(row["balanced_accuracy"] for row in result.history)  # best kept
    # one choice changed per wrong top class, one chosen per image from scratch
    assert m["corrections_ratio"] == pytest.approx(1 - m["accuracy"], abs=1e-3)
    assert json.loads((out / "metrics.json").read_text())["confusion_matrix"] == m["confusion_matrix"]
    assert [e.epoch for e in events if e.stage == "val"] == [1, 2]


def test_version_predicts(classify_version) -> None:
    out, _, _ = classify_version
    scores = load_model(out).predict(np.full((90, 70, 3), 220, np.uint8))
    assert isinstance(scores, ClassScores) and scores.probs.shape == (2,)


def test_balanced_sampler_on_imbalanced_classes(classify_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "imbalanced"
    shutil.copytree(classify_data, data)
    for p in sorted((data / "train" / "malignant").iterdir())[1:]:
        p.unlink()  # one malignant training image left
    cfg = TrainConfig(**{**TINY, "epochs": 1}, extra={"balance": "sampler"})
    result = get_trainer("classify").train(data, cfg, tmp_path / "out")
    assert result.metrics["n_images"] == 6


def test_cancel_propagates(classify_data: Path, tmp_path: Path) -> None:
    def cancel(p: Progress) -> None:
        raise Cancelled("admin cancelled")

    with pytest.raises(Cancelled, match="admin"):
        get_trainer("classify").train(classify_data, TrainConfig(**TINY), tmp_path / "out", progress=cancel)
    assert not (tmp_path / "out" / "model.json").exists()


def test_fine_tune_with_new_classes_and_wrong_backbone(
    classify_version, classify_data: Path, tmp_path: Path
) -> None:
    out, _, _ = classify_version
    data = tmp_path / "three"
    shutil.copytree(classify_data, data)
    for split in ("train", "val"):
        shutil.copytree(data / split / "benign", data / split / "normal")
    (data / "classes.txt").write_text("normal\nbenign\nmalignant\n")
    cfg = TrainConfig(**{**TINY, "epochs": 1}, weights=out)  # only the head changes: 2 -> 3 classes
    result = get_trainer("classify").train(data, cfg, tmp_path / "ft")
    assert result.card.classes == ["normal", "benign", "malignant"]
    with pytest.raises(TrainingError, match="wrong architecture"):
        get_trainer("classify").train(
            classify_data, TrainConfig(**{**TINY, "model": "resnet34"}, weights=out), tmp_path / "x"
        )
