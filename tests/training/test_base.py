"""training.base: trainer lookup, config round trip, and the CPU thread choice."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from kernel.kinds import PRIMARY_METRIC
from training.base import TrainConfig
from training.kinds import spec
from training.runtime import busy_cores, choose_threads
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


def test_config_to_dict_is_json_ready(tmp_path) -> None:
    d = TrainConfig(weights=tmp_path / "w.pt", extra={"arch": "Unet"}).to_dict()
    assert d["weights"] == str(tmp_path / "w.pt") and d["extra"] == {"arch": "Unet"}
    assert (TrainConfig().model or spec("detect").default_model) == "yolo11n.yaml"


def test_choose_threads() -> None:
    assert choose_threads(2, 0.0) == 2
    assert choose_threads(2, 0.9) == 1  # a busy neighbour: do not fight it for its core
    assert choose_threads(2, 5.0) == 1
    assert choose_threads(4, 0.2, env="3") == 3  # OMP_NUM_THREADS wins


def test_busy_cores_sees_another_process() -> None:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert busy_cores(0.5) >= 0.5
    finally:
        spinner.kill()
        spinner.wait()
