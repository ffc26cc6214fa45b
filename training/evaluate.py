"""Held-out evaluation of a version directory on a dataset split — one code path for candidates and
production, so both are measured on the same images the same way.

- detect: ultralytics' DetectionValidator on the split (P, R, F1, mAP50, mAP50-95, per-class AP50);
  its PR curve and confusion matrix are kept as ``pr_curve.png`` / ``confusion_matrix.png``.
- segment: every image of the split predicted whole (tiled by training.inference), then
  :func:`training.metrics.segmentation_metrics`.
- classify: every image predicted by training.inference, then
  :func:`training.metrics.classification_metrics`; confusion matrix and PR curve plots.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.artifacts import ModelCard, load_weights
from training.base import TrainingError
from training.datasets import (
    classify_items,
    detect_names,
    list_images,
    read_image,
    read_mask,
    segment_pairs,
)
from training.inference import build_model, load_model, resolve_device
from training.metrics import classification_metrics, f1, segmentation_metrics
from training.plots import confusion_matrix, pr_curve


def evaluate_version(
    version_dir: Path,
    dataset_dir: Path,
    split: str = "val",
    device: str = "auto",
    plots_dir: Path | None = None,
) -> dict[str, Any]:
    card = ModelCard.load(version_dir)
    device = resolve_device(device)
    fn = {"detect": _detect, "segment": _segment, "classify": _classify}[card.kind]
    metrics = fn(card, version_dir, dataset_dir, split, device, plots_dir)
    metrics["split"] = split
    return metrics


def _detect(card: ModelCard, version_dir: Path, dataset_dir: Path, split: str, device: str, plots_dir):
    from training.detect import write_data_yaml
    from training.offline import ultralytics

    ultralytics()
    from ultralytics.models.yolo.detect import DetectionValidator

    names = detect_names(dataset_dir)
    if names != card.classes:
        raise TrainingError(f"{dataset_dir}: classes {names} differ from the model's {card.classes}")
    if not list_images(dataset_dir / "images" / split):
        raise TrainingError(f"{dataset_dir}: no {split} images to evaluate on")
    model = build_model(card)
    model.load_state_dict(load_weights(version_dir), strict=True)
    model.names = dict(enumerate(card.classes))
    with tempfile.TemporaryDirectory(prefix="histoloop-val-") as tmp:
        data_yaml = write_data_yaml(dataset_dir, names, Path(tmp) / "data.yaml")
        if (dataset_dir / "images" / split).is_dir() and split not in ("train", "val"):
            data_yaml.write_text(data_yaml.read_text() + f"{split}: images/{split}\n")
        args = dict(
            data=str(data_yaml), imgsz=card.input_size, batch=8, split=split, device=device,
            plots=plots_dir is not None, verbose=False, conf=0.001, iou=0.7,
        )  # fmt: skip
        validator = DetectionValidator(args=args, save_dir=Path(tmp) / "val")
        threads = torch.get_num_threads()
        try:
            stats = validator(model=model)
        finally:
            torch.set_num_threads(threads)  # the validator's select_device() resets torch threads
        box = validator.metrics.box
        p, r = float(stats["metrics/precision(B)"]), float(stats["metrics/recall(B)"])
        per_class = {
            card.classes[int(c)]: round(float(ap), 4)
            for c, ap in zip(box.ap_class_index, box.ap50, strict=True)
        }
        metrics = {
            "precision": round(p, 4), "recall": round(r, 4), "f1": f1(p, r),
            "mAP50": round(float(stats["metrics/mAP50(B)"]), 4),
            "mAP50-95": round(float(stats["metrics/mAP50-95(B)"]), 4),
            "per_class_ap50": per_class, "n_images": int(validator.seen),
        }  # fmt: skip
        if plots_dir is not None:
            for src, dst in (
                ("BoxPR_curve.png", "pr_curve.png"),
                ("confusion_matrix.png", "confusion_matrix.png"),
            ):
                if (Path(tmp) / "val" / src).is_file():
                    shutil.copyfile(Path(tmp) / "val" / src, Path(plots_dir) / dst)
    return metrics


def predicted_classes(probs: np.ndarray, binary: bool, threshold: float = 0.5) -> np.ndarray:
    """(H, W) class-index map from a SegmentationMap's probs (0 = background)."""
    if binary:
        return (probs[0] >= threshold).astype(np.uint8)
    background = np.clip(1.0 - probs.sum(0, keepdims=True), 0, 1)
    return np.concatenate([background, probs]).argmax(0).astype(np.uint8)


def _segment(card: ModelCard, version_dir: Path, dataset_dir: Path, split: str, device: str, plots_dir):
    pairs = segment_pairs(dataset_dir, split)
    if not pairs:
        raise TrainingError(f"{dataset_dir}: no {split} images to evaluate on")
    predictor = load_model(version_dir, device=device)
    binary = card.arch.get("mode", "binary") == "binary"
    preds, targets = [], []
    for img_path, mask_path in pairs:
        target = read_mask(mask_path)
        if binary:
            target = (target > 0).astype(np.uint8)
        seg = predictor.predict(read_image(img_path))
        preds.append(predicted_classes(seg.probs, binary))
        targets.append(target)
    return segmentation_metrics(preds, targets, card.classes)


def _classify(card: ModelCard, version_dir: Path, dataset_dir: Path, split: str, device: str, plots_dir):
    items = classify_items(dataset_dir, split, card.classes)
    if not items:
        raise TrainingError(f"{dataset_dir}: no {split} images to evaluate on")
    predictor = load_model(version_dir, device=device)
    probs = np.stack([predictor.predict(read_image(p)).probs for p, _ in items])
    y = np.array([c for _, c in items])
    metrics = classification_metrics(y, probs, card.classes)
    if plots_dir is not None:
        confusion_matrix(metrics["confusion_matrix"], card.classes, Path(plots_dir) / "confusion_matrix.png")
        pr_curve(y, probs, card.classes, Path(plots_dir) / "pr_curve.png")
    return metrics
