"""The classifier: a timm backbone (``TrainConfig.model``, default ``tf_efficientnet_lite0``) trained on class
folders (``benign/malignant``, ``normal/cancer``, ``normal/benign/malignant``...).

- the backbone starts from ``TrainConfig.pretrained`` (:mod:`training.pretrained`): by default the packaged
  ImageNet EfficientNet-Lite0 (inputs scaled to [-1, 1], the card's ``mean``/``std``), or a local state
  dict, a hub model where the project allows the hub, or ``none``; the classifier head is re-initialised
  for the project's classes, and the card's ``extra["pretrained"]`` records where the weights came from.
  ``TrainConfig.weights`` (a local state dict or a histoloop version) fine-tunes the whole model on top.

- each image is resized to ``imgsz`` (as training.inference does at prediction), then flips, 90°
  rotations and H&E colour jitter;
- imbalance: class-weighted cross-entropy (weights ∝ 1 / class count) by default, or a balanced
  sampler with ``extra["balance"] = "sampler"``;
- the loop, AMP (CUDA only), checkpoint/resume and best-on-validation (balanced accuracy) are
  training/loop.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kernel.kinds import CORRECTIONS_RATIO
from training import pretrained
from training.artifacts import ModelCard, save_weights
from training.augment import flip_rotate, he_jitter, to_tensor
from training.base import Fitted, KindSpec, ProgressFn, TrainConfig, TrainingError
from training.corrections import LABEL_CORRECTIONS, Corrections
from training.datasets import check_classify, classify_items, read_image
from training.inference import TILE_BATCH, ClassScores, TiledPredictor, fitted_model
from training.loop import fit_epochs, load_fine_tune, read_state_dict
from training.metrics import classification_metrics
from training.plots import confusion_matrix, pr_curve
from training.runtime import resolve_device, seed_everything
from training.slide_fields import CLASS_TILES

DEFAULT_MODEL = "tf_efficientnet_lite0"
"""Lighter than resnet18, with packaged ImageNet weights (:mod:`training.pretrained`)."""


def _resized(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    return np.array(Image.fromarray(read_image(path)).resize((size, size), Image.BILINEAR))


class ImageDataset(torch.utils.data.Dataset):
    def __init__(self, images: list[np.ndarray], labels: list[int], card: ModelCard, seed: int):
        self.images, self.labels, self.card, self.seed = images, labels, card, seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, i, int(torch.randint(0, 2**31, (1,)))])
        image, _ = flip_rotate(self.images[i], None, rng)
        return to_tensor(he_jitter(image, rng), self.card.mean, self.card.std), self.labels[i]


def fit(dataset_dir: Path, config: TrainConfig, out_dir: Path, progress: ProgressFn | None = None) -> Fitted:
    """Train a classify model on ``dataset_dir`` into ``out_dir`` (card and weights); see the module docstring."""
    from training import distributed
    from training.offline import ensure_offline

    if distributed.needs_launch(config):  # several devices: this process becomes rank 0 of a DDP training
        return distributed.launch(__name__, dataset_dir, config, out_dir, progress)
    ensure_offline()
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    classes = check_classify(dataset_dir)
    if len(classes) < 2:
        raise TrainingError(f"{dataset_dir}: a classifier needs at least two classes, got {classes}")
    backbone = config.model or DEFAULT_MODEL
    start = pretrained.resolve(config.pretrained, backbone, config.allow_hub)
    card = ModelCard(
        kind="classify",
        classes=classes,
        arch={"backbone": backbone},
        input_size=config.imgsz,
        mean=start.mean,
        std=start.std,
        extra={"pretrained": start.provenance},
    )
    device = distributed.rank_device(config, resolve_device(config.device))
    seed_everything(config.seed)
    try:
        model = build_model(card)
    except (RuntimeError, ValueError) as exc:
        raise TrainingError(f"unknown timm backbone {backbone!r}: {exc}") from exc
    pretrained.load_pretrained(model, start, skip=head_names(model))
    if config.weights:
        load_fine_tune(model, read_state_dict(Path(config.weights)), str(config.weights))

    train_items = classify_items(dataset_dir, "train", classes)
    val_items = classify_items(dataset_dir, "val", classes)
    labels = [c for _, c in train_items]
    data = ImageDataset([_resized(p, config.imgsz) for p, _ in train_items], labels, card, config.seed)
    counts = np.bincount(labels, minlength=len(classes)).astype(np.float64)
    gen = torch.Generator().manual_seed(config.seed)
    balance = config.extra.get("balance", "weights")
    sampler = None
    class_weights = None
    if balance == "sampler":
        w = (1.0 / counts)[labels]
        sampler = torch.utils.data.WeightedRandomSampler(w, num_samples=len(labels), generator=gen)
    else:
        class_weights = torch.tensor(
            len(labels) / (len(classes) * counts), dtype=torch.float32, device=device
        )
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=config.batch,
        shuffle=sampler is None,
        sampler=sampler,
        generator=gen,
        drop_last=len(data) > config.batch,
        num_workers=config.workers,
    )
    ce = torch.nn.CrossEntropyLoss(weight=class_weights)
    val_images = [read_image(p) for p, _ in val_items]
    val_labels = [c for _, c in val_items]

    def validate(m: torch.nn.Module) -> dict[str, Any]:
        predictor = ClassifyPredictor(card, m, device, channels_last=False)
        probs = np.stack([predictor.predict(img).probs for img in val_images])
        got = classification_metrics(val_labels, probs, classes)
        return {k: got[k] for k in ("accuracy", "balanced_accuracy", "roc_auc")}

    best, history = fit_epochs(
        model, loader, ce, validate, "balanced_accuracy", config, out_dir, device, progress
    )
    if distributed.is_main():
        save_weights(best, out_dir)
        card.save(out_dir)
    return Fitted(card, history)


def build_model(card: ModelCard) -> Any:
    """The timm backbone of a card with ``len(classes)`` outputs (random init)."""
    import timm

    return timm.create_model(card.arch["backbone"], pretrained=False, num_classes=len(card.classes))


class ClassifyPredictor(TiledPredictor):
    """Softmax over the classes of the whole image resized to the input size."""

    def predict(self, image: np.ndarray) -> ClassScores:
        return self.predict_many([image])[0]

    def predict_many(self, images: Sequence[np.ndarray]) -> list[ClassScores]:
        """The class scores of each image, ``TILE_BATCH`` images per forward pass."""
        import torch
        from PIL import Image

        size = self.card.input_size
        out: list[ClassScores] = []
        for i in range(0, len(images), TILE_BATCH):
            chunk = [self._prepare(image) for image in images[i : i + TILE_BATCH]]
            resized = np.stack(
                [np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR)) for image in chunk]
            )
            x = torch.from_numpy(resized).to(self.device).permute(0, 3, 1, 2).float().div_(255)
            with torch.inference_mode():
                logits = self.model(self._normalise(x).contiguous(memory_format=self.memory_format))
            probs = logits.float().softmax(dim=1).cpu().numpy().astype(np.float32)
            out.extend(ClassScores(probs=p, classes=list(self.card.classes)) for p in probs)
        return out


def evaluate(
    card: ModelCard, version_dir: Path, dataset_dir: Path, split: str, device: str, plots_dir: Path | None
) -> dict[str, Any]:
    """Every image of the split predicted, then :func:`training.metrics.classification_metrics`; plots.
    The corrections ratio is the served top choice's: choices changed over choices made from scratch."""
    items = classify_items(dataset_dir, split, card.classes)
    if not items:
        raise TrainingError(f"{dataset_dir}: no {split} images to evaluate on")
    predictor = ClassifyPredictor(card, fitted_model(version_dir, card, build_model), device)
    probs = np.stack([predictor.predict(read_image(p)).probs for p, _ in items])
    y = np.array([c for _, c in items])
    metrics = classification_metrics(y, probs, card.classes)
    metrics[CORRECTIONS_RATIO] = label_ratio(
        [card.classes[i] for i in probs.argmax(axis=1)], [card.classes[c] for c in y]
    )
    if plots_dir is not None:
        confusion_matrix(metrics["confusion_matrix"], card.classes, Path(plots_dir) / "confusion_matrix.png")
        pr_curve(y, probs, card.classes, Path(plots_dir) / "pr_curve.png")
    return metrics


def label_ratio(predicted: Sequence[str], true: Sequence[str]) -> float | None:
    """A specialist's corrections of the suggested choices over choosing every label from scratch.

    >>> label_ratio(["benign", "malignant", "benign"], ["benign", "benign", "benign"])
    0.3333
    """
    done = sum((LABEL_CORRECTIONS.count(p, t) for p, t in zip(predicted, true, strict=True)), Corrections())
    scratch = sum((LABEL_CORRECTIONS.from_scratch(t) for t in true), Corrections())
    return round(done.total / scratch.total, 4) if scratch.total else None


def head_names(model: Any) -> tuple[str, ...]:
    """The module names of a timm model's classifier (its pretrained tensors are not loaded: the head is
    re-initialised for the project's classes)."""
    classifier = model.get_classifier()
    return tuple(name for name, module in model.named_modules() if module is classifier and name)


def head(model: Any) -> list[Any]:
    """The classifier layer: its bias is each class's logit."""
    return [model.get_classifier()]


def last_class_bias(layer: Any, bias: float) -> None:
    """The last class's logit gets ``bias``, the others 0: an untrained classifier answers the last class."""
    layer.bias.zero_()
    layer.bias[-1] = bias


SPEC = KindSpec(
    kind="classify",
    fit=fit,
    build_model=build_model,
    predictor=ClassifyPredictor,
    evaluate=evaluate,
    check_dataset=check_classify,
    default_model=DEFAULT_MODEL,
    corrections=LABEL_CORRECTIONS,
    slide=CLASS_TILES,
    head=head,
    curves=("balanced_accuracy", "roc_auc"),
    head_bias=last_class_bias,
)
