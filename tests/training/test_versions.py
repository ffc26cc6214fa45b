"""load_model for the three kinds: a tiny model is built, saved as a version (card + safetensors), loaded
back and run on images smaller than, equal to and larger than its input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.artifacts import ArtifactError, ModelCard, save_weights
from training.inference import ClassScores, Detections, SegmentationMap
from training.versions import build_model, load_model


def _version(tmp_path: Path, card: ModelCard, name: str = "v") -> Path:
    d = tmp_path / name
    torch.manual_seed(0)
    model = build_model(card)
    card.save(d)
    save_weights(model.state_dict(), d)
    return d


DETECT = ModelCard(kind="detect", classes=["tumor", "stroma"], arch={"model": "yolo11n.yaml"}, input_size=64)
SEGMENT = ModelCard(
    kind="segment",
    classes=["tumor"],
    arch={"arch": "Unet", "encoder": "resnet18", "mode": "binary"},
    input_size=64,
)
SEGMENT_MC = ModelCard(
    kind="segment",
    classes=["tumor", "stroma"],
    arch={"arch": "Unet", "encoder": "resnet18", "mode": "multiclass"},
    input_size=64,
)
CLASSIFY = ModelCard(
    kind="classify", classes=["benign", "malignant"], arch={"backbone": "resnet18"}, input_size=32
)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_detect_round_trip(tmp_path: Path) -> None:
    p = load_model(_version(tmp_path, DETECT))
    assert p.card.classes == ["tumor", "stroma"] and p.device == "cpu"
    p.conf = 0.0  # an untrained head scores everything low: keep all boxes to check their frame
    det = p.predict(_image(48, 60))
    assert isinstance(det, Detections) and det.classes == ["tumor", "stroma"]
    assert det.boxes.shape == (len(det), 4) and det.boxes.dtype == np.float32
    assert len(det) > 0
    assert (
        (det.boxes[:, [0, 2]] <= 60).all() and (det.boxes[:, [1, 3]] <= 48).all() and (det.boxes >= 0).all()
    )
    assert set(det.labels.tolist()) <= {0, 1}


def test_segment_binary_and_multiclass(tmp_path: Path) -> None:
    seg = load_model(_version(tmp_path, SEGMENT, "bin")).predict(_image(40, 50))
    assert isinstance(seg, SegmentationMap) and seg.probs.shape == (1, 40, 50)
    assert ((seg.probs >= 0) & (seg.probs <= 1)).all()
    assert seg.masks(0.5).shape == (1, 40, 50)
    mc = load_model(_version(tmp_path, SEGMENT_MC, "mc")).predict(_image(64, 64))
    assert mc.probs.shape == (2, 64, 64)
    assert (mc.probs.sum(axis=0) <= 1 + 1e-5).all()  # background holds the rest


def test_classify_probs_sum_to_one(tmp_path: Path) -> None:
    scores = load_model(_version(tmp_path, CLASSIFY)).predict(_image(100, 80))
    assert isinstance(scores, ClassScores)
    assert scores.probs.shape == (2,) and abs(float(scores.probs.sum()) - 1) < 1e-5
    assert scores.top[0] in ("benign", "malignant")


def test_loaded_model_equals_saved_model(tmp_path: Path) -> None:
    d = _version(tmp_path, CLASSIFY)
    torch.manual_seed(0)
    reference = build_model(CLASSIFY).eval()
    image = _image(32, 32, seed=3)
    x = (
        torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        - torch.tensor(CLASSIFY.mean).view(1, 3, 1, 1)
    ) / torch.tensor(CLASSIFY.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference(x).softmax(1)[0].numpy()
    np.testing.assert_allclose(load_model(d).predict(image).probs, expected, atol=1e-5)


def test_wrong_architecture_weights_are_refused(tmp_path: Path) -> None:
    d = _version(tmp_path, CLASSIFY)
    ModelCard(kind="classify", classes=["a", "b", "c"], arch={"backbone": "resnet18"}, input_size=32).save(d)
    with pytest.raises(ArtifactError, match="do not match"):
        load_model(d)


def test_not_a_version(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a model version"):
        load_model(tmp_path)


def test_bad_image_is_refused(tmp_path: Path) -> None:
    p = load_model(_version(tmp_path, CLASSIFY))
    with pytest.raises(ValueError, match="uint8 RGB"):
        p.predict(np.zeros((10, 10), np.uint8))


def test_tiled_segmentation_matches_single_tile_where_one_tile_covers(tmp_path: Path) -> None:
    p = load_model(_version(tmp_path, SEGMENT))
    big = _image(150, 170, seed=5)
    whole = p.predict(big).probs
    assert whole.shape == (1, 150, 170)
    corner = p.predict(big[:64, :64].copy()).probs
    # The top-left 16 px are covered by the first window only: identical to predicting that window alone.
    np.testing.assert_allclose(whole[:, :16, :16], corner[:, :16, :16], atol=1e-5)


def test_tiled_detection_boxes_are_in_image_coordinates(tmp_path: Path) -> None:
    p = load_model(_version(tmp_path, DETECT))
    p.conf = 0.0
    det = p.predict(_image(150, 200, seed=2))
    assert len(det) > 0
    assert det.boxes[:, 2].max() > 64 and det.boxes[:, 3].max() > 64  # boxes from later tiles are shifted
    assert (det.boxes[:, [0, 2]] <= 200).all() and (det.boxes[:, [1, 3]] <= 150).all()


@pytest.mark.parametrize(
    "card", [DETECT, SEGMENT, SEGMENT_MC, CLASSIFY], ids=lambda c: c.kind + c.arch.get("mode", "")
)
def test_predict_many_equals_predict_one_at_a_time(tmp_path: Path, card: ModelCard) -> None:
    """Batched forward passes over several images of different sizes (one tile, several tiles, more
    tiles than one batch) give each image what ``predict`` gives it alone."""
    p = load_model(_version(tmp_path, card))
    if card.kind == "detect":  # scores around 0.5 that differ from box to box, not a sea of ties
        with torch.no_grad():
            for seq in p.model.model[-1].cv3:
                seq[-1].bias.fill_(0.0)
    images = [_image(48, 60, 1), _image(64, 64, 2), _image(150, 130, 3)] + [
        _image(40, 40, s) for s in range(7)
    ]
    many = p.predict_many(images)
    assert len(many) == len(images)
    for image, got in zip(images, many, strict=True):
        alone = p.predict(image)
        if card.kind == "detect":
            # batched convolutions round differently in the last bits, and an untrained head scores many
            # overlapping boxes alike, so NMS may keep a neighbour or one box more: every box of one
            # overlaps a box of the other (the segmenter and classifier below are compared exactly)
            assert abs(len(got) - len(alone)) <= max(1, len(alone) // 10) and len(got) > 0
            assert (_iou(got.boxes, alone.boxes).max(axis=1) >= 0.5).all()
            assert (_iou(alone.boxes, got.boxes).max(axis=1) >= 0.5).all()
        else:
            assert got.probs.shape == alone.probs.shape
            assert np.allclose(got.probs, alone.probs, atol=1e-5)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)
