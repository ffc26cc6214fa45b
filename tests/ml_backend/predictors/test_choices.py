"""Choices from classifier output: the most probable class the control offers, with its probability."""

from __future__ import annotations

import numpy as np

from ml_backend.labelconfig import ControlSpec
from ml_backend.labels import LabelMapper
from ml_backend.predictors.choices import ChoicesPredictor
from training.inference import ClassScores

CONTROL = ControlSpec("Choices", "classify", "dx", "image", "image", ("Benign", "Malignant"))


def test_top_class_as_a_choice() -> None:
    scores = ClassScores(np.array([0.3, 0.7], np.float32), ["benign", "malignant"])
    (result,) = ChoicesPredictor(CONTROL, LabelMapper(CONTROL.labels), 0.25).results(scores, 64, 64)
    assert result["type"] == "choices" and result["from_name"] == "dx" and result["to_name"] == "image"
    assert result["value"]["choices"] == ["Malignant"] and np.isclose(result["score"], 0.7)


def test_classes_without_a_choice_are_ignored_and_min_score_applies() -> None:
    scores = ClassScores(np.array([0.6, 0.3, 0.1], np.float32), ["normal", "benign", "malignant"])
    (result,) = ChoicesPredictor(CONTROL, LabelMapper(CONTROL.labels), 0.0).results(scores, 64, 64)
    assert result["value"]["choices"] == ["Benign"]
    assert ChoicesPredictor(CONTROL, LabelMapper(CONTROL.labels), 0.5).results(scores, 64, 64) == []
