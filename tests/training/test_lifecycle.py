"""The retraining config of a project: ``train.<kind>`` settings → TrainConfig."""

from __future__ import annotations

from kernel.settings import load_settings


def test_train_options_per_kind_become_the_retraining_config(tmp_path) -> None:
    """``train.<kind>`` in the config file: a time budget, local weights and local encoder weights that
    every retraining of the project starts from; an unknown option is refused with its name."""
    import pytest

    from training.base import TrainingError
    from training.lifecycle import train_config

    config = tmp_path / "histoloop.toml"
    config.write_text(
        '[projects."4"]\n'
        'train.segment = { time = 10, encoder_weights = "/models/resnet18-imagenet.pth" }\n'
        'train.detect = { time = 2.5, weights = "/models/yolo11n-nuclei.pt" }\n'
        '[projects."5"]\ntrain.segment = { epoch = 3 }\n'
    )
    s = load_settings(config, env={})
    seg, det = train_config(s, "4", "segment"), train_config(s, "4", "detect")
    assert seg.time == 10 and str(seg.encoder_weights) == "/models/resnet18-imagenet.pth"
    assert det.time == 2.5 and str(det.weights) == "/models/yolo11n-nuclei.pt"
    assert train_config(s, "3", "segment").time is None
    assert s.project("4").min_score is None  # each version's own threshold unless set
    with pytest.raises(TrainingError, match=r"unknown train.segment setting.*epoch"):
        train_config(s, "5", "segment")
