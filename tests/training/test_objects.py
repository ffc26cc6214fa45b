"""Objects: instance splitting of touching nuclei, per-object metrics on known answers, the threshold that
minimises corrections (counted by training.corrections, tested in tests/training/test_corrections.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.corrections import mask_iou
from training.objects import (
    boundary_of,
    centre_of,
    choose_threshold,
    instance_scores,
    label_instances,
    object_metrics,
    pooled_object_metrics,
    split_by_centre,
    split_objects,
)


def two_touching_discs(size: int = 64, r: int = 12) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    inst = np.zeros((size, size), np.int32)
    inst[(yy - 32) ** 2 + (xx - 20) ** 2 <= r**2] = 1
    inst[((yy - 32) ** 2 + (xx - 42) ** 2 <= r**2) & (inst == 0)] = 2  # overlapping: they touch
    return inst


def test_touching_discs_are_two_objects_with_a_boundary_one_without() -> None:
    truth = two_touching_discs()
    fg = truth > 0
    assert label_instances(fg).max() == 1  # connected components merge them
    split = split_objects(fg, boundary_of(truth).astype(np.float32))
    assert split.max() == 2 and np.array_equal(split > 0, fg)  # every foreground pixel kept
    iou = mask_iou(split, truth)
    assert sorted(iou.max(1)) == pytest.approx([1.0, 1.0], abs=0.05)
    assert object_metrics(split, truth)["object_f1"] == 1.0
    merged = object_metrics(label_instances(fg), truth)
    assert merged["tp"] <= 1 and merged["object_f1"] < 1 and merged["pq"] < 0.5


def test_centre_map_peaks_once_inside_each_touching_object() -> None:
    truth = two_touching_discs()
    centre = centre_of(truth)
    assert centre.dtype == np.float32 and centre[truth == 0].max() == 0.0
    assert centre[truth > 0].min() > 0.0
    edge = boundary_of(truth)
    for k in (1, 2):
        y, x = np.unravel_index(np.argmax(np.where(truth == k, centre, -1)), truth.shape)
        assert centre[y, x] == 1.0 and truth[y, x] == k and not edge[y, x]
    assert centre[edge].max() < centre[(truth > 0) & ~edge].mean()  # low on every edge, the shared one too


def test_touching_discs_split_by_their_centres() -> None:
    truth = two_touching_discs()
    fg = truth > 0
    split = split_by_centre(fg, centre_of(truth))
    assert split.max() == 2 and np.array_equal(split > 0, fg)  # every foreground pixel kept
    assert sorted(mask_iou(split, truth).max(1)) == pytest.approx([1.0, 1.0], abs=0.05)
    # one convex object (an ellipse) has one core: one object, whatever its elongation
    yy, xx = np.mgrid[:64, :64]
    ellipse = ((yy - 32) / 10) ** 2 + ((xx - 32) / 25) ** 2 <= 1
    assert split_by_centre(ellipse, centre_of(ellipse.astype(np.int32))).max() == 1
    # foreground without any core (a flat, low map) stays one object per region, never dropped
    assert np.array_equal(split_by_centre(fg, np.full(fg.shape, 0.1)) > 0, fg)
    assert split_by_centre(np.zeros((4, 4), bool), np.ones((4, 4))).max() == 0


@given(st.integers(0, 10_000), st.integers(1, 6))
@settings(max_examples=25, deadline=None)
def test_split_by_centre_recovers_separated_objects(seed: int, n: int) -> None:
    """Objects apart from each other come back exactly from their own centre maps, whatever their shape."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((48, 48), np.int32)
    for k in range(1, n + 1):
        y, x, h, w = rng.integers(0, 40), rng.integers(0, 40), rng.integers(3, 9), rng.integers(3, 9)
        region = truth[y : y + h, x : x + w]
        region[region == 0] = k
    truth[boundary_of(truth) & (np.roll(truth, 1, 0) != truth)] = 0  # keep objects apart by a gap
    split = split_by_centre(truth > 0, centre_of(truth), min_seed=1)
    assert np.array_equal(split > 0, truth > 0)
    assert object_metrics(split, label_instances(truth > 0))["n_pred"] >= label_instances(truth > 0).max()


def test_object_metrics_known_answers() -> None:
    truth = np.zeros((20, 20), np.int32)
    truth[1:5, 1:5], truth[10:14, 10:14], truth[15:19, 1:5] = 1, 2, 3
    perfect = object_metrics(truth, truth)
    assert (perfect["object_f1"], perfect["pq"], perfect["aji"]) == (1.0, 1.0, 1.0)
    pred = truth.copy()
    pred[pred == 3] = 0  # one missed
    pred[1:5, 15:19] = 4  # one false positive
    m = object_metrics(pred, truth)
    assert (m["tp"], m["fp"], m["fn"]) == (2, 1, 1)
    assert m["object_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1), abs=1e-4) == m["pq"]  # SQ = 1
    # AJI: intersections 32, unions 16 + 16 + 16 (missed) + 16 (unused prediction)
    assert m["aji"] == pytest.approx(32 / 64)
    pooled = pooled_object_metrics([truth, pred], [truth, truth])
    assert pooled["object_f1"] == pytest.approx(2 * 5 / (2 * 5 + 1 + 1), abs=1e-4)


def test_choose_threshold_minimises_corrections() -> None:
    # image 1: two good boxes at high score, a false positive at 0.3; image 2: a good box at 0.35
    iou1 = np.array([[0.9, 0.0], [0.0, 0.85], [0.0, 0.0]])
    iou2 = np.array([[0.95]])
    got = choose_threshold([(np.array([0.9, 0.8, 0.3]), iou1, 2), (np.array([0.35]), iou2, 1)])
    assert got["score_threshold"] == 0.35  # drops the false positive, keeps the 0.35 box
    assert got["corrections"]["total"] == 0 and got["corrections"]["ratio_to_scratch"] == 0.0
    assert got["ratio_by_threshold"]["0.05"] == pytest.approx(1 / 3, abs=1e-3)  # the false positive kept


def test_choose_threshold_keeps_off_the_edge_of_a_cliff() -> None:
    """30 false positives score 0.25-0.29, a true box 0.32 and another 0.9: 0.30 alone is cheapest (0
    corrections) but one step below it costs 30; 0.35 (1 correction: the 0.32 box drawn) is chosen."""
    scores = np.array([0.9, 0.32, *np.linspace(0.25, 0.29, 30)])
    iou = np.zeros((32, 2))
    iou[0, 0], iou[1, 1] = 0.9, 0.9
    got = choose_threshold([(scores, iou, 2)])
    by = got["ratio_by_threshold"]
    assert (by["0.25"], by["0.3"], by["0.35"], by["0.9"]) == (15.0, 0.0, 0.5, 0.5)
    assert got["score_threshold"] == 0.35 and got["corrections"]["total"] == 1


@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 40), st.integers(0, 9))
@settings(max_examples=60, deadline=None)
def test_instance_scores_are_each_objects_mean_probability(seed: int, h: int, w: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    objects = rng.integers(0, n + 1, (h, w)).astype(np.int32)
    objects[rng.random((h, w)) < 0.3] = 0  # runs of one label, background between
    probs = rng.random((h, w)).astype(np.float32)
    got = instance_scores(probs, objects)
    n_max = int(objects.max())
    assert got.shape == (n_max,) and got.dtype == np.float32
    for k in range(1, n_max + 1):
        inside = objects == k
        expected = probs[inside].astype(np.float64).mean() if inside.any() else 0.0
        assert got[k - 1] == pytest.approx(expected, abs=1e-6)


def test_corrections_ratio_is_counted_at_the_served_threshold() -> None:
    """The cliff above: 0.35 is chosen; a version that serves 0.25 costs what 0.25 costs, one that serves a
    threshold off the grid is counted at it."""
    scores = np.array([0.9, 0.32, *np.linspace(0.25, 0.29, 30)])
    iou = np.zeros((32, 2))
    iou[0, 0], iou[1, 1] = 0.9, 0.9
    chosen = choose_threshold([(scores, iou, 2)])
    assert (chosen["corrections_ratio"], chosen["served_threshold"]) == (0.5, 0.35)
    served = choose_threshold([(scores, iou, 2)], served=0.25)
    assert served["score_threshold"] == 0.35  # the choice itself does not move
    assert (served["corrections_ratio"], served["served_threshold"]) == (15.0, 0.25)
    false_kept = int((scores[2:] >= 0.275).sum())
    off_grid = choose_threshold([(scores, iou, 2)], served=0.275)
    assert off_grid["corrections_ratio"] == round(false_kept / 2, 4) and false_kept > 0
