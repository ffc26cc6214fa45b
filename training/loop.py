"""The epoch loop the segmenter and the classifier share: AdamW + cosine schedule, mixed precision on CUDA
only, a checkpoint after every epoch (resumed when the run is restarted on the same ``out_dir``), and
the best epoch on validation kept.

The checkpoint (``out_dir/train/checkpoint.pt``) holds only tensors and plain values and is read back with
``torch.load(weights_only=True)``; it is written to a temporary file and renamed, so an interrupted run
leaves the previous epoch's checkpoint intact. A :class:`~training.base.Cancelled` raised by the progress
callback propagates unchanged.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from training.artifacts import atomic_file
from training.base import ProgressFn, TrainConfig, report
from training.runtime import set_train_threads

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    with atomic_file(path) as fh:
        torch.save(state, fh)  # into a Python file: a full disk stays an OSError (as the cause of torch's)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a checkpoint from another version of the code: start afresh
        log.warning("ignoring unreadable checkpoint %s: %s", path, exc)
        return None


def fit_epochs(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    validate: Callable[[torch.nn.Module], dict[str, float]],
    primary: str,
    config: TrainConfig,
    out_dir: Path,
    device: str,
    progress: ProgressFn | None = None,
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Train ``model`` for ``config.epochs``; return the best epoch's state dict and the history.

    ``validate(model)`` returns the epoch's validation metrics (``primary`` is maximised); early stop
    after ``config.patience`` epochs without improvement. As a rank of a distributed training
    (:mod:`training.distributed`) the model is trained in DDP on this rank's shard of each epoch; rank 0
    alone validates (the metrics are broadcast), reports progress and writes the checkpoint.
    """
    from training import distributed

    ddp = distributed.active()
    world = torch.distributed.get_world_size() if ddp else 1
    if device == "cpu":
        set_train_threads(max(1, set_train_threads() // world) if ddp else None)
    model.to(device)
    if ddp:
        loader = distributed.shard(loader)
    main = distributed.is_main()
    train_model = distributed.wrap(model, device) if ddp else model
    lr = config.lr or 1e-3
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=lr, weight_decay=float(config.extra.get("weight_decay", 1e-4))
    )
    steps = max(1, len(loader))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs * steps, eta_min=lr * 0.01
    )
    amp = device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    ckpt_path = Path(out_dir) / "train" / CHECKPOINT
    history: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_score, start, stale = -math.inf, 0, 0

    ckpt = load_checkpoint(ckpt_path) if config.extra.get("resume", True) else None
    if ckpt is not None and ckpt.get("epochs") == config.epochs:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        history, best_state = ckpt["history"], ckpt["best"]
        best_score, start, stale = ckpt["best_score"], ckpt["epoch"], ckpt["stale"]
        torch.set_rng_state(ckpt["rng"])
        log.info("resuming from %s at epoch %d", ckpt_path, start + 1)

    for epoch in range(start, config.epochs):
        if stale >= config.patience:
            break
        model.train()
        total, seen = 0.0, 0
        for step, (x, y) in enumerate(loader, 1):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                loss = loss_fn(train_model(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total += float(loss.detach()) * len(x)
            seen += len(x)
            if main:
                report(progress, stage="train", epoch=epoch + 1, epochs=config.epochs, step=step, steps=steps,
                       loss=total / seen)  # fmt: skip
        model.eval()
        if ddp:
            distributed.sync_buffers(model)
            metrics = distributed.broadcast(validate(model) if main else None)
        else:
            metrics = validate(model)
        row = {"epoch": epoch + 1, "loss": total / max(1, seen), "lr": scheduler.get_last_lr()[0], **metrics}
        history.append(row)
        score = metrics.get(primary, -math.inf)
        if score is not None and score > best_score:
            best_score, stale = score, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            stale += 1
        if not main:
            continue
        save_checkpoint(
            {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "epoch": epoch + 1, "epochs": config.epochs, "history": history, "best": best_state,
                "best_score": best_score, "stale": stale, "rng": torch.get_rng_state(),
            },
            ckpt_path,
        )  # fmt: skip
        report(progress, stage="val", epoch=epoch + 1, epochs=config.epochs, loss=row["loss"], metrics=row)
    if ddp:
        distributed.check_ranks_agree(model, out_dir)
    if best_state is None:
        best_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return best_state, history


def load_fine_tune(
    model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, min_share: float = 0.9
) -> int:
    """Copy the tensors of ``state`` that fit ``model`` (name and shape); refuse weights for another model.

    A different number of classes changes only the head (a few tensors). Returns how many tensors were
    copied. Raises :class:`~training.base.TrainingError` when fewer than
    ``min_share`` of the model's tensors fit (wrong architecture).
    """
    from training.base import TrainingError

    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(fits) < min_share * len(own):
        raise TrainingError(
            f"{source}: weights of the wrong architecture ({len(fits)}/{len(own)} tensors fit)"
        )
    model.load_state_dict(fits, strict=False)
    return len(fits)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a histoloop version dir, ``.safetensors`` or a ``.pt``/``.pth`` (weights_only)."""
    from training.artifacts import WEIGHTS_FILE
    from training.base import TrainingError

    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise TrainingError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(f"{path}: unreadable weights ({exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TrainingError(f"{path}: not a state dict of tensors")
    return state
