"""The YOLO trainer, for real: tiny trainings (64 px, 2 epochs) on generated tiles and on MoNuSeg crops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.base import Cancelled, Progress, TrainConfig, TrainingError
from training.evaluate import evaluate
from training.inference import Detections
from training.trainer import get_trainer
from training.versions import load_model

TINY = {"epochs": 2, "batch": 4, "imgsz": 64, "model": "yolo11n.yaml", "seed": 0}


@pytest.fixture(scope="module")
def detect_version(detect_data: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("detect-version")
    events: list[Progress] = []
    result = get_trainer("detect").train(detect_data, TrainConfig(**TINY), out, progress=events.append)
    return out, result, events


def test_trains_a_complete_version(detect_version, detect_data: Path) -> None:
    out, result, events = detect_version
    for name in ("model.json", "weights.safetensors", "metrics.json", "training_curves.png", "pr_curve.png"):
        assert (out / name).is_file(), name
    assert (out / "train" / "results.csv").is_file()  # ultralytics' run dir is inside the version
    assert not list(out.rglob("*.pt")), "no pickles in a version"
    assert not Path("runs").exists()
    assert result.card.classes == ["tumor"] and result.card.kind == "detect"
    for key in ("precision", "recall", "f1", "mAP50", "mAP50-95"):
        assert 0.0 <= result.metrics[key] <= 1.0
    assert json.loads((out / "metrics.json").read_text())["mAP50"] == result.metrics["mAP50"]
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert {"mAP50", "mAP50-95", "precision", "recall", "loss"} <= set(result.history[-1])
    assert any(e.stage == "train" and e.step >= 1 and e.loss is not None for e in events)
    assert [e.epoch for e in events if e.stage == "val"] == [1, 2]
    # our thread count (every idle core), not the cpu_count - 1 ultralytics sets
    assert torch.get_num_threads() == result.card.extra["cpu_threads"] >= 1


def test_version_loads_and_predicts(detect_version) -> None:
    out, _, _ = detect_version
    predictor = load_model(out)
    det = predictor.predict(np.zeros((64, 64, 3), np.uint8))
    assert isinstance(det, Detections) and det.classes == ["tumor"]


def test_evaluate_is_the_same_code_as_training(detect_version, detect_data: Path) -> None:
    out, result, _ = detect_version
    again = evaluate(out, detect_data, split="val", device="cpu")
    assert {k: again[k] for k in ("mAP50", "mAP50-95", "precision", "recall")} == {
        k: result.metrics[k] for k in ("mAP50", "mAP50-95", "precision", "recall")
    }
    # evaluated again, the version's served threshold is its card's: the one chosen on this split
    assert (
        again["served_threshold"] == result.card.extra["score_threshold"] == result.metrics["score_threshold"]
    )
    ratio = result.metrics["corrections_ratio"]
    assert (
        again["corrections_ratio"]
        == ratio
        == result.metrics["ratio_by_threshold"][str(again["served_threshold"])]
    )
    assert ratio is not None and ratio >= 0


def test_cancel_from_progress_propagates(detect_data: Path, tmp_path: Path) -> None:
    def cancel(p: Progress) -> None:
        if p.stage == "train":
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        get_trainer("detect").train(detect_data, TrainConfig(**TINY), tmp_path / "out", progress=cancel)
    assert not (tmp_path / "out" / "weights.safetensors").exists()


# a .pt file (ultralytics' own format) as the source: ~12 s more, with `make test-all`
@pytest.mark.parametrize("source", ["version", pytest.param("pt", marks=pytest.mark.slow)])
def test_fine_tune(source: str, detect_version, detect_data: Path, tmp_path: Path) -> None:
    out, _, _ = detect_version
    if source == "pt":  # an ultralytics checkpoint on local disk, as a user would point at
        from ultralytics import YOLO

        weights = tmp_path / "base.pt"
        YOLO("yolo11n.yaml").save(weights)
        cfg = TrainConfig(**{**TINY, "epochs": 1}, weights=weights)
    else:
        cfg = TrainConfig(**{**TINY, "epochs": 1}, weights=out)
    result = get_trainer("detect").train(detect_data, cfg, tmp_path / "ft")
    assert (tmp_path / "ft" / "weights.safetensors").is_file() and "mAP50" in result.metrics
    assert not list((tmp_path / "ft").rglob("*.pt"))
    # from an 80-class checkpoint ultralytics keeps the 80-wide class branch; the version rebuilds it
    assert result.card.extra["cls_width"] == (80 if source == "pt" else 64)
    assert load_model(tmp_path / "ft").predict(np.zeros((64, 64, 3), np.uint8)).classes == ["tumor"]


def test_wrong_weights_are_refused(detect_data: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match=r"junk.pt"):
        get_trainer("detect").train(detect_data, TrainConfig(**TINY, weights=junk), tmp_path / "a")
    from training.artifacts import ModelCard, save_weights
    from training.versions import build_model

    other = tmp_path / "v8"
    card = ModelCard(kind="detect", classes=["tumor"], arch={"model": "yolov8m.yaml"}, input_size=64)
    card.save(other)
    save_weights(build_model(card).state_dict(), other)
    with pytest.raises(TrainingError, match="wrong architecture"):
        get_trainer("detect").train(detect_data, TrainConfig(**TINY, weights=other), tmp_path / "b")


def test_monuseg_nuclei_detection(monuseg, tmp_path: Path) -> None:
    data = monuseg("detect")
    result = get_trainer("detect").train(data, TrainConfig(epochs=1, batch=4, imgsz=128), tmp_path / "out")
    assert result.metrics["n_images"] == 1 and 0.0 <= result.metrics["mAP50"] <= 1.0
    det = load_model(tmp_path / "out").predict(np.zeros((128, 128, 3), np.uint8))
    assert det.classes == ["nucleus"]


def test_relative_out_dir_and_time_budget(detect_data: Path, tmp_path: Path, monkeypatch) -> None:
    """A relative output dir is this directory's, not ultralytics' runs folder; ``time`` (minutes)
    becomes ultralytics' own ``time`` (hours) and ends the run whatever ``epochs`` says."""
    monkeypatch.chdir(tmp_path)
    result = get_trainer("detect").train(
        detect_data, TrainConfig(**{**TINY, "epochs": 500}, time=0.02), Path("out")
    )
    assert (tmp_path / "out" / "weights.safetensors").is_file() and (tmp_path / "out" / "train").is_dir()
    assert not (tmp_path / "runs").exists()
    assert 1 <= len(result.history) < 500
    import yaml

    args = yaml.safe_load((tmp_path / "out" / "train" / "args.yaml").read_text())
    assert args["time"] == pytest.approx(0.02 / 60) and Path(args["project"]).is_absolute()
