"""The detector: ultralytics YOLO trained on the YOLO dataset the converters write, fully offline.

The model is built from its YAML (``yolo11n.yaml`` by default; any ultralytics detection YAML such as
``yolov8s.yaml`` or ``yolov5nu.yaml``) with ``nc`` taken from the dataset, or fine-tuned from local weights
(``TrainConfig.weights``): a histoloop version directory / ``.safetensors`` state dict (no code runs on
load), or an ultralytics ``.pt`` checkpoint. A ``.pt`` is a pickle and is loaded the way ultralytics loads
it, which can run code: **only pass ``.pt`` files you trust, from your own disk**. Nothing is downloaded.

Training runs ultralytics' own trainer (``model.train``) with its run directory at ``out_dir/train``
(not ``runs/``), our own ``data.yaml`` (absolute path, no ``download:`` key), ``amp`` only where the AMP
check model is local, and torch allowed every idle core (:func:`training.base.choose_threads`): plain
ultralytics on a CPU sets torch to ``cpu_count - 1`` threads (one thread on two cores). The best epoch's weights become the version's
``weights.safetensors``; ultralytics' pickled ``.pt`` files are removed from the version.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from training.artifacts import ModelCard, save_weights
from training.base import (
    Cancelled,
    ProgressFn,
    TrainConfig,
    TrainingError,
    TrainResult,
    finish_version,
    report,
    set_train_threads,
)
from training.datasets import check_detect, list_images

log = logging.getLogger(__name__)
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


def training_scale(dataset_dir: Path, imgsz: int) -> float:
    """``imgsz / median long side`` of the training images: how much ultralytics resizes them."""
    from PIL import Image

    sides = []
    for p in list_images(dataset_dir / "images" / "train")[:200]:
        with Image.open(p) as im:
            sides.append(max(im.size))
    return float(imgsz / np.median(sides)) if sides else 1.0


def _source_module(weights: Path):
    """The ``nn.Module`` to transfer weights from: a version dir / safetensors, or a trusted local .pt."""
    from training.artifacts import CARD_FILE, ArtifactError, ModelCard, load_weights

    weights = Path(weights)
    if not weights.exists():
        raise TrainingError(f"{weights}: weights file not found")
    version = weights if weights.is_dir() else weights.parent
    if (version / CARD_FILE).is_file() and (weights.is_dir() or weights.suffix == ".safetensors"):
        from training.inference import build_model

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


class DetectTrainer:
    kind = "detect"

    def train(
        self, dataset_dir: Path, config: TrainConfig, out_dir: Path, progress: ProgressFn | None = None
    ) -> TrainResult:
        from training.offline import amp_allowed, ultralytics

        dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
        names = check_detect(dataset_dir)
        ultralytics()
        from ultralytics import YOLO
        from ultralytics.nn.tasks import load_checkpoint

        from training.inference import resolve_device

        device = resolve_device(config.device)
        run_dir = out_dir / "train"
        data_yaml = write_data_yaml(dataset_dir, names, out_dir / "data.yaml")
        model_name = config.model_name(self.kind)
        if not model_name.endswith((".yaml", ".yml")):
            raise TrainingError(
                f"{model_name}: give a model YAML (e.g. yolo11n.yaml); weights go in --weights"
            )
        try:
            yolo = YOLO(model_name, task="detect")
        except (FileNotFoundError, KeyError, ValueError) as exc:
            raise TrainingError(f"{model_name}: unknown ultralytics model YAML ({exc})") from exc
        if config.weights:
            source = _source_module(Path(config.weights))
            _check_transfer(source, yolo.model, Path(config.weights))
            yolo.load(source)

        history: list[dict[str, Any]] = []
        state = {"step": 0}
        threads = set_train_threads() if device == "cpu" else None

        def on_epoch_start(trainer) -> None:
            if threads:
                set_train_threads(threads)
            state["step"] = 0

        def on_batch_end(trainer) -> None:
            state["step"] += 1
            report(
                progress, stage="train", epoch=trainer.epoch + 1, epochs=trainer.epochs, step=state["step"],
                steps=len(trainer.train_loader), loss=_loss(trainer),
            )  # fmt: skip

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
        args = dict(
            data=str(data_yaml), epochs=config.epochs, batch=config.batch, imgsz=config.imgsz,
            device="cpu" if device == "cpu" else device.replace("cuda:", "").replace("cuda", "0"),
            seed=config.seed, deterministic=True, workers=config.workers, patience=config.patience,
            project=str(out_dir), name="train", exist_ok=True, amp=amp_allowed(device), plots=True,
            verbose=False, pretrained=bool(config.weights),
        )  # fmt: skip
        if config.lr:
            args["lr0"] = config.lr
        args.update(config.extra.get("ultralytics", {}))
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

        best = run_dir / "weights" / "best.pt"
        best = best if best.is_file() else run_dir / "weights" / "last.pt"
        trained, _ = load_checkpoint(str(best))  # written by this run into our staging dir
        card = ModelCard(
            kind="detect", classes=names,
            arch={"model": model_name, "yaml": trained.yaml},
            input_size=config.imgsz, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
            extra={"scale": training_scale(dataset_dir, config.imgsz), "framework": "ultralytics", "cpu_threads": threads,
                   "cls_width": int(trained.model[-1].cv3[0][-1].in_channels)},
        )  # fmt: skip
        save_weights(trained.float().state_dict(), out_dir)
        card.save(out_dir)
        shutil.rmtree(run_dir / "weights", ignore_errors=True)  # pickles; the version has safetensors

        return finish_version(
            "detect", card, history, dataset_dir, out_dir, device, progress, ["mAP50", "mAP50-95"]
        )
