"""What a trained model version is on disk: a directory with a model card and safetensors weights.

Layout of one version directory (written by a trainer into a staging directory, then moved into
place atomically by the registry)::

    model.json            the ModelCard: kind, classes, architecture, input size, normalisation
    weights.safetensors   the state dict (never a pickle: loading it runs no code)
    weights.sha256        the weights' SHA-256, written by the registry when it registers the version
    metrics.json          held-out metrics (written by the evaluator)
    *.png                 plots: training curves, PR curve, confusion matrix
    train/                the trainer's own run directory (ultralytics' results.csv etc.)

>>> import tempfile
>>> card = ModelCard(kind="classify", classes=["benign", "malignant"], arch={"backbone": "resnet18"}, input_size=224)
>>> d = Path(tempfile.mkdtemp())
>>> card.save(d)
>>> ModelCard.load(d).classes
['benign', 'malignant']
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from kernel.kinds import KINDS, Kind

CARD_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
METRICS_FILE = "metrics.json"
CHECKSUM_FILE = "weights.sha256"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ArtifactError(ValueError):
    """A version directory that is missing, incomplete or of the wrong kind."""


@dataclass
class ModelCard:
    """Everything needed to rebuild a model from its weights, and nothing executable.

    ``arch`` is kind-specific:
      - detect:   ``{"model": "yolo11n.yaml"}`` (an ultralytics model YAML name or path)
      - segment:  ``{"arch": "Unet", "encoder": "resnet34", "mode": "binary" | "multiclass"}``;
                  binary = 1 output channel (sigmoid) for ``classes[0]``; multiclass = ``1 + len(classes)``
                  channels (softmax), channel 0 is background.
      - classify: ``{"backbone": "resnet18"}`` (a timm model name)
    ``input_size`` is the detector's imgsz, the segmenter's tile size, the classifier's image size.
    """

    kind: Kind
    classes: list[str]
    arch: dict[str, Any]
    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ArtifactError(f"unknown model kind {self.kind!r} (expected one of {KINDS})")
        if not self.classes:
            raise ArtifactError("a model card needs at least one class")

    def save(self, directory: Path) -> None:
        write_json_atomic(Path(directory) / CARD_FILE, asdict(self))

    @classmethod
    def load(cls, directory: Path) -> ModelCard:
        path = Path(directory) / CARD_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ArtifactError(f"{directory}: not a model version (no {CARD_FILE})") from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{path}: unreadable model card: {exc}") from exc
        try:
            raw["mean"], raw["std"] = (
                tuple(raw.get("mean", IMAGENET_MEAN)),
                tuple(raw.get("std", IMAGENET_STD)),
            )
            return cls(**raw)
        except TypeError as exc:
            raise ArtifactError(f"{path}: bad model card: {exc}") from exc


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only when the block ends without error: written to a temporary
    file in the same directory, fsynced and renamed over ``path`` (readers see the old file or the whole
    new one), else removed. Writes go through Python's file object, so a full disk raises the OSError
    (ENOSPC) itself rather than a library's rewording of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through :func:`atomic_file`."""
    with atomic_file(path) as fh:
        fh.write(json.dumps(data, indent=2, sort_keys=True, default=str).encode())


def save_weights(state_dict: dict[str, Any], directory: Path) -> Path:
    """Save a state dict as safetensors, atomically (:func:`atomic_file`)."""
    from safetensors.torch import save

    target = Path(directory) / WEIGHTS_FILE
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    with atomic_file(target) as fh:
        fh.write(save(tensors))
    return target


def weights_sha256(directory: Path) -> str:
    """The SHA-256 (hex) of a version directory's weights file."""
    digest = hashlib.sha256()
    with (Path(directory) / WEIGHTS_FILE).open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def record_checksum(directory: Path) -> str | None:
    """Write :data:`CHECKSUM_FILE` beside the weights (None when the directory has no weights)."""
    if not (Path(directory) / WEIGHTS_FILE).is_file():
        return None
    checksum = weights_sha256(directory)
    with atomic_file(Path(directory) / CHECKSUM_FILE) as fh:
        fh.write(f"{checksum}  {WEIGHTS_FILE}\n".encode())
    return checksum


def verify_checksum(directory: Path) -> None:
    """Raise :class:`ArtifactError` when the weights are not the bytes that were registered. A version
    registered before checksums were recorded has no :data:`CHECKSUM_FILE` and is not checked."""
    path = Path(directory) / CHECKSUM_FILE
    try:
        recorded = path.read_text().split()[0]
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        raise ArtifactError(f"{path}: unreadable checksum: {exc}") from exc
    actual = weights_sha256(directory)
    if actual != recorded:
        raise ArtifactError(
            f"{Path(directory) / WEIGHTS_FILE}: the weights are not those registered "
            f"(SHA-256 {actual[:12]}…, registered {recorded[:12]}…): the file is corrupt or was replaced"
        )


def load_weights(directory: Path, device: str = "cpu") -> dict[str, Any]:
    """The state dict of a version directory, checked: the registered bytes (:func:`verify_checksum`),
    readable, and every floating-point tensor finite (a diverged or corrupt model is never served)."""
    import torch
    from safetensors.torch import load_file

    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise ArtifactError(f"{directory}: no {WEIGHTS_FILE}")
    verify_checksum(Path(directory))
    try:
        state = load_file(str(path), device=device)
    except Exception as exc:  # safetensors raises its own error types
        raise ArtifactError(f"{path}: unreadable weights: {exc}") from exc
    bad = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ArtifactError(
            f"{path}: non-finite weights (NaN or infinity) in {len(bad)} tensors, e.g. {bad[0]!r}"
        )
    return state


def publish_dir(staging: Path, target: Path) -> Path:
    """Move a finished staging directory to ``target`` in one rename (same filesystem).

    Readers either see no ``target`` or a complete one, never a half-written version.
    """
    staging, target = Path(staging), Path(target)
    if not (staging / CARD_FILE).is_file():
        raise ArtifactError(f"{staging}: refusing to publish a version without {CARD_FILE}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise ArtifactError(f"{target} already exists")
    os.rename(staging, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:  # the rename is on disk (on NFS: on the server) before the registry's row commits
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
