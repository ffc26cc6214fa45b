"""Metric functions, the way the field reports them (pure functions of predictions and truth).

Segmentation (smp.metrics): Dice (= F1) and IoU of the foreground classes, overall (pixels of every image
pooled: micro) and per image (then averaged), pixel accuracy, per class. An image with no foreground
in truth and prediction scores 1.0 (nothing to find, nothing found).

>>> t = np.array([[0, 1], [1, 1]])
>>> segmentation_metrics([t], [t], ["tumor"])["dice"]
1.0
>>> round(segmentation_metrics([np.array([[0, 1], [0, 0]])], [t], ["tumor"])["dice"], 4)  # 2*1/(1+3)
0.5

Classification (scikit-learn): accuracy, balanced accuracy, ROC AUC, sensitivity and specificity of the
positive class (the last class: ``malignant`` in benign/malignant, ``cancer`` in normal/cancer; macro
one-vs-rest averages with three or more classes) and the confusion matrix (rows = truth).

>>> m = classification_metrics([0, 1, 1], np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]]), ["benign", "malignant"])
>>> m["accuracy"], m["sensitivity"], m["specificity"], m["roc_auc"]
(0.6667, 0.5, 1.0, 1.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _r(x: float) -> float:
    return round(float(x), 4)


def segmentation_metrics(
    preds: list[np.ndarray], targets: list[np.ndarray], classes: list[str]
) -> dict[str, Any]:
    """``preds``/``targets``: per image (H, W) int class-index maps (0 = background, i+1 = classes[i])."""
    import segmentation_models_pytorch as smp
    import torch

    if not preds or len(preds) != len(targets):
        raise ValueError(f"need as many predictions as targets, got {len(preds)} and {len(targets)}")
    n = len(classes) + 1
    stats = []
    correct = total = 0
    for p, t in zip(preds, targets, strict=True):
        if p.shape != t.shape:
            raise ValueError(f"prediction {p.shape} and target {t.shape} differ in shape")
        pt, tt = torch.as_tensor(p, dtype=torch.long)[None], torch.as_tensor(t, dtype=torch.long)[None]
        stats.append(smp.metrics.get_stats(pt, tt, mode="multiclass", num_classes=n))
        correct += int((p == t).sum())
        total += p.size
    tp, fp, fn, tn = (torch.cat([s[i] for s in stats])[:, 1:] for i in range(4))  # (N, C) foreground
    dice_img = smp.metrics.f1_score(tp.sum(1), fp.sum(1), fn.sum(1), tn.sum(1), zero_division=1.0)
    iou_img = smp.metrics.iou_score(tp.sum(1), fp.sum(1), fn.sum(1), tn.sum(1), zero_division=1.0)
    s = [x.sum() for x in (tp, fp, fn, tn)]
    out: dict[str, Any] = {
        "dice": _r(smp.metrics.f1_score(*s, zero_division=1.0)),
        "iou": _r(smp.metrics.iou_score(*s, zero_division=1.0)),
        "dice_per_image": _r(dice_img.mean()),
        "iou_per_image": _r(iou_img.mean()),
        "pixel_accuracy": _r(correct / total),
        "per_image_dice": [_r(v) for v in dice_img],
        "n_images": len(preds),
    }
    per_class = {}
    for c, name in enumerate(classes):
        cs = [x[:, c].sum() for x in (tp, fp, fn, tn)]
        per_class[name] = {
            "dice": _r(smp.metrics.f1_score(*cs, zero_division=1.0)),
            "iou": _r(smp.metrics.iou_score(*cs, zero_division=1.0)),
        }
    out["per_class"] = per_class
    return out


def classification_metrics(
    y_true: list[int] | np.ndarray, probs: np.ndarray, classes: list[str]
) -> dict[str, Any]:
    """``probs``: (N, C) class probabilities; ``y_true``: (N,) class indices."""
    from sklearn import metrics as skm

    y = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=float)
    if len(y) == 0 or probs.shape != (len(y), len(classes)):
        raise ValueError(
            f"need (N, {len(classes)}) probabilities for N>0 labels, got {probs.shape} for {len(y)}"
        )
    pred = probs.argmax(1)
    labels = list(range(len(classes)))
    cm = skm.confusion_matrix(y, pred, labels=labels)
    tp = np.diag(cm).astype(float)
    fn = cm.sum(1) - tp
    fp = cm.sum(0) - tp
    tn = cm.sum() - tp - fn - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        spec = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
    present = sorted(set(y.tolist()))
    auc: float | None = None
    if len(present) == len(classes) and len(classes) >= 2:
        if len(classes) == 2:
            auc = skm.roc_auc_score(y, probs[:, 1])
        else:
            auc = skm.roc_auc_score(y, probs, multi_class="ovr", labels=labels)
    if len(classes) == 2:
        sens, specificity = recall[1], spec[1]
    else:
        sens, specificity = np.nanmean(recall), np.nanmean(spec)

    def opt(x: float | None) -> float | None:
        return None if x is None or np.isnan(x) else _r(x)

    return {
        "accuracy": _r(skm.accuracy_score(y, pred)),
        "balanced_accuracy": _r(np.nanmean(recall[[i for i in labels if i in present]])),
        "roc_auc": opt(auc),
        "sensitivity": opt(sens),
        "specificity": opt(specificity),
        "confusion_matrix": cm.tolist(),
        "per_class_recall": {c: opt(r) for c, r in zip(classes, recall, strict=True)},
        "n_images": len(y),
    }


def f1(precision: float, recall: float) -> float:
    return _r(2 * precision * recall / (precision + recall)) if precision + recall > 0 else 0.0
