"""PNG plots a person looks at beside metrics.json: training curves, confusion matrix, PR curve.

matplotlib with the Agg backend (no display); each file is written to a temporary name and moved into
place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    _figure().close(fig)
    os.replace(tmp, path)
    return path


def training_curves(history: list[dict[str, Any]], path: Path, keys: list[str]) -> Path | None:
    """One panel per key in ``keys`` (e.g. ``loss``, ``dice``) against the epoch."""
    keys = [k for k in keys if any(row.get(k) is not None for row in history)]
    if not history or not keys:
        return None
    plt = _figure()
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for ax, key in zip(axes[0], keys, strict=True):
        ax.plot(epochs, [row.get(key) for row in history], marker="o")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def confusion_matrix(cm: list[list[int]], classes: list[str], path: Path) -> Path:
    """Counts with truth on the rows and prediction on the columns."""
    plt = _figure()
    m = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2, 1.2 * len(classes) + 1.5))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    return _save(fig, path)


def pr_curve(y_true: np.ndarray, probs: np.ndarray, classes: list[str], path: Path) -> Path | None:
    """Precision-recall curve of each class (one-vs-rest), average precision in the legend."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y = np.asarray(y_true)
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 4))
    drawn = False
    for c, name in enumerate(classes):
        if len(classes) == 2 and c == 0:
            continue  # binary: the positive class only
        positives = y == c
        if not positives.any() or positives.all():
            continue
        p, r, _ = precision_recall_curve(positives, probs[:, c])
        ax.plot(r, p, label=f"{name} (AP {average_precision_score(positives, probs[:, c]):.3f})")
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    return _save(fig, path)
