"""Loading a model version and running it on one image: the one inference path that evaluation (training/)
and serving (ml_backend/) share.

Every predictor takes an RGB ``uint8`` array of shape ``(H, W, 3)`` of any size; fields larger than the
model input are predicted by overlapping tiles and merged (boxes: NMS across tiles; masks: stitched).
Outputs are in the image's own pixel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from training.artifacts import ModelCard


@dataclass
class Detections:
    boxes: np.ndarray
    """(N, 4) float32, x1 y1 x2 y2 in pixels of the input image."""
    scores: np.ndarray
    """(N,) float32 confidences in [0, 1]."""
    labels: np.ndarray
    """(N,) int64 indices into ``classes``."""
    classes: list[str]

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class SegmentationMap:
    probs: np.ndarray
    """(C, H, W) float32 probability of each class in ``classes`` (background excluded)."""
    classes: list[str]

    def masks(self, threshold: float = 0.5) -> np.ndarray:
        """(C, H, W) bool: pixels whose own class is most likely and above ``threshold``."""
        if len(self.classes) == 1:
            return self.probs >= threshold
        best = self.probs.argmax(axis=0)
        top = np.take_along_axis(self.probs, best[None], axis=0)[0]
        return np.stack([(best == c) & (top >= threshold) for c in range(len(self.classes))])


@dataclass
class ClassScores:
    probs: np.ndarray
    """(C,) float32 softmax probabilities over ``classes``."""
    classes: list[str]

    @property
    def top(self) -> tuple[str, float]:
        i = int(self.probs.argmax())
        return self.classes[i], float(self.probs[i])


class Predictor(Protocol):
    card: ModelCard
    device: str

    def predict(self, image: np.ndarray) -> Detections | SegmentationMap | ClassScores: ...


def load_model(version_dir: Path, device: str = "cpu") -> Predictor:
    """Rebuild the model of a version directory from its card and safetensors weights."""
    raise NotImplementedError
