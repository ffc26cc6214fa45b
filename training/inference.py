"""Running a model version on one image: the one inference path that evaluation (training/) and serving
(ml_backend/) share.

Every predictor takes an RGB ``uint8`` array of shape ``(H, W, 3)`` of any size; fields larger than the
model input are predicted by overlapping tiles and merged (boxes: NMS across tiles; masks: probabilities
averaged where tiles overlap). Outputs are in the image's own pixel coordinates.

Scale: a model sees pixels at the scale it was trained on. The detect trainer records in
``card.extra["scale"]`` how much ultralytics resized the training images (``imgsz / long side``); the
predictor resizes by the same factor before tiling and maps the boxes back. Segmentation is trained on
crops at native scale (``scale`` 1). A classifier sees the whole image resized to its input size, as in
training.

Each kind's predictor (its row's ``predictor``) is a :class:`TiledPredictor`; a version directory is
loaded into one by :func:`training.versions.load_model`.

>>> ClassScores(np.array([0.25, 0.75], np.float32), ["benign", "malignant"]).top
('malignant', 0.75)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from converters.tiling import tile_windows
from training.artifacts import ArtifactError, ModelCard, load_weights

TILE_BATCH = 8
"""Tiles per forward pass."""
CHANNELS_LAST = True
"""Run CPU models in channels-last memory format (see BENCHMARKS.md, ## Training)."""


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
    boundary: np.ndarray | None = None
    """(H, W) float32 probability that a pixel is an object's edge (segmenters trained with an instance
    target, ``card.arch["instances"] == "boundary"``), which keeps touching objects apart."""
    centre: np.ndarray | None = None
    """(H, W) float32 predicted distance to each object's edge, 1 at its centre
    (:func:`training.objects.centre_of`; ``card.arch["instances"] == "distance"``): watershed markers."""

    def instances(self, threshold: float = 0.5) -> list[np.ndarray]:
        """Per class, an (H, W) int32 instance map of its mask (0 = background, 1..N = one object each):
        grown from the predicted centres or split at the predicted boundaries when the model has them, else
        connected components."""
        from training.objects import split_by_centre, split_objects

        if self.centre is not None:
            return [split_by_centre(m, self.centre) for m in self.masks(threshold)]
        return [split_objects(m, self.boundary, threshold) for m in self.masks(threshold)]

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

    def predict_many(
        self, images: Sequence[np.ndarray]
    ) -> Sequence[Detections | SegmentationMap | ClassScores]:
        """One output per image, as ``predict``; the tiles of all images share batched forward passes."""
        ...


def fitted_model(version_dir: Path, card: ModelCard, build_model: Callable[[ModelCard], Any]) -> Any:
    """The model ``build_model`` makes of ``card`` with the version's safetensors weights loaded.

    Raises :class:`ArtifactError` when the weights do not fit the architecture in the card.
    """
    model = build_model(card)
    state = load_weights(version_dir, device="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{version_dir}: weights do not match the {card.arch} model: {exc}") from exc
    return model


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    if abs(scale - 1.0) < 1e-6:
        return image
    from PIL import Image

    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.array(Image.fromarray(image).resize(size, Image.BILINEAR))


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = getattr(image, "shape", type(image)), getattr(image, "dtype", "")
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {got}")
    return image


class TiledPredictor:
    """The shared part of the kinds' predictors: the model in eval mode on its device, tiling, normalising."""

    cpu_tile_batch = TILE_BATCH
    """Tiles per forward pass on a CPU (``TILE_BATCH`` on an accelerator)."""

    def __init__(self, card: ModelCard, model, device: str, channels_last: bool | None = None) -> None:
        import torch

        from training.stain import normaliser

        self.card, self.model, self.device = card, model.to(device).eval(), device
        self.stain = normaliser(card.extra.get("stain"))
        """The version's stain normalisation (training/stain.py), or None."""
        self.overlap = max(0, card.input_size // 4)
        self.memory_format = torch.contiguous_format
        if channels_last if channels_last is not None else CHANNELS_LAST and device == "cpu":
            self.memory_format = torch.channels_last
            self.model = model.to(memory_format=self.memory_format)

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        """A checked RGB image, stain-normalised as the version was trained when it was."""
        image = _check_image(image)
        return self.stain(image) if self.stain is not None else image

    def _batches(self, image: np.ndarray, pad_value: float):
        """Yield (windows, tensor (B,3,S,S) float in [0,1]) for the tiles of ``image``, padded to S."""
        for _owners, windows, x in self._batches_of([image], pad_value):
            yield windows, x

    def _batches_of(self, images: Sequence[np.ndarray], pad_value: float):
        """Yield (owners, windows, tensor) over the tiles of several images, ``TILE_BATCH`` per forward.

        ``owners[j]`` is the index in ``images`` of tile ``j``: the tiles of consecutive images share a
        forward pass, so eight one-tile images take one batched call instead of eight.
        """
        import torch

        size = self.card.input_size
        tiles = [
            (k, window)
            for k, image in enumerate(images)
            for window in tile_windows(image.shape[0], image.shape[1], size, self.overlap)
        ]
        step = TILE_BATCH if self.device != "cpu" else self.cpu_tile_batch
        for i in range(0, len(tiles), step):
            chunk = tiles[i : i + step]
            batch = np.full((len(chunk), size, size, 3), pad_value, dtype=np.uint8)
            for j, (k, (x0, y0, x1, y1)) in enumerate(chunk):
                batch[j, : y1 - y0, : x1 - x0] = images[k][y0:y1, x0:x1]
            x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float().div_(255)
            yield [k for k, _ in chunk], [w for _, w in chunk], x.contiguous(memory_format=self.memory_format)

    def predict_many(self, images: Sequence[np.ndarray]) -> list[Any]:
        """``[self.predict(image) for image in images]``; the kinds batch the forward passes instead."""
        return [self.predict(image) for image in images]  # type: ignore[attr-defined]

    def _normalise(self, x):
        """``(x - mean) / std`` of the card; the two tensors are made once per predictor, not per call."""
        import torch

        key = (x.device, x.dtype)
        if getattr(self, "_norm_key", None) != key:
            mean = torch.tensor(self.card.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
            std = torch.tensor(self.card.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
            self._norm, self._norm_key = (mean, std), key
        mean, std = self._norm
        return (x - mean) / std
