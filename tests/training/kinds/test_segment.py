"""The smp segmenter, for real: tiny trainings on generated tiles and MoNuSeg nuclei, resume, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from training.base import Cancelled, Progress, TrainConfig, TrainingError
from training.inference import SegmentationMap
from training.trainer import get_trainer
from training.versions import load_model

TINY = {"epochs": 2, "batch": 4, "imgsz": 64, "model": "resnet18", "seed": 0}


@pytest.fixture(scope="module")
def segment_version(segment_data: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("segment-version")
    events: list[Progress] = []
    result = get_trainer("segment").train(segment_data, TrainConfig(**TINY), out, progress=events.append)
    return out, result, events


def test_trains_a_complete_version(segment_version) -> None:
    out, result, events = segment_version
    for name in (
        "model.json",
        "weights.safetensors",
        "metrics.json",
        "training_curves.png",
        "train/checkpoint.pt",
    ):
        assert (out / name).is_file(), name
    assert result.card.arch == {
        "arch": "Unet",
        "encoder": "resnet18",
        "mode": "binary",
        "norm": "group",
        "norm_act": True,
        "instances": "distance",
    }
    assert result.card.extra["pretrained"]["source"] == "none"  # resnet18 has no packaged weights
    m = result.metrics
    for key in ("dice", "iou", "dice_per_image", "iou_per_image", "pixel_accuracy"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["per_class"]["tumor"]["dice"] == m["dice"] and len(m["per_image_dice"]) == 3
    assert json.loads((out / "metrics.json").read_text())["dice"] == m["dice"]
    # best-on-validation kept: the version scores what its best epoch scored
    assert m["dice"] == max(row["dice"] for row in result.history)
    assert [e.epoch for e in events if e.stage == "val"] == [1, 2]
    assert any(e.stage == "train" and e.loss is not None and e.steps >= e.step >= 1 for e in events)


def test_version_predicts_masks(segment_version) -> None:
    out, _, _ = segment_version
    seg = load_model(out).predict(np.full((64, 64, 3), 200, np.uint8))
    assert isinstance(seg, SegmentationMap) and seg.probs.shape == (1, 64, 64)


def test_same_seed_same_weights(segment_data: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(**{**TINY, "epochs": 1})
    get_trainer("segment").train(segment_data, cfg, tmp_path / "a")
    get_trainer("segment").train(segment_data, cfg, tmp_path / "b")
    a, b = (
        load_file(tmp_path / "a" / "weights.safetensors"),
        load_file(tmp_path / "b" / "weights.safetensors"),
    )
    assert all(bool((a[k] == b[k]).all()) for k in a)


def test_resume_after_interruption(segment_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"

    def stop_after_first_epoch(p: Progress) -> None:
        if p.stage == "val" and p.epoch == 1:
            raise Cancelled("worker killed")

    with pytest.raises(Cancelled):
        get_trainer("segment").train(segment_data, TrainConfig(**TINY), out, progress=stop_after_first_epoch)
    assert (out / "train" / "checkpoint.pt").is_file() and not (out / "weights.safetensors").exists()
    events: list[Progress] = []
    result = get_trainer("segment").train(segment_data, TrainConfig(**TINY), out, progress=events.append)
    assert min(e.epoch for e in events if e.stage == "train") == 2  # epoch 1 was not redone
    assert [row["epoch"] for row in result.history] == [1, 2]


def test_multiclass(writers, tmp_path: Path) -> None:
    data = writers["segment"](tmp_path / "mc", n=6, n_val=2)
    for mask_path in (data / "masks").rglob("*.png"):
        from PIL import Image

        mask = np.array(Image.open(mask_path))
        mask[:8, :8] = 2  # a second class in a corner of every tile
        Image.fromarray(mask).save(mask_path)
    (data / "classes.txt").write_text("tumor\nstroma\n")
    result = get_trainer("segment").train(data, TrainConfig(**{**TINY, "epochs": 1}), tmp_path / "out")
    assert result.card.arch["mode"] == "multiclass"
    assert set(result.metrics["per_class"]) == {"tumor", "stroma"}
    assert load_model(tmp_path / "out").predict(np.zeros((40, 40, 3), np.uint8)).probs.shape == (2, 40, 40)


def test_weights_of_another_model_are_refused(segment_data: Path, segment_version, tmp_path: Path) -> None:
    out, _, _ = segment_version
    cfg = TrainConfig(**{**TINY, "model": "resnet34"}, weights=out)  # resnet18 weights, resnet34 encoder
    with pytest.raises(TrainingError, match="wrong architecture"):
        get_trainer("segment").train(segment_data, cfg, tmp_path / "x")


def test_monuseg_nuclei(monuseg, tmp_path: Path) -> None:
    data = monuseg("segment", crop=128, per_tile=1)
    result = get_trainer("segment").train(data, TrainConfig(**{**TINY, "epochs": 1}), tmp_path / "out")
    assert result.card.classes == ["nucleus"] and result.metrics["n_images"] == 1
    assert 0.0 <= result.metrics["dice"] <= 1.0
    # 64 px crops from 128 px tiles for training; the 128 px val tile is predicted by overlapping tiles
    assert load_model(tmp_path / "out").predict(np.zeros((128, 128, 3), np.uint8)).probs.shape == (
        1,
        128,
        128,
    )


def test_distance_instances_train_and_serve_centre_maps(monuseg, tmp_path: Path) -> None:
    data = monuseg("segment", crop=128, per_tile=1)
    cfg = TrainConfig(**{**TINY, "epochs": 1}, extra={"instances": "distance"})
    result = get_trainer("segment").train(data, cfg, tmp_path / "out")
    assert result.card.arch["instances"] == "distance"
    assert {"object_f1", "pq", "aji"} <= set(result.metrics)
    seg = load_model(tmp_path / "out").predict(np.full((96, 96, 3), 200, np.uint8))
    assert seg.probs.shape == (1, 96, 96) and seg.boundary is None
    assert seg.centre is not None and seg.centre.shape == (96, 96)
    assert 0.0 <= seg.centre.min() <= seg.centre.max() <= 1.0
    assert len(seg.instances()) == 1 and seg.instances()[0].shape == (96, 96)
    with pytest.raises(TrainingError, match="instances 'stardist'"):
        get_trainer("segment").train(
            data, TrainConfig(**TINY, extra={"instances": "stardist"}), tmp_path / "x"
        )


def test_local_encoder_weights(segment_data: Path, tmp_path: Path) -> None:
    import segmentation_models_pytorch as smp
    import torch

    torch.manual_seed(1)
    encoder = smp.Unet("resnet18", encoder_weights=None, classes=1).encoder.state_dict()
    torch.save(encoder, tmp_path / "resnet18-encoder.pth")
    cfg = TrainConfig(
        **{**TINY, "epochs": 1}, extra={"encoder_weights": str(tmp_path / "resnet18-encoder.pth")}
    )
    get_trainer("segment").train(segment_data, cfg, tmp_path / "ok")
    wrong = TrainConfig(**{**TINY, "epochs": 1, "model": "efficientnet-b0"}, extra=cfg.extra)
    with pytest.raises(TrainingError, match=r"resnet18-encoder.pth: weights of the wrong architecture"):
        get_trainer("segment").train(segment_data, wrong, tmp_path / "bad")


def test_imagenet_and_timm_encoder_weights_are_loaded(segment_data: Path, tmp_path: Path) -> None:
    """The recipe in docs/training.md: a torchvision/timm ResNet state dict saved to a local file (as
    ``torchvision.models.resnet18(weights="IMAGENET1K_V1")`` or ``timm.create_model(..., pretrained=True)``
    would give on a machine with the network) starts the encoder; BatchNorm's affine weights carry over
    into the GroupNorm of the default recipe. Nothing is downloaded."""
    import timm
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(3)
    tv = torchvision.models.resnet18(weights=None)
    for p in tv.parameters():  # recognisable values, not an init
        torch.nn.init.normal_(p, 0.5, 0.1)
    torch.save(tv.state_dict(), tmp_path / "imagenet-resnet18.pth")
    tm = timm.create_model("resnet18", pretrained=False)
    save_file(
        {k: v.contiguous() for k, v in tm.state_dict().items()}, str(tmp_path / "timm-resnet18.safetensors")
    )
    for source, state in (
        ("imagenet-resnet18.pth", tv.state_dict()),
        ("timm-resnet18.safetensors", tm.state_dict()),
    ):
        cfg = TrainConfig(**{**TINY, "epochs": 1, "lr": 1e-12}, encoder_weights=tmp_path / source)
        get_trainer("segment").train(segment_data, cfg, tmp_path / f"out-{source}")
        weights = load_file(str(tmp_path / f"out-{source}" / "weights.safetensors"))
        for key in ("conv1.weight", "layer4.1.conv2.weight", "bn1.weight", "layer2.0.bn1.bias"):
            assert torch.allclose(weights[f"encoder.{key}"], state[key], atol=1e-4), (source, key)


def test_time_budget_is_honoured_and_the_best_epoch_kept(segment_data: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(**{**TINY, "epochs": 1000}, time=0.05)  # 3 s, whatever epochs says
    result = get_trainer("segment").train(segment_data, cfg, tmp_path / "out")
    assert 1 <= len(result.history) < 1000
    assert result.history[-1]["minutes"] <= 0.05 + 0.5  # the budget, plus at most one step and a validation
    best = max(result.history, key=lambda r: r["dice"])
    assert result.metrics["dice"] == pytest.approx(best["dice"], abs=1e-3)


def test_the_epoch_kept_can_be_chosen_by_an_object_metric(segment_data: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(**{**TINY, "epochs": 4}, extra={"select": "pq"})
    result = get_trainer("segment").train(segment_data, cfg, tmp_path / "out")
    assert all({"dice", "pq", "object_f1", "aji"} <= set(row) for row in result.history)
    best = max(result.history, key=lambda r: r["pq"])
    assert result.metrics["pq"] == pytest.approx(best["pq"], abs=1e-3)
    assert result.metrics["dice"] == pytest.approx(best["dice"], abs=1e-3)
    with pytest.raises(TrainingError, match="select 'psnr'"):
        get_trainer("segment").train(
            segment_data, TrainConfig(**TINY, extra={"select": "psnr"}), tmp_path / "x"
        )


def test_threshold_and_object_metrics_are_stored(segment_version) -> None:
    out, result, _ = segment_version
    for key in ("object_f1", "pq", "aji", "score_threshold", "corrections"):
        assert key in result.metrics, key
    card = json.loads((out / "model.json").read_text())
    assert card["extra"]["score_threshold"] == result.metrics["score_threshold"]
    assert (
        json.loads((out / "metrics.json").read_text())["score_threshold"] == result.metrics["score_threshold"]
    )
    # the corrections ratio at the threshold it will serve, chosen on this same split
    m = result.metrics
    assert m["corrections_ratio"] == m["ratio_by_threshold"][str(m["score_threshold"])] is not None
    assert m["served_threshold"] == m["score_threshold"]


def test_groupnorm_recipe_predicts_the_same_whatever_the_batch(segment_version) -> None:
    import torch

    out, _, _ = segment_version
    model = load_model(out).model
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x)[:1], model(x[:1]), atol=1e-4)
