"""The segmenter: a segmentation-models-pytorch network (``Unet`` by default; ``UnetPlusPlus``,
``DeepLabV3Plus``, ... by ``extra["arch"]``) with a configurable encoder (``TrainConfig.model``; default
``tu-tf_efficientnet_lite0``, timm's EfficientNet-Lite0 through smp; ``resnet18``, ``efficientnet-b0``...),
trained on random crops of the mask dataset the converters write.

- binary (one class: 1 sigmoid channel, smp DiceLoss + BCE) or multiclass (``1 + C`` softmax channels,
  channel 0 background: DiceLoss + cross-entropy), as :class:`training.artifacts.ModelCard` describes;
  ``extra["mode"]`` forces one.
- crops of ``imgsz`` from tiles of any size (``extra["crops_per_image"]`` per image per epoch, default:
  how many crops fit in the tile, at most 8), flips, 90° rotations and H&E colour jitter.
- **the default recipe** (stable from a few tiles, on a CPU): GroupNorm instead of BatchNorm (the
  statistics of a batch of 8 crops from 3 tiles swing from step to step; BatchNorm's running estimates
  made the per-epoch validation Dice jump between 0.07 and 0.80; timm's BatchNorm+activation layers become
  GroupNorm+the same activation, ``arch["norm_act"]``), an exponential moving average of the
  weights (what is validated and kept), warmup then cosine (training/loop.py), and, for one class, an
  **instance target**: a second channel learns each object's distance to its edge, 1 at its centre
  (:func:`training.objects.centre_of`, from the dataset's ``instances/`` maps, else the mask's connected
  components), and marker-controlled watershed grows one object per predicted centre
  (:func:`training.objects.split_by_centre`), so that touching nuclei come out as separate objects; or
  ``instances = "boundary"``: the objects' 1-px boundaries, split at them
  (:func:`training.objects.split_objects`). Chosen by cross-validation over the four MoNuSeg patients
  (``benchmarks/crossval.py``, BENCHMARKS.md). ``extra``: ``norm`` (``group`` | ``batch``), ``ema`` (decay,
  0 = off), ``instances`` (``distance`` | ``boundary`` | ``none``).
- AdamW, AMP on CUDA only, a checkpoint every epoch and resume (training/loop.py), best epoch on
  validation Dice kept; validation predicts each whole val image by tiles (training/inference.py).
- the encoder starts from ``TrainConfig.pretrained`` (:mod:`training.pretrained`): by default the packaged
  ImageNet EfficientNet-Lite0 (inputs scaled to [-1, 1], the card's ``mean``/``std``), or a local state dict
  (ImageNet or a pathology encoder saved by timm/torchvision/smp: ``.safetensors`` / ``.pth``, read with
  weights_only), a hub model where the project allows the hub, or ``none``; BatchNorm's affine weights carry
  over to GroupNorm. The card's ``extra["pretrained"]`` records where they came from (with the file's
  sha256). ``TrainConfig.weights`` fine-tunes a whole model (a histoloop version directory or state dict).
  Nothing is downloaded unless a project allows the hub.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training import pretrained
from training.artifacts import ModelCard, save_weights
from training.augment import flip_rotate, he_jitter, random_crop, to_tensor
from training.base import Fitted, KindSpec, ProgressFn, TrainConfig, TrainingError
from training.corrections import OBJECT_CORRECTIONS
from training.datasets import (
    check_segment,
    read_image,
    read_instances,
    read_mask,
    segment_pairs,
    valid_areas,
)
from training.inference import SegmentationMap, TiledPredictor, _resize, fitted_model
from training.loop import fit_epochs, load_fine_tune, read_state_dict
from training.metrics import segmentation_metrics
from training.runtime import resolve_device, seed_everything
from training.slide_fields import REGION_FIELDS

DEFAULT_MODEL = "tu-tf_efficientnet_lite0"
"""EfficientNet-Lite0 (timm, through smp's ``tu-`` encoders), with packaged ImageNet weights
(:mod:`training.pretrained`): lighter than resnet18 per step, and pretrained features lift object F1 and AJI
on a few tiles (docs/training.md, "Pretrained weights")."""
EMA_DECAY = 0.99
INSTANCES = ("boundary", "distance", "none")
"""The instance target of a one-class segmenter's second channel (``none``: the mask alone)."""
CENTRE_STEPS = 127
"""A distance map rides in the uint8 crop target as ``foreground + 2 * round(centre * CENTRE_STEPS)``, so that
one crop/flip/rotation moves mask and target together."""
SELECT = ("dice", "pq", "object_f1", "aji")
"""The validation metric that chooses the epoch kept (``extra = { select = "pq" }``; default pixel Dice)."""

ARCHS = (
    "Unet",
    "UnetPlusPlus",
    "DeepLabV3Plus",
    "FPN",
    "Linknet",
    "MAnet",
    "PAN",
    "PSPNet",
    "DeepLabV3",
    "UPerNet",
)


class CropDataset(torch.utils.data.Dataset):
    """Random augmented crops of (image, class-index mask) pairs held in memory."""

    def __init__(
        self, pairs: list[tuple[np.ndarray, np.ndarray]], size: int, crops: int, card: ModelCard, seed: int
    ):
        self.pairs, self.size, self.crops, self.card, self.seed = pairs, size, crops, card, seed

    def __len__(self) -> int:
        return len(self.pairs) * self.crops

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, i, int(torch.randint(0, 2**31, (1,)))])  # new crop each epoch
        image, mask = self.pairs[i // self.crops]
        image, mask = random_crop(image, mask, self.size, rng)
        image, mask = flip_rotate(image, mask, rng)
        image = he_jitter(image, rng)
        x = to_tensor(image, self.card.mean, self.card.std)
        target = self.card.arch.get("instances")
        if target == "boundary":  # mask = foreground + 2 * boundary
            return x, torch.from_numpy(np.stack([mask & 1, mask >> 1]).astype(np.float32))
        if target == "distance":  # mask = foreground + 2 * centre steps
            return x, torch.from_numpy(np.stack([mask & 1, (mask >> 1) / CENTRE_STEPS]).astype(np.float32))
        if self.card.arch["mode"] == "binary":
            return x, torch.from_numpy((mask > 0).astype(np.float32))[None]
        return x, torch.from_numpy(mask.astype(np.int64))


def _loss(mode: str, instances: str = "none"):
    import segmentation_models_pytorch as smp

    if instances == "boundary":  # foreground and boundary channels
        dice, bce = smp.losses.DiceLoss("multilabel", from_logits=True), smp.losses.SoftBCEWithLogitsLoss()
        return lambda logits, y: dice(logits, y) + bce(logits, y)
    if instances == "distance":  # foreground (Dice + BCE) and the centre map (BCE on soft targets + MSE)
        dice, bce = smp.losses.DiceLoss("binary", from_logits=True), smp.losses.SoftBCEWithLogitsLoss()

        def loss(logits, y):
            fg, centre = logits[:, :1], logits[:, 1:]
            mse = torch.nn.functional.mse_loss(centre.sigmoid(), y[:, 1:])
            return dice(fg, y[:, :1]) + bce(fg, y[:, :1]) + bce(centre, y[:, 1:]) + 2 * mse

        return loss
    if mode == "binary":
        dice, bce = smp.losses.DiceLoss("binary", from_logits=True), smp.losses.SoftBCEWithLogitsLoss()
        return lambda logits, y: dice(logits, y) + bce(logits, y)
    dice, ce = smp.losses.DiceLoss("multiclass", from_logits=True), torch.nn.CrossEntropyLoss()
    return lambda logits, y: dice(logits, y) + ce(logits, y)


def _load(
    dataset_dir: Path, split: str, binary: bool, instances: str = "none", min_side: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, target) pairs: the class mask, or foreground + 2 x the instance target (``boundary``: the
    objects' edges; ``distance``: their centre maps in :data:`CENTRE_STEPS`).

    An item padded past its slide's edge (``valid_width`` / ``valid_height`` in the manifest) is cut to
    the part that is the slide; when that part is narrower than ``min_side`` (the training crop), it is
    mirrored out to it, image and target alike, so no crop ever holds the white padding as background."""
    from training.objects import boundary_of, centre_of

    pairs = []
    valid = valid_areas(dataset_dir)
    for img_path, mask_path in segment_pairs(dataset_dir, split):
        image, mask = read_image(img_path), read_mask(mask_path)
        if image.shape[:2] != mask.shape:
            raise TrainingError(f"{mask_path}: mask {mask.shape} does not match image {image.shape[:2]}")
        # a field padded past its slide's edge: cut to the part on the slide, the padding is never learnt
        width, height = valid.get(img_path.stem, mask.shape[::-1])
        cut = (slice(0, height), slice(0, width))
        if instances == "boundary":
            edge = boundary_of(read_instances(mask_path, mask)[cut])
            pairs.append((image[cut], ((mask[cut] > 0) + 2 * edge).astype(np.uint8)))
        elif instances == "distance":
            steps = np.round(centre_of(read_instances(mask_path, mask)[cut]) * CENTRE_STEPS)
            pairs.append((image[cut], ((mask[cut] > 0) + 2 * steps).astype(np.uint8)))
        else:
            pairs.append((image[cut], (mask[cut] > 0).astype(np.uint8) if binary else mask[cut]))
        if img_path.stem in valid:
            pairs[-1] = _mirrored_to(*pairs[-1], min_side)
    return pairs


def _mirrored_to(image: np.ndarray, target: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and target mirrored at their right and bottom edges until each side is at least ``side``."""
    while image.shape[0] < side or image.shape[1] < side:
        ph, pw = max(0, side - image.shape[0]), max(0, side - image.shape[1])
        ph, pw = min(ph, image.shape[0] - 1), min(pw, image.shape[1] - 1)
        if ph <= 0 and pw <= 0:  # one pixel wide: nothing to mirror (pad_to pads it as any small tile)
            break
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        target = np.pad(target, ((0, ph), (0, pw)), mode="reflect")
    return image, target


def fit(dataset_dir: Path, config: TrainConfig, out_dir: Path, progress: ProgressFn | None = None) -> Fitted:
    """Train a segment model on ``dataset_dir`` into ``out_dir`` (card and weights); see the module docstring."""
    from training import distributed
    from training.offline import ensure_offline

    if distributed.needs_launch(config):  # several devices: this process becomes rank 0 of a DDP training
        return distributed.launch(__name__, dataset_dir, config, out_dir, progress)
    ensure_offline()  # HF_HUB_OFFLINE: smp never reaches the hub
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    classes = check_segment(dataset_dir)
    if config.imgsz % 32:
        raise TrainingError(f"imgsz {config.imgsz}: must be a multiple of 32 for smp encoders")
    arch = config.extra.get("arch", "Unet")
    if arch not in ARCHS:
        raise TrainingError(f"unknown segmentation architecture {arch!r} (one of {ARCHS})")
    mode = config.extra.get("mode") or ("binary" if len(classes) == 1 else "multiclass")
    norm = config.extra.get("norm", "group")
    if norm not in ("group", "batch"):
        raise TrainingError(f"norm {norm!r}: group or batch")
    instances = config.extra.get("instances", "distance" if mode == "binary" else "none")
    if instances not in INSTANCES or (instances != "none" and mode != "binary"):
        raise TrainingError(f"instances {instances!r}: 'boundary' or 'distance' (one class only), or 'none'")
    encoder = config.model or DEFAULT_MODEL
    start = pretrained.resolve(
        pretrained.choose(config.pretrained, config.encoder_weights or config.extra.get("encoder_weights")),
        timm_name(encoder),
        config.allow_hub,
    )
    card = ModelCard(
        kind="segment",
        classes=classes,
        input_size=config.imgsz,
        arch={
            "arch": arch,
            "encoder": encoder,
            "mode": mode,
            "norm": norm,
            **({"norm_act": True} if norm == "group" else {}),
            "instances": instances,
        },
        mean=start.mean,
        std=start.std,
        extra={"scale": 1.0, "pretrained": start.provenance},
    )
    device = distributed.rank_device(config, resolve_device(config.device))
    seed_everything(config.seed)
    try:
        model = build_model(card)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise TrainingError(f"cannot build {arch} with encoder {card.arch['encoder']!r}: {exc}") from exc
    pretrained.load_pretrained(model.encoder, start)
    if config.weights:
        load_fine_tune(model, read_state_dict(Path(config.weights)), str(config.weights))

    train_pairs = _load(dataset_dir, "train", mode == "binary", instances, min_side=config.imgsz)
    val_pairs = _load(dataset_dir, "val", mode == "binary")
    area = np.median([p[0].shape[0] * p[0].shape[1] for p in train_pairs])
    # an epoch covers each tile's area about once (at least 8 batches when there are few tiles), so that
    # the per-epoch validation of a large val tile is not most of the run
    fill = -(-8 * config.batch // len(train_pairs))
    crops = int(config.extra.get("crops_per_image") or max(fill, min(16, -(-int(area) // config.imgsz**2))))
    data = CropDataset(train_pairs, config.imgsz, crops, card, config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=config.batch,
        shuffle=True,
        drop_last=len(data) > config.batch,
        num_workers=config.workers,
        generator=gen,
        pin_memory=device.startswith("cuda"),
    )

    select = str(config.extra.get("select", "dice"))
    if select not in SELECT:
        raise TrainingError(f"select {select!r}: the epoch is chosen by one of {', '.join(SELECT)}")
    truths = None
    if select != "dice":  # an object metric: the validation tiles' objects, from the masks read above
        val_masks = [m for _, m in segment_pairs(dataset_dir, "val")]
        truths = [read_instances(m, t) for m, (_, t) in zip(val_masks, val_pairs, strict=True)]

    def validate(m: torch.nn.Module) -> dict[str, Any]:
        from training.objects import pooled_object_metrics

        predictor = SegmentPredictor(card, m, device, channels_last=False)
        segs = [predictor.predict(img) for img, _ in val_pairs]
        preds = [predicted_classes(seg.probs, mode == "binary") for seg in segs]
        got = segmentation_metrics(preds, [t for _, t in val_pairs], classes)
        out = {k: got[k] for k in ("dice", "iou", "pixel_accuracy")}
        if truths is not None:
            objects = pooled_object_metrics([object_map(seg)[0] for seg in segs], truths)
            out.update({k: objects[k] for k in ("object_f1", "pq", "aji")})
        return out

    best, history = fit_epochs(
        model,
        loader,
        _loss(mode, instances),
        validate,
        select,
        config,
        out_dir,
        device,
        progress,
        ema_decay=float(config.extra.get("ema", EMA_DECAY)) or None,
    )
    if distributed.is_main():
        save_weights(best, out_dir)
        card.save(out_dir)
    return Fitted(card, history)


def build_model(card: ModelCard) -> Any:
    """The smp network of a card (``arch``, ``encoder``; 1 channel binary, 1 + C multiclass; random init)."""
    import segmentation_models_pytorch as smp

    mode = card.arch.get("mode", "binary")
    out = 1 if mode == "binary" else 1 + len(card.classes)
    if card.arch.get("instances", "none") != "none":
        out += 1  # the instance target's channel
    model = smp.create_model(
        card.arch.get("arch", "Unet"),
        encoder_name=card.arch.get("encoder", "resnet34"),
        encoder_weights=None,
        classes=out,
    )
    if card.arch.get("norm", "batch") == "group":
        to_group_norm(model, keep_act=bool(card.arch.get("norm_act", False)))
    return model


def timm_name(encoder: str) -> str | None:
    """The timm architecture behind an smp encoder name (``tu-<timm name>``); None for smp's own encoders.

    >>> timm_name("tu-tf_efficientnet_lite0"), timm_name("resnet18")
    ('tf_efficientnet_lite0', None)
    """
    return encoder.removeprefix("tu-") if encoder.startswith("tu-") else None


def to_group_norm(module: Any, keep_act: bool = False) -> Any:
    """Replace every BatchNorm2d of ``module`` by a GroupNorm over the same channels (32 groups where the
    channels allow, else 8, else 1), in place, its affine weight and bias copied. Independent of the batch:
    what training sees is what inference sees, whatever the batch size. The affine weight and bias keep
    their names and shapes, so ImageNet (BatchNorm) encoder weights still load.

    timm's ``BatchNormAct2d`` (smp's ``tu-`` encoders) is a BatchNorm2d with its activation (and dropout)
    inside; with ``keep_act`` it becomes a ``GroupNormAct`` holding the same activation. Without it (cards
    from before ``arch["norm_act"]``, rebuilt as they were trained) it becomes a plain GroupNorm and the
    activation is lost. A plain BatchNorm2d (resnet) is the same either way."""
    import torch

    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            c = child.num_features
            groups = next(g for g in (32, 8, 4, 2, 1) if (c % g == 0 and c >= 2 * g) or g == 1)
            norm: torch.nn.GroupNorm
            if keep_act and hasattr(child, "act"):
                from timm.layers import GroupNormAct

                norm = GroupNormAct(c, groups, eps=child.eps, affine=child.affine, apply_act=False)
                norm.act, norm.drop = child.act, getattr(child, "drop", torch.nn.Identity())
            else:
                norm = torch.nn.GroupNorm(groups, c, eps=child.eps, affine=child.affine)
            if child.affine:
                with torch.no_grad():
                    norm.weight.copy_(child.weight)
                    norm.bias.copy_(child.bias)
            setattr(module, name, norm)
        else:
            to_group_norm(child, keep_act)
    return module


def predicted_classes(probs: np.ndarray, binary: bool, threshold: float = 0.5) -> np.ndarray:
    """(H, W) class-index map from a SegmentationMap's probs (0 = background)."""
    if binary:
        return (probs[0] >= threshold).astype(np.uint8)
    background = np.clip(1.0 - probs.sum(0, keepdims=True), 0, 1)
    return np.concatenate([background, probs]).argmax(0).astype(np.uint8)


class SegmentPredictor(TiledPredictor):
    """Per-pixel class probabilities, tiles stitched by averaging where they overlap."""

    def predict(self, image: np.ndarray) -> SegmentationMap:
        return self.predict_many([image])[0]

    def predict_many(self, images: Sequence[np.ndarray]) -> list[SegmentationMap]:
        """The probability maps of each image; the tiles of all images go through the model together."""
        import torch

        images = [self._prepare(image) for image in images]
        scale = float(self.card.extra.get("scale", 1.0))
        scaled = [_resize(image, scale) for image in images]
        binary = self.card.arch.get("mode", "binary") == "binary"
        n = len(self.card.classes) + int(self.card.arch.get("instances", "none") != "none")
        totals = [torch.zeros((n, *s.shape[:2]), dtype=torch.float32) for s in scaled]
        counts = [torch.zeros((1, *s.shape[:2]), dtype=torch.float32) for s in scaled]
        with torch.inference_mode():
            for owners, windows, x in self._batches_of(scaled, 255):
                logits = self.model(self._normalise(x)).float()
                probs = logits.sigmoid() if binary else logits.softmax(dim=1)[:, 1:]
                probs = probs.cpu()
                for k, (x0, y0, x1, y1), p in zip(owners, windows, probs, strict=True):
                    totals[k][:, y0:y1, x0:x1] += p[:, : y1 - y0, : x1 - x0]
                    counts[k][:, y0:y1, x0:x1] += 1
        out = []
        for image, total, count in zip(images, totals, counts, strict=True):
            probs_np = (total / count.clamp_min(1)).numpy()
            if probs_np.shape[1:] != image.shape[:2]:
                import torch.nn.functional as F

                t = torch.from_numpy(probs_np)[None]
                probs_np = F.interpolate(t, size=image.shape[:2], mode="bilinear", align_corners=False)[
                    0
                ].numpy()
            out.append(self._map(probs_np.astype(np.float32)))
        return out

    def _map(self, outputs: np.ndarray) -> SegmentationMap:
        """The network's per-pixel outputs (the classes, then the instance target's channel) as a map."""
        n, target = len(self.card.classes), self.card.arch.get("instances", "none")
        extra = outputs[n] if target != "none" and len(outputs) > n else None
        return SegmentationMap(
            probs=outputs[:n],
            classes=list(self.card.classes),
            boundary=extra if target == "boundary" else None,
            centre=extra if target == "distance" else None,
        )

    def predict_once(self, image: np.ndarray) -> SegmentationMap:
        """One forward pass over the whole image (padded to a multiple of 32), without tiles: for crops a few
        hundred pixels wide (interactive pre-annotation), where overlapping tiles would cost 2-4 passes."""
        import torch

        image = self._prepare(image)
        scaled = _resize(image, float(self.card.extra.get("scale", 1.0)))
        h, w = scaled.shape[:2]
        padded = np.full((1, -(-h // 32) * 32, -(-w // 32) * 32, 3), 255, dtype=np.uint8)
        padded[0, :h, :w] = scaled
        x = torch.from_numpy(padded).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        with torch.inference_mode():
            logits = self.model(self._normalise(x.contiguous(memory_format=self.memory_format))).float()
        binary = self.card.arch.get("mode", "binary") == "binary"
        probs = (logits.sigmoid() if binary else logits.softmax(dim=1)[:, 1:])[0, :, :h, :w].cpu()
        if scaled.shape[:2] != image.shape[:2]:
            import torch.nn.functional as F

            probs = F.interpolate(probs[None], size=image.shape[:2], mode="bilinear", align_corners=False)[0]
        return self._map(probs.numpy().astype(np.float32))


def object_map(seg: SegmentationMap, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """All classes' objects in one instance map (class-agnostic) and each object's score (the mean
    probability of its class inside it)."""
    from training.objects import instance_scores

    out = np.zeros(seg.probs.shape[1:], np.int32)
    scores: list[np.ndarray] = []
    for c, inst in enumerate(seg.instances(threshold)):
        n = int(inst.max(initial=0))
        if n:
            out = np.where(inst > 0, inst + int(out.max()), out)
            scores.append(instance_scores(seg.probs[c], inst))
    return out, (np.concatenate(scores) if scores else np.zeros(0, np.float32))


def evaluate(
    card: ModelCard, version_dir: Path, dataset_dir: Path, split: str, device: str, plots_dir: Path | None
) -> dict[str, Any]:
    """Every image of the split predicted whole (tiled): pixel metrics
    (:func:`training.metrics.segmentation_metrics`), per-object metrics — object F1 at IoU 0.5, PQ, AJI
    (:func:`training.objects.pooled_object_metrics`, true objects from the dataset's instance maps) — and
    the object score threshold that minimises a specialist's corrections on this split
    (:func:`training.objects.choose_threshold`: ``score_threshold``, ``corrections``), and the corrections
    ratio at the threshold the version serves (``corrections_ratio``)."""
    from training.corrections import mask_iou
    from training.objects import choose_threshold, pooled_object_metrics

    pairs = segment_pairs(dataset_dir, split)
    if not pairs:
        raise TrainingError(f"{dataset_dir}: no {split} images to evaluate on")
    predictor = SegmentPredictor(card, fitted_model(version_dir, card, build_model), device)
    binary = card.arch.get("mode", "binary") == "binary"
    preds, targets, pred_objects, true_objects, scored = [], [], [], [], []
    for img_path, mask_path in pairs:
        target = read_mask(mask_path)
        if binary:
            target = (target > 0).astype(np.uint8)
        seg = predictor.predict(read_image(img_path))
        preds.append(predicted_classes(seg.probs, binary))
        targets.append(target)
        objects, scores = object_map(seg)
        truth = read_instances(mask_path, target)
        pred_objects.append(objects)
        true_objects.append(truth)
        scored.append((scores, mask_iou(objects, truth), int(truth.max(initial=0))))
    metrics = segmentation_metrics(preds, targets, card.classes)
    metrics.update(pooled_object_metrics(pred_objects, true_objects))
    metrics.update(choose_threshold(scored, served=card.extra.get("score_threshold")))
    return metrics


def head(model: Any) -> list[Any]:
    """The segmentation head's convolution: its bias is every pixel's class logit."""
    return [model.segmentation_head[0]]


SPEC = KindSpec(
    kind="segment",
    fit=fit,
    build_model=build_model,
    predictor=SegmentPredictor,
    evaluate=evaluate,
    check_dataset=check_segment,
    default_model=DEFAULT_MODEL,
    corrections=OBJECT_CORRECTIONS,
    slide=REGION_FIELDS,
    head=head,
    curves=("dice", "iou"),
)
