"""benchmarks/thresholds.py: the two rules and the table, on hand-made scores with known answers."""

from __future__ import annotations

import numpy as np


def test_lowest_and_neighbours_on_known_curves() -> None:
    from benchmarks.thresholds import pairs, table

    # patient A: two true boxes (0.9, 0.32) and 30 false ones at 0.25-0.29: "lowest" takes 0.30, on the
    # edge of the cliff; "neighbours" takes 0.35. Patient B: the same true boxes, its false ones at 0.31:
    # served at 0.30 they all stay (31 deletions), at 0.35 none.
    def image(false_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        scores = np.array([0.9, 0.32, *false_scores])
        iou = np.zeros((len(scores), 2))
        iou[0, 0], iou[1, 1] = 0.9, 0.9
        return scores, iou, 2

    rows = pairs({"m1": {"A": image(np.linspace(0.25, 0.29, 30)), "B": image(np.full(30, 0.31))}})
    a_to_b = next(r for r in rows if r["chosen on"] == "A")
    assert a_to_b["lowest"] == (0.3, 0.0, 15.0)  # 30 false boxes deleted on B, 2 true objects
    assert a_to_b["neighbours"] == (0.35, 0.5, 0.5)  # the 0.32 box withheld: one drawn
    assert a_to_b["best on served"] == (0.35, 0.5)
    printed = table(rows)
    assert "| A | B | 0.30, 0.000, **15.000** | 0.35, 0.500, **0.500** | 0.35, 0.500 |" in printed
