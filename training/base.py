"""The training contract: what a trainer is given, reports, returns and raises — and a kind's row type.

Nothing here names a kind: :mod:`training.kinds` holds the table of kinds (one :class:`KindSpec` row
each, as ultralytics' ``task_map``, found by :func:`training.kinds.spec`), and
:func:`training.trainer.get_trainer` the trainer they share.

A training run (tiny settings; seconds on a CPU)::

    result = get_trainer("segment").train(Path("data/seg"), TrainConfig(epochs=2, imgsz=64), Path("staging/x"))
    result.metrics["dice"], result.card.classes
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from kernel.kinds import Kind
from training.artifacts import ModelCard

if TYPE_CHECKING:
    from training.corrections import CorrectionModel
    from training.slide_fields import SlideSpec


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


class Cancelled(Exception):
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
    segment: the encoder (``tu-tf_efficientnet_lite0``, ``resnet34``; the architecture is ``extra["arch"]``);
    classify: a timm model name (``tf_efficientnet_lite0``). None: the kind's default
    (:attr:`KindSpec.default_model`)."""
    weights: Path | None = None
    """A local ``.pt`` (detect), ``.safetensors``/``.pth`` state dict, or a histoloop version directory to
    fine-tune from. Never downloaded."""
    pretrained: str | None = None
    """segment (the encoder) and classify (the backbone, its head re-initialised for the project's classes):
    where the starting features come from (:mod:`training.pretrained`): ``imagenet`` (the packaged ImageNet
    EfficientNet-Lite0), a local state dict file (timm / torchvision / smp encoder / histoloop;
    ``.safetensors``/``.pth``/``.pt``, read with weights_only), ``hub:<timm or hf-hub name>`` (only with
    ``allow_hub``) or ``none`` (random init). None: ``imagenet`` where the model has packaged weights (the
    default models do), else random init. Applied before ``weights``."""
    allow_hub: bool = False
    """Let ``pretrained = "hub:..."`` load through timm/huggingface_hub (honouring the user's
    ``HF_HUB_OFFLINE``). Off: a hub value is refused, nothing is downloaded."""
    encoder_weights: Path | None = None
    """segment: the older name of a file value of ``pretrained`` (a local encoder state dict)."""
    time: float | None = None
    """A training time budget in minutes: training stops when it is spent and keeps the best epoch (the
    learning-rate schedule is fitted to the budget). detect: ultralytics' own ``time`` (which is in hours).
    None: ``epochs`` decide."""
    patience: int = 20
    workers: int = 0
    devices: int | list[int] | None = None
    """One training on several devices (torch DDP; ultralytics' own for detect): CUDA indices as this
    process sees them (``[0, 1]``) or a count (``2``: ``cuda:0``, ``cuda:1``; on the CPU two gloo processes).
    None: one device (:mod:`training.distributed`)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weights"] = str(self.weights) if self.weights else None
        d["encoder_weights"] = str(self.encoder_weights) if self.encoder_weights else None
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


@runtime_checkable
class StageProgress(Protocol):
    """A progress callback that also hears the pipeline's stages (``convert``, ``train``, ``register``...):
    the workers' :class:`workers.progress.JobProgress`."""

    def __call__(self, progress: Progress) -> None: ...

    def stage(self, stage: str, **extra: Any) -> None: ...


@dataclass
class Fitted:
    """What a kind's ``fit`` leaves: the card and weights it wrote into ``out_dir``, and its epoch history."""

    card: ModelCard
    history: list[dict[str, Any]]


@dataclass
class TrainResult:
    card: ModelCard
    metrics: dict[str, Any]
    history: list[dict[str, Any]]


def fill_bias(layer: Any, bias: float) -> None:
    """Every output of ``layer`` gets the bias ``bias`` (:attr:`KindSpec.head_bias` of a detector or a
    segmenter: every box is a detection, every pixel the class)."""
    layer.bias.fill_(bias)


@dataclass(frozen=True)
class KindSpec:
    """One kind, one row: everything histoloop does with a kind is found here (see :mod:`training.kinds`).

    - ``fit(dataset_dir, config, out_dir, progress) -> Fitted``: train, write the card and weights;
    - ``build_model(card)``: the untrained ``torch.nn.Module`` a card describes (nothing downloaded);
    - ``predictor(card, model, device)``: the :class:`training.inference.Predictor` of a loaded model;
    - ``evaluate(card, version_dir, dataset_dir, split, device, plots_dir) -> metrics``, among them
      ``corrections_ratio`` (:data:`kernel.kinds.CORRECTIONS_RATIO`): its ``corrections`` model's count on
      the suggestions the version serves, over the count from scratch;
    - ``check_dataset(dataset_dir) -> classes``: the dataset layout check (:class:`TrainingError`);
    - ``default_model``: ``TrainConfig.model`` when none is given; ``curves``: history keys to plot;
    - ``corrections``: how a specialist corrects its suggestions in Label Studio
      (:class:`training.corrections.CorrectionModel`);
    - ``slide``: how its model goes over a whole slide (:class:`training.slide_fields.SlideSpec`);
    - ``head(model)``: the output layers of a built model, ``head_bias(layer, bias)`` how an untrained
      version's bias is set on one (:func:`training.untrained.untrained_state`);
    - ``quiet(config_dir)``: switches its training library's own per-epoch log off (the CLI's progress
      bar shows the epochs), None when it has none.
    """

    kind: Kind
    fit: Callable[..., Fitted]
    build_model: Callable[[ModelCard], Any]
    predictor: Callable[..., Any]
    evaluate: Callable[..., dict[str, Any]]
    check_dataset: Callable[[Path], list[str]]
    default_model: str
    corrections: CorrectionModel
    slide: SlideSpec
    head: Callable[[Any], list[Any]]
    curves: tuple[str, ...] = ()
    evaluates_files: bool = False
    """Its ``evaluate`` reads the dataset's image files itself (not through the predictor)."""
    head_bias: Callable[[Any, float], None] = fill_bias
    quiet: Callable[[Path | None], None] | None = None


def report(progress: ProgressFn | None, **kwargs: Any) -> None:
    """Call the progress callback if there is one (a :class:`Cancelled` it raises propagates)."""
    if progress is not None:
        progress(Progress(**kwargs))
