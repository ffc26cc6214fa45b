"""training.base: the config round trip."""

from __future__ import annotations

from training.base import TrainConfig
from training.kinds import spec


def test_config_to_dict_is_json_ready(tmp_path) -> None:
    d = TrainConfig(weights=tmp_path / "w.pt", extra={"arch": "Unet"}).to_dict()
    assert d["weights"] == str(tmp_path / "w.pt") and d["extra"] == {"arch": "Unet"}
    assert (TrainConfig().model or spec("detect").default_model) == "yolo11n-lite0.yaml"
