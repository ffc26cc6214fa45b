"""training.trainer: the trainer of each kind, found by its row."""

from __future__ import annotations

import pytest

from kernel.kinds import PRIMARY_METRIC
from training.trainer import get_trainer


def test_get_trainer_and_primary_metrics() -> None:
    assert [get_trainer(k).kind for k in ("detect", "segment", "classify")] == [
        "detect",
        "segment",
        "classify",
    ]
    assert set(PRIMARY_METRIC) == {"detect", "segment", "classify"}
    with pytest.raises(ValueError, match="unknown model kind"):
        get_trainer("keypoints")
