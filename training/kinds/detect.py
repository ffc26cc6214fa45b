"""The detector: ultralytics YOLO trained on the YOLO dataset the converters write, fully offline.

The model is built from its YAML (``yolo11n-lite0.yaml`` by default: YOLO11n's neck and head on the packaged
ImageNet EfficientNet-Lite0, :mod:`training.backbones`; any ultralytics detection YAML such as ``yolo11n.yaml``,
``yolov8s.yaml`` or ``yolov5nu.yaml``, whose own backbones start from random weights) with ``nc`` taken from
the dataset, or fine-tuned from local weights
(``TrainConfig.weights``): a histoloop version directory / ``.safetensors`` state dict (no code runs on
load), or an ultralytics ``.pt`` checkpoint. A ``.pt`` is a pickle and is loaded the way ultralytics loads
it, which can run code: **only pass ``.pt`` files you trust, from your own disk**. Nothing is downloaded.

Training runs ultralytics' own trainer (``model.train``) with its run directory at ``out_dir/train``
(not ``runs/``), our own ``data.yaml`` (absolute path, no ``download:`` key), ``amp`` only where the AMP
check model is local, and torch allowed every idle core (:func:`training.runtime.choose_threads`): plain
ultralytics on a CPU sets torch to ``cpu_count - 1`` threads (one thread on two cores). The best epoch's weights become the version's
``weights.safetensors``; ultralytics' pickled ``.pt`` files are removed from the version.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from converters.layout import DATA_YAML, DatasetLayout
from training import backbones, pretrained
from training.artifacts import ModelCard, load_weights, save_weights
from training.base import Cancelled, Fitted, KindSpec, ProgressFn, TrainConfig, TrainingError, report
from training.corrections import BOX_CORRECTIONS
from training.datasets import check_detect, detect_names, list_images
from training.inference import Detections, TiledPredictor, _resize
from training.metrics import f1
from training.offline import amp_allowed
from training.runtime import resolve_device, set_train_threads
from training.slide_fields import BOX_FIELDS

log = logging.getLogger(__name__)
DEFAULT_MODEL = "yolo11n-lite0.yaml"
"""YOLO11n's neck and head on EfficientNet-Lite0 features that start from the packaged ImageNet weights
(:mod:`training.backbones`): at the default 30 epochs it more than doubles yolo11n's held-out box AP@0.5
(BENCHMARKS.md, "Boxes from pretrained features")."""
CARD_MODEL = "yolo11n.yaml"
"""The model of a card that names none (versions trained before cards recorded it)."""
MIN_TRANSFER = 0.5
"""Fine-tuning weights must fill at least this share of the backbone+neck tensors, else they are for
another architecture."""


def write_data_yaml(dataset_dir: Path, names: list[str], target: Path) -> Path:
    """Our own data.yaml for ultralytics: absolute dataset path, train/val, names; no ``download:``."""
    import yaml

    data = {
        "path": str(Path(dataset_dir).resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(names)),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def training_scale(dataset_dir: Path, imgsz: int, split: str = "train") -> float:
    """``imgsz / median long side`` of the split's images: how much ultralytics resizes them."""
    from PIL import Image

    sides = []
    for p in list_images(DatasetLayout(dataset_dir).images(split))[:200]:
        with Image.open(p) as im:
            sides.append(max(im.size))
    return float(imgsz / np.median(sides)) if sides else 1.0


def _needs_tiles(dataset_dir: Path, imgsz: int) -> bool:
    """Training fields much larger than the model input (a 1000 px MoNuSeg tile at imgsz 256) are cut into
    tiles: shrinking them to imgsz would make nuclei 4 px wide. Only datasets written by the converters
    (with a manifest) are tiled."""
    layout = DatasetLayout(dataset_dir)
    return layout.manifest.is_file() and training_scale(dataset_dir, imgsz) < 1 / 1.5


def _tiles(dataset_dir: Path, imgsz: int, out: Path) -> Path:
    """The dataset cut into ``imgsz`` tiles (a quarter overlapping) with :func:`converters.tiling.tile_dataset`;
    boxes cut at a border kept when half of them remains."""
    from converters.tiling import tile_dataset

    report = tile_dataset(dataset_dir, out, tile=imgsz, overlap=imgsz // 4, min_visible=0.5)
    if not report.converted:
        raise TrainingError(f"{dataset_dir}: no tiles could be cut ({report.summary()})")
    return out


def _source_module(weights: Path):
    """The ``nn.Module`` to transfer weights from: a version dir / safetensors, or a trusted local .pt."""
    from training.artifacts import CARD_FILE, ArtifactError

    weights = Path(weights)
    if not weights.exists():
        raise TrainingError(f"{weights}: weights file not found")
    version = weights if weights.is_dir() else weights.parent
    if (version / CARD_FILE).is_file() and (weights.is_dir() or weights.suffix == ".safetensors"):
        try:
            card = ModelCard.load(version)
            if card.kind != "detect":
                raise TrainingError(f"{weights}: a {card.kind} model, not a detector")
            model = build_model(card)
            model.load_state_dict(load_weights(version), strict=True)
        except (ArtifactError, RuntimeError) as exc:
            raise TrainingError(f"{weights}: cannot load: {exc}") from exc
        return model
    if weights.suffix != ".pt":
        raise TrainingError(
            f"{weights}: expected a histoloop version directory, .safetensors or an ultralytics .pt"
        )
    from ultralytics.nn.tasks import load_checkpoint

    try:
        model, _ = load_checkpoint(str(weights))  # pickle: trusted local files only (see module docstring)
    except Exception as exc:
        raise TrainingError(f"{weights}: not an ultralytics checkpoint ({exc})") from exc
    return model


def _check_transfer(source, target, weights: Path) -> None:
    src = source.float().state_dict()
    tgt = target.state_dict()
    head = f"model.{len(target.model) - 1}."
    body = [k for k in tgt if not k.startswith(head)]
    fits = sum(1 for k in body if k in src and src[k].shape == tgt[k].shape)
    if not body or fits / len(body) < MIN_TRANSFER:
        raise TrainingError(
            f"{weights}: weights of the wrong architecture for {target.yaml.get('yaml_file', 'the model')} "
            f"({fits}/{len(body)} tensors fit)"
        )


def _name(key: str) -> str:
    """ultralytics' ``metrics/mAP50(B)`` → ``mAP50``, ``val/box_loss`` → ``val_box_loss``."""
    return key.removeprefix("metrics/").removesuffix("(B)").replace("/", "_")


def _loss(trainer) -> float | None:
    """The running mean training loss (box + cls + dfl) of ultralytics' trainer."""
    t = trainer.tloss
    if t is None:
        return None
    values = t.values() if isinstance(t, dict) else [t.sum()]
    return float(sum(float(v) for v in values))


def _ddp_devices(config: TrainConfig, device: str) -> str | None:
    """ultralytics' device string for its built-in DDP (``"0,1"``) when ``config.devices`` asks for several
    GPUs; None for one device. Several CPU processes are not something ultralytics does: one is used."""
    from training.distributed import world_size

    if world_size(config) < 2:
        return None
    if not device.startswith("cuda"):
        log.warning("detect: devices=%s ignored on %s (ultralytics' DDP needs GPUs)", config.devices, device)
        return None
    devices = config.devices
    indices = devices if isinstance(devices, list) else list(range(int(devices or 1)))
    return ",".join(str(i) for i in indices)


def _results_csv(path: Path) -> list[dict[str, Any]]:
    """The epoch history ultralytics wrote (``results.csv``), in the names the callbacks give."""
    import csv

    if not path.is_file():
        return []
    history = []
    with open(path, newline="") as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, Any] = {
                _name(k.strip()): float(v) for k, v in raw.items() if k and v not in (None, "")
            }
            row["epoch"] = int(row.get("epoch", len(history) + 1))
            losses = [v for k, v in row.items() if k.startswith("train_")]
            row["loss"] = sum(losses) if losses else None
            history.append(row)
    return history


def _model(config: TrainConfig) -> tuple[Any, dict[str, Any]]:
    """The ultralytics ``YOLO`` to train and the provenance of its starting features. A YAML with a timm
    backbone (:mod:`training.backbones`) starts that backbone from ``config.pretrained``
    (:mod:`training.pretrained`; unset: the packaged ImageNet weights); YOLO's own backbones start from
    random weights. Fine-tuning weights (``config.weights``) replace either."""
    from ultralytics import YOLO

    model_name = config.model or DEFAULT_MODEL
    if not model_name.endswith((".yaml", ".yml")):
        raise TrainingError(f"{model_name}: give a model YAML (e.g. yolo11n.yaml); weights go in --weights")
    backbones.register()
    try:
        yolo = YOLO(backbones.model_yaml(model_name), task="detect")
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise TrainingError(f"{model_name}: unknown ultralytics model YAML ({exc})") from exc
    backbone = backbones.backbone_of(yolo.model)
    if backbone is None:
        if config.pretrained not in (None, "", pretrained.NONE):
            raise TrainingError(
                f"pretrained {config.pretrained!r}: {model_name} has no timm backbone to load it into "
                f"(use {DEFAULT_MODEL} or another YAML with a TimmBackbone layer, or --weights)"
            )
        start = pretrained.resolve(pretrained.NONE, None)
    else:
        start = pretrained.resolve(config.pretrained, backbone.name, config.allow_hub)
    if config.weights:
        source = _source_module(Path(config.weights))
        _check_transfer(source, yolo.model, Path(config.weights))
        yolo.load(source)
    elif backbone is not None and start.state is not None:
        pretrained.load_pretrained(backbone.body, start)
        yolo.load(yolo.model)  # a loaded model: ultralytics' trainer starts from it, not from the YAML
    return yolo, start.provenance


def _add_callbacks(
    yolo: Any, progress: ProgressFn | None, threads: int | None, history: list[dict[str, Any]]
) -> None:
    """Progress per batch, a history row per validated epoch, and our torch threads kept."""
    state = {"step": 0}

    def on_epoch_start(trainer) -> None:
        if threads:
            set_train_threads(threads)
        state["step"] = 0

    def on_batch_end(trainer) -> None:
        state["step"] += 1
        report(
            progress,
            stage="train",
            epoch=trainer.epoch + 1,
            epochs=trainer.epochs,
            step=state["step"],
            steps=len(trainer.train_loader),
            loss=_loss(trainer),
        )

    def on_fit_epoch_end(trainer) -> None:
        if not getattr(trainer, "metrics", None) or trainer.epoch + 1 > trainer.epochs:
            return
        row = {"epoch": trainer.epoch + 1, **{_name(k): float(v) for k, v in trainer.metrics.items()}}
        row["loss"] = _loss(trainer)
        if not history or history[-1]["epoch"] != row["epoch"]:
            history.append(row)
            report(progress, stage="val", epoch=row["epoch"], epochs=trainer.epochs, metrics=row)

    if threads:  # ultralytics' select_device() sets cpu_count - 1 threads; put ours back
        yolo.add_callback("on_pretrain_routine_end", lambda t: set_train_threads(threads))
    yolo.add_callback("on_train_epoch_start", on_epoch_start)
    yolo.add_callback("on_train_batch_end", on_batch_end)
    yolo.add_callback("on_fit_epoch_end", on_fit_epoch_end)


def _train_args(
    config: TrainConfig, device: str, data_yaml: Path, out_dir: Path, yolo: Any
) -> dict[str, Any]:
    """The arguments of ultralytics' ``model.train``."""
    gpus = _ddp_devices(config, device)
    if gpus and "," in gpus and backbones.backbone_of(yolo.model) is not None:
        # ultralytics' DDP workers rebuild the model from its YAML in fresh processes, where the timm layer
        # is not registered
        log.warning("detect: %s trains on one GPU (a timm backbone does not run in ultralytics' DDP)", gpus)
        gpus = gpus.split(",")[0]
    args = {
        "data": str(data_yaml),
        "epochs": config.epochs,
        "batch": config.batch,
        "imgsz": config.imgsz,
        "device": gpus or ("cpu" if device == "cpu" else device.replace("cuda:", "").replace("cuda", "0")),
        "seed": config.seed,
        "deterministic": True,
        "workers": config.workers,
        "patience": config.patience,
        "project": str(out_dir),
        "name": "train",
        "exist_ok": True,
        "amp": amp_allowed(device),
        "plots": True,
        "verbose": False,
        "pretrained": bool(yolo.ckpt),  # False would make the trainer rebuild the model from its YAML
    }
    if config.lr:
        args["lr0"] = config.lr
    if config.time:
        args["time"] = config.time / 60  # ultralytics' time is in hours; it overrides epochs
    args.update(config.extra.get("ultralytics", {}))
    return args


def fit(dataset_dir: Path, config: TrainConfig, out_dir: Path, progress: ProgressFn | None = None) -> Fitted:
    """Train a detect model on ``dataset_dir`` into ``out_dir`` (card and weights); see the module docstring."""
    from training.offline import ultralytics

    # absolute: ultralytics puts a relative ``project`` under its own runs folder (and the weights with it)
    dataset_dir, out_dir = Path(dataset_dir).resolve(), Path(out_dir).resolve()
    names = check_detect(dataset_dir)
    ultralytics()
    from ultralytics.nn.tasks import load_checkpoint

    device = resolve_device(config.device)
    run_dir = out_dir / "train"
    source_dir = dataset_dir
    native = bool(config.extra.get("tile", True)) and _needs_tiles(dataset_dir, config.imgsz)
    if native:  # large fields: train on imgsz tiles at full resolution, not on the field shrunk to imgsz
        dataset_dir = _tiles(dataset_dir, config.imgsz, out_dir / "train" / "tiles")
    data_yaml = write_data_yaml(dataset_dir, names, out_dir / DATA_YAML)
    model_name = config.model or DEFAULT_MODEL
    yolo, provenance = _model(config)
    history: list[dict[str, Any]] = []
    threads = set_train_threads() if device == "cpu" else None
    _add_callbacks(yolo, progress, threads, history)
    args = _train_args(config, device, data_yaml, out_dir, yolo)
    try:
        yolo.train(**args)
    except Cancelled:
        raise
    except (FileNotFoundError, RuntimeError) as exc:
        if "dataset" in str(exc).lower() or "images not found" in str(exc).lower():
            raise TrainingError(f"{dataset_dir}: ultralytics refused the dataset: {exc}") from exc
        raise
    if threads:
        set_train_threads(threads)
    if not history:  # ultralytics' DDP ran the epochs in processes of its own, without our callbacks
        history = _results_csv(run_dir / "results.csv")

    best = run_dir / "weights" / "best.pt"
    best = best if best.is_file() else run_dir / "weights" / "last.pt"
    if not best.is_file():  # never let ultralytics' loader go looking for it on the network
        raise RuntimeError(f"ultralytics wrote no weights into {run_dir / 'weights'}")
    trained, _ = load_checkpoint(str(best))  # written by this run into our staging dir
    card = ModelCard(
        kind="detect",
        classes=names,
        arch={"model": model_name, "yaml": trained.yaml},
        input_size=config.imgsz,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        extra={
            "scale": 1.0 if native else training_scale(dataset_dir, config.imgsz),
            "framework": "ultralytics",
            "cpu_threads": threads,
            "cls_width": int(trained.model[-1].cv3[0][-1].in_channels),
            "native": native,
            "pretrained": provenance,
        },
    )
    save_weights(trained.float().state_dict(), out_dir)
    card.save(out_dir)
    shutil.rmtree(run_dir / "weights", ignore_errors=True)  # pickles; the version has safetensors
    if native:
        shutil.rmtree(dataset_dir, ignore_errors=True)  # the tiles (the dataset itself is at source_dir)
    log.debug("trained on %s", source_dir)

    return Fitted(card, history)


def build_model(card: ModelCard) -> Any:
    """The YOLO ``DetectionModel`` of a card (from its YAML; random init)."""
    from training.offline import ultralytics

    ultralytics()
    backbones.register()
    from ultralytics.nn.tasks import DetectionModel

    cfg = card.arch.get("yaml") or backbones.model_yaml(card.arch.get("model", CARD_MODEL))
    model = DetectionModel(dict(cfg) if isinstance(cfg, dict) else cfg, nc=len(card.classes), verbose=False)
    width = card.extra.get("cls_width")
    if width and model.model[-1].cv3[0][-1].in_channels != width:
        # Fine-tuned from a model with more classes: ultralytics keeps the source's class-branch width
        # (max(channels, min(nc, 100))). Let its own loader rebuild the branch from a donor that wide.
        donor = DetectionModel(dict(cfg) if isinstance(cfg, dict) else cfg, nc=int(width), verbose=False)
        model.load(donor, verbose=False)
    return model


class DetectPredictor(TiledPredictor):
    """YOLO boxes; ``conf``/``iou`` are the score floor and the NMS IoU (within and across tiles)."""

    conf = 0.05
    iou = 0.5
    max_det = 1000
    cpu_tile_batch = 1
    """On a CPU yolo11n at 640 px took 2.8x longer per image in batches of 8 than one at a time
    (BENCHMARKS.md, Backend, 2026-12-01): its activations outgrow the caches. The segmenter and the
    classifier gain from batches there; on an accelerator every kind batches ``TILE_BATCH`` tiles."""

    def __init__(self, card: ModelCard, model: Any, device: str) -> None:
        super().__init__(card, model.fuse(verbose=False), device)

    def predict(self, image: np.ndarray) -> Detections:
        return self.predict_many([image])[0]

    def predict_many(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """The detections of each image; the tiles of all images go through the model together."""
        import torch
        import torchvision
        from ultralytics.utils.nms import non_max_suppression

        images = [self._prepare(image) for image in images]
        scale = float(self.card.extra.get("scale", 1.0))
        scaled = [_resize(image, scale) for image in images]
        end2end = bool(getattr(self.model.model[-1], "end2end", False))
        found: list[list[Any]] = [[] for _ in images]
        with torch.inference_mode():
            for owners, windows, x in self._batches_of(scaled, 114):
                out = non_max_suppression(
                    self.model(x), self.conf, self.iou, max_det=self.max_det, end2end=end2end
                )
                for k, (x0, y0, _, _), raw in zip(owners, windows, out, strict=True):
                    det = raw[:, :6].float().cpu()
                    det[:, [0, 2]] += x0
                    det[:, [1, 3]] += y0
                    found[k].append(det)
        return [
            self._detections(image, tiles, scale, torchvision)
            for image, tiles in zip(images, found, strict=True)
        ]

    def _detections(self, image: np.ndarray, found: list[Any], scale: float, torchvision: Any) -> Detections:
        import torch

        det = torch.cat(found) if found else torch.zeros((0, 6))
        if len(found) > 1 and len(det):
            keep = torchvision.ops.batched_nms(det[:, :4], det[:, 4], det[:, 5].long(), self.iou)
            det = det[keep[: self.max_det]]
        h, w = image.shape[:2]
        boxes = (det[:, :4].numpy() / scale).astype(np.float32)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return Detections(
            boxes=boxes,
            scores=det[:, 4].numpy().astype(np.float32),
            labels=det[:, 5].numpy().astype(np.int64),
            classes=list(self.card.classes),
        )


def evaluate(
    card: ModelCard, version_dir: Path, dataset_dir: Path, split: str, device: str, plots_dir: Path | None
) -> dict[str, Any]:
    """ultralytics' DetectionValidator on the split: P, R, F1, mAP50, mAP50-95, AP50 per class; its PR curve and
    confusion matrix as ``pr_curve.png`` / ``confusion_matrix.png`` in ``plots_dir``."""
    import torch

    from training.offline import ultralytics

    ultralytics()
    from ultralytics.models.yolo.detect import DetectionValidator

    names = detect_names(dataset_dir)
    if names != card.classes:
        raise TrainingError(f"{dataset_dir}: classes {names} differ from the model's {card.classes}")
    if not list_images(DatasetLayout(dataset_dir).images(split)):
        raise TrainingError(f"{dataset_dir}: no {split} images to evaluate on")
    model = build_model(card)
    model.load_state_dict(load_weights(version_dir), strict=True)
    model.names = dict(enumerate(card.classes))
    with tempfile.TemporaryDirectory(prefix="histoloop-val-") as tmp:
        data_yaml = write_data_yaml(dataset_dir, names, Path(tmp) / "data.yaml")
        if DatasetLayout(dataset_dir).images(split).is_dir() and split not in ("train", "val"):
            data_yaml.write_text(data_yaml.read_text() + f"{split}: images/{split}\n")
        imgsz = card.input_size
        if card.extra.get("native"):  # trained on tiles at full resolution: validate at the fields' own size
            imgsz = int(
                np.ceil(card.input_size / training_scale(dataset_dir, card.input_size, split) / 32) * 32
            )
        args = {
            "data": str(data_yaml),
            "imgsz": imgsz,
            "batch": 8 if imgsz <= 1024 else 1,
            "split": split,
            "device": device,
            "plots": plots_dir is not None,
            "verbose": False,
            "conf": 0.001,
            "iou": 0.7,
        }
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
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f1": f1(p, r),
            "mAP50": round(float(stats["metrics/mAP50(B)"]), 4),
            "mAP50-95": round(float(stats["metrics/mAP50-95(B)"]), 4),
            "per_class_ap50": per_class,
            "n_images": int(validator.seen),
        }
        metrics.update(_threshold(card, model, dataset_dir, split, device))
        if plots_dir is not None:
            for src, dst in (
                ("BoxPR_curve.png", "pr_curve.png"),
                ("confusion_matrix.png", "confusion_matrix.png"),
            ):
                if (Path(tmp) / "val" / src).is_file():
                    shutil.copyfile(Path(tmp) / "val" / src, Path(plots_dir) / dst)
    return metrics


def true_boxes(label_path: Path, width: int, height: int) -> np.ndarray:
    """(N, 4) pixel xyxy boxes of a YOLO label file (normalised ``class cx cy w h`` lines)."""
    rows = []
    if label_path.is_file():
        for line in label_path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5:
                cx, cy, w, h = (float(v) for v in parts[1:])
                rows.append(
                    ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
                )
    return np.array(rows, np.float64).reshape(-1, 4)


def _threshold(card: ModelCard, model: Any, dataset_dir: Path, split: str, device: str) -> dict[str, Any]:
    """The box score threshold that minimises a specialist's corrections on the split, with the served
    predictor, and the corrections ratio at the threshold the version serves
    (:func:`training.objects.choose_threshold`)."""
    from training.corrections import box_iou
    from training.datasets import read_image
    from training.objects import choose_threshold

    layout = DatasetLayout(dataset_dir)
    predictor = DetectPredictor(card, model, device)
    scored = []
    for path in list_images(layout.images(split)):
        image = read_image(path)
        det = predictor.predict(image)
        truth = true_boxes(layout.label(split, path.stem), image.shape[1], image.shape[0])
        scored.append((det.scores, box_iou(det.boxes, truth), len(truth)))
    return choose_threshold(scored, served=card.extra.get("score_threshold"))


def head(model: Any) -> list[Any]:
    """The last layer of each class branch of the detection head: its bias is every box's class logit."""
    return [seq[-1] for seq in model.model[-1].cv3]


def quiet(config_dir: Path | None = None) -> None:
    """ultralytics' own per-epoch log switched off (warnings still shown)."""
    from training.offline import ultralytics

    ultralytics(config_dir)  # its import sets its logger up; quieten it after that
    logging.getLogger("ultralytics").setLevel(logging.WARNING)


SPEC = KindSpec(
    kind="detect",
    fit=fit,
    build_model=build_model,
    predictor=DetectPredictor,
    evaluate=evaluate,
    check_dataset=check_detect,
    default_model=DEFAULT_MODEL,
    corrections=BOX_CORRECTIONS,
    slide=BOX_FIELDS,
    head=head,
    curves=("mAP50", "mAP50-95"),
    evaluates_files=True,
    quiet=quiet,
)
