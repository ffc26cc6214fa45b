"""Bad training input is refused with a TrainingError that names the file or directory and the problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from training.base import TrainConfig, TrainingError
from training.datasets import check_classify, check_detect, check_segment
from training.trainer import get_trainer


def _copy(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "data"))


def test_good_datasets_pass(detect_data: Path, segment_data: Path, classify_data: Path) -> None:
    assert check_detect(detect_data) == ["tumor"]
    assert check_segment(segment_data) == ["tumor"]
    assert check_classify(classify_data) == ["benign", "malignant"]


@pytest.mark.parametrize("kind", ["detect", "segment", "classify"])
def test_empty_dataset(kind: str, tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("tumor\nnormal\n")
    (tmp_path / "data.yaml").write_text("names:\n  0: tumor\n")
    with pytest.raises(TrainingError, match="no train images"):
        get_trainer(kind).train(tmp_path, TrainConfig(epochs=1, imgsz=64), tmp_path / "out")
    assert not (tmp_path / "out" / "model.json").exists()


def test_class_without_examples(
    detect_data: Path, segment_data: Path, classify_data: Path, tmp_path: Path
) -> None:
    d = _copy(detect_data, tmp_path / "d")
    (d / "data.yaml").write_text("names:\n  0: tumor\n  1: mitosis\n")
    with pytest.raises(TrainingError, match=r"no training examples of class\(es\) \['mitosis'\]"):
        check_detect(d)
    s = _copy(segment_data, tmp_path / "s")
    (s / "classes.txt").write_text("tumor\nlumen\n")
    with pytest.raises(TrainingError, match=r"\['lumen'\]"):
        check_segment(s)
    c = _copy(classify_data, tmp_path / "c")
    shutil.rmtree(c / "train" / "malignant")
    with pytest.raises(TrainingError, match=r"no training images of class\(es\) \['malignant'\]"):
        check_classify(c)


def test_corrupt_image_is_named(detect_data: Path, classify_data: Path, tmp_path: Path) -> None:
    d = _copy(detect_data, tmp_path / "d")
    bad = d / "images" / "train" / "t0.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(TrainingError, match=r"t0\.png: corrupt or unreadable image"):
        get_trainer("detect").train(d, TrainConfig(epochs=1, imgsz=64), tmp_path / "out")
    c = _copy(classify_data, tmp_path / "c")
    victim = sorted((c / "val" / "benign").iterdir())[0]
    victim.write_bytes(b"GIF89a nonsense")
    with pytest.raises(TrainingError, match=victim.name):
        check_classify(c)


def test_bad_labels_and_masks(detect_data: Path, segment_data: Path, tmp_path: Path) -> None:
    d = _copy(detect_data, tmp_path / "d")
    (d / "labels" / "train" / "t0.txt").write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(TrainingError, match=r"t0\.txt:1: bad YOLO label"):
        check_detect(d)
    s = _copy(segment_data, tmp_path / "s")
    (next((s / "masks" / "val").iterdir())).unlink()
    with pytest.raises(TrainingError, match="no mask at"):
        check_segment(s)
