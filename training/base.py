"""What every trainer shares: its config, progress reports, result, errors and the entry points.

>>> trainer = get_trainer("classify")
>>> trainer.kind, PRIMARY_METRIC["classify"]
('classify', 'balanced_accuracy')

A training run (tiny settings; seconds on a CPU)::

    result = get_trainer("segment").train(Path("data/seg"), TrainConfig(epochs=2, imgsz=64), Path("staging/x"))
    result.metrics["dice"], result.card.classes
"""

from __future__ import annotations

import errno
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from training.artifacts import KINDS, ModelCard

PRIMARY_METRIC = {"detect": "mAP50", "segment": "dice", "classify": "balanced_accuracy"}
DEFAULT_MODEL = {"detect": "yolo11n.yaml", "segment": "resnet34", "classify": "resnet18"}


class TrainingError(ValueError):
    """Bad training input (empty dataset, a class with no examples, a corrupt image, weights of the wrong
    architecture): the worker records the version failed and does not retry."""


def disk_full(exc: BaseException) -> OSError | None:
    """The "no space left" (or over-quota) OSError behind ``exc``: itself, or its cause or context.

    >>> disk_full(RuntimeError("torch's writer failed")) is None
    True
    >>> try:
    ...     try:
    ...         raise OSError(errno.ENOSPC, "No space left on device")
    ...     except OSError:
    ...         raise RuntimeError("unexpected pos 704 vs 598")
    ... except RuntimeError as exc:
    ...     disk_full(exc).strerror
    'No space left on device'
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def failure_reason(exc: BaseException, out_dir: Path) -> str | None:
    """Why a training into ``out_dir`` failed, as its ``failed`` version records it: bad input
    (:class:`TrainingError`) or a full disk. None for anything else (a bug, an outage, a cancel), which is
    not the version's to record."""
    if isinstance(exc, TrainingError):
        return f"bad data: {exc}"
    full = disk_full(exc)
    if full is not None:
        return f"disk full while writing {out_dir}: {full.strerror} (free space there and retrain)"
    return None


class Cancelled(Exception):  # noqa: N818 - the contract's name
    """Raised by a progress callback to stop a training run; trainers let it propagate."""


@dataclass
class TrainConfig:
    epochs: int = 30
    batch: int = 8
    imgsz: int = 256
    lr: float | None = None
    """None: the trainer's default (ultralytics' lr0 for detect, 1e-3 AdamW otherwise)."""
    device: str = "auto"
    seed: int = 0
    model: str | None = None
    """detect: an ultralytics model YAML (``yolo11n.yaml``, ``yolov8s.yaml``, ``yolov5nu.yaml``);
    segment: the encoder (``resnet34``, ``efficientnet-b0``; the architecture is ``extra["arch"]``);
    classify: a timm model name. None: :data:`DEFAULT_MODEL`."""
    weights: Path | None = None
    """A local ``.pt`` (detect), ``.safetensors``/``.pth`` state dict, or a histoloop version directory to
    fine-tune from. Never downloaded."""
    patience: int = 20
    workers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def model_name(self, kind: str) -> str:
        return self.model or DEFAULT_MODEL[kind]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weights"] = str(self.weights) if self.weights else None
        return d


@dataclass
class Progress:
    stage: str
    """``train`` (after each batch), ``val`` (after each epoch's validation), ``eval`` (final evaluation)."""
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[Progress], None]


@dataclass
class TrainResult:
    card: ModelCard
    metrics: dict[str, Any]
    history: list[dict[str, Any]]


class Trainer(Protocol):
    kind: str

    def train(
        self, dataset_dir: Path, config: TrainConfig, out_dir: Path, progress: ProgressFn | None = None
    ) -> TrainResult: ...


def get_trainer(kind: str) -> Trainer:
    """The trainer of a kind: ``detect`` (ultralytics YOLO), ``segment`` (smp), ``classify`` (timm)."""
    if kind == "detect":
        from training.detect import DetectTrainer

        return DetectTrainer()
    if kind == "segment":
        from training.segment import SegmentTrainer

        return SegmentTrainer()
    if kind == "classify":
        from training.classify import ClassifyTrainer

        return ClassifyTrainer()
    raise ValueError(f"unknown kind {kind!r} (expected one of {KINDS})")


def evaluate(
    version_dir: Path,
    dataset_dir: Path,
    split: str = "val",
    device: str = "auto",
    plots_dir: Path | None = None,
) -> dict[str, Any]:
    """Held-out metrics of a version on a dataset split: the same code for a candidate and production.

    ``plots_dir``: where to write the PNG plots (PR curve, confusion matrix); none when None.
    """
    from training.evaluate import evaluate_version

    return evaluate_version(
        Path(version_dir), Path(dataset_dir), split=split, device=device, plots_dir=plots_dir
    )


def finish_version(
    kind: str,
    card: ModelCard,
    history: list[dict[str, Any]],
    dataset_dir: Path,
    out_dir: Path,
    device: str,
    progress: ProgressFn | None,
    curves: list[str],
) -> TrainResult:
    """What every trainer does last: the held-out evaluation, metrics/history JSON, the training curves."""
    from training.artifacts import write_json_atomic
    from training.plots import training_curves

    report(progress, stage="eval", epoch=len(history), epochs=len(history))
    metrics = evaluate(out_dir, dataset_dir, split="val", device=device, plots_dir=out_dir)
    metrics["primary"] = PRIMARY_METRIC[kind]
    write_json_atomic(out_dir / "history.json", history)
    write_json_atomic(out_dir / "metrics.json", metrics)
    training_curves(history, out_dir / "training_curves.png", ["loss", *curves])
    return TrainResult(card=card, metrics=metrics, history=history)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (and ask cuDNN for deterministic kernels)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def choose_threads(cores: int, others: float, env: str | None = None) -> int:
    """Torch threads for training on a CPU: ``OMP_NUM_THREADS`` when set, else every idle core.

    ``others``: how many cores other processes keep busy right now (:func:`busy_cores`). On a shared
    machine a second thread on a core another process keeps busy makes each step several times slower
    (OpenMP threads wait for each other; measured in BENCHMARKS.md), so a core more than half busy is left
    out.

    >>> choose_threads(2, 0.1), choose_threads(2, 0.8), choose_threads(16, 3.2), choose_threads(8, 9.0, "4")
    (2, 1, 13, 4)
    """
    if env and env.strip().isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(cores, cores - math.floor(others + 0.5)))


def _proc_stat() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine from /proc/stat."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(fields[:8]) - idle) / hz, sum(fields[:8]) / hz


def busy_cores(sample_s: float = 0.3, samples: int = 3) -> float:
    """Cores' worth of CPU other processes keep busy now: machine-wide busy time over ``sample_s`` minus
    this process's own (it sleeps meanwhile); the least of ``samples`` samples, so a neighbour's short
    burst does not count but a steady one does. Falls back to the 1-minute load average minus one where
    /proc/stat is not readable."""
    try:
        seen = []
        for _ in range(samples):
            busy0, _ = _proc_stat()
            own0, t0 = sum(os.times()[:2]), time.monotonic()
            time.sleep(sample_s)
            busy1, _ = _proc_stat()
            own1, t1 = sum(os.times()[:2]), time.monotonic()
            seen.append(max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0)))
        return min(seen)
    except (OSError, ValueError, IndexError):
        return max(0.0, os.getloadavg()[0] - 1.0)


def set_train_threads(threads: int | None = None) -> int:
    """Set torch's thread count to ``threads`` (default :func:`choose_threads` now); return it.

    Plain ultralytics sets ``cpu_count - 1`` threads (one on a two-core machine); the trainers call this
    once at the start and again, with the same count, after each ultralytics call that resets it.
    """
    import torch

    if threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = choose_threads(cores, busy_cores(), os.environ.get("OMP_NUM_THREADS"))
    torch.set_num_threads(threads)
    return threads


def report(progress: ProgressFn | None, **kwargs: Any) -> None:
    """Call the progress callback if there is one (a :class:`Cancelled` it raises propagates)."""
    if progress is not None:
        progress(Progress(**kwargs))
