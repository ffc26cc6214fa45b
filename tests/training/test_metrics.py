"""Metric functions on cases with known answers: perfect = 1, disjoint = 0, and hand-computed ones."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import classification_metrics, f1, segmentation_metrics

T = np.array([[0, 1, 1], [0, 1, 1], [0, 0, 0]])


def test_segmentation_perfect_and_disjoint() -> None:
    perfect = segmentation_metrics([T], [T], ["tumor"])
    assert perfect["dice"] == perfect["iou"] == perfect["pixel_accuracy"] == 1.0
    disjoint = segmentation_metrics([1 - T], [T], ["tumor"])
    assert disjoint["dice"] == disjoint["iou"] == disjoint["pixel_accuracy"] == 0.0


def test_segmentation_hand_computed() -> None:
    pred = np.array([[0, 1, 1], [0, 0, 0], [0, 0, 1]])  # tp 2, fp 1, fn 2
    m = segmentation_metrics([pred], [T], ["tumor"])
    assert m["dice"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2), abs=1e-4)  # 4/7
    assert m["iou"] == pytest.approx(2 / 5, abs=1e-4)
    assert m["pixel_accuracy"] == pytest.approx(6 / 9, abs=1e-4)


def test_segmentation_overall_pools_pixels_and_per_image_averages() -> None:
    empty = np.zeros((3, 3), int)
    # image 1 perfect (dice 1); image 2: nothing to find, one false positive pixel (dice 0)
    fp = empty.copy()
    fp[0, 0] = 1
    m = segmentation_metrics([T, fp], [T, empty], ["tumor"])
    assert m["per_image_dice"] == [1.0, 0.0]
    assert m["dice_per_image"] == 0.5
    assert m["dice"] == pytest.approx(2 * 4 / (2 * 4 + 1), abs=1e-4)  # pooled: tp 4, fp 1, fn 0
    both_empty = segmentation_metrics([empty], [empty], ["tumor"])
    assert both_empty["dice"] == 1.0  # nothing to find, nothing found


def test_segmentation_multiclass_per_class() -> None:
    t = np.array([[0, 1], [2, 2]])
    p = np.array([[0, 1], [2, 1]])
    m = segmentation_metrics([p], [t], ["tumor", "stroma"])
    assert m["per_class"]["tumor"]["dice"] == pytest.approx(2 / 3, abs=1e-4)  # tp 1, fp 1
    assert m["per_class"]["stroma"]["dice"] == pytest.approx(2 / 3, abs=1e-4)  # tp 1, fn 1
    assert m["per_class"]["stroma"]["iou"] == 0.5
    assert m["pixel_accuracy"] == 0.75


def test_segmentation_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        segmentation_metrics([np.zeros((2, 2), int)], [np.zeros((3, 3), int)], ["tumor"])


def test_classification_perfect_and_all_wrong() -> None:
    y = [0, 0, 1, 1]
    perfect = classification_metrics(
        y, np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]]), ["b", "m"]
    )
    assert perfect["accuracy"] == perfect["balanced_accuracy"] == perfect["roc_auc"] == 1.0
    assert perfect["sensitivity"] == perfect["specificity"] == 1.0
    assert perfect["confusion_matrix"] == [[2, 0], [0, 2]]
    wrong = classification_metrics(y, np.array([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.9, 0.1]]), ["b", "m"])
    assert wrong["accuracy"] == wrong["balanced_accuracy"] == wrong["roc_auc"] == 0.0
    assert wrong["confusion_matrix"] == [[0, 2], [2, 0]]


def test_classification_hand_computed_imbalanced() -> None:
    # 4 benign (3 right), 2 malignant (1 right): sensitivity 1/2, specificity 3/4
    y = [0, 0, 0, 0, 1, 1]
    p1 = np.array([0.1, 0.2, 0.3, 0.6, 0.9, 0.4])
    m = classification_metrics(y, np.stack([1 - p1, p1], 1), ["benign", "malignant"])
    assert m["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert m["sensitivity"] == 0.5 and m["specificity"] == 0.75
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 0.5) / 2, abs=1e-4)
    # AUC: pairs (pos, neg) ranked right: 0.9 beats all 4, 0.4 beats 0.1/0.2/0.3 -> 7/8
    assert m["roc_auc"] == pytest.approx(7 / 8, abs=1e-4)
    assert m["confusion_matrix"] == [[3, 1], [1, 1]]


def test_classification_three_classes_and_missing_class() -> None:
    y = [0, 1, 2]
    m = classification_metrics(y, np.eye(3), ["normal", "benign", "malignant"])
    assert m["accuracy"] == m["balanced_accuracy"] == m["roc_auc"] == 1.0
    one_class = classification_metrics([1, 1], np.array([[0.2, 0.8], [0.6, 0.4]]), ["b", "m"])
    assert one_class["roc_auc"] is None  # undefined with one class present, not a made-up number
    assert one_class["balanced_accuracy"] == 0.5


def test_f1() -> None:
    assert f1(0.5, 1.0) == pytest.approx(2 / 3, abs=1e-4)
    assert f1(0.0, 0.0) == 0.0
