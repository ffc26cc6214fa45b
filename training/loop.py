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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from training.artifacts import atomic_file
from training.base import ProgressFn, TrainConfig, report
from training.runtime import set_train_threads

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
MAX_EPOCHS = 1_000_000
"""With a time budget the budget ends the run, not ``epochs`` (as ultralytics' ``time`` does)."""


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


class WeightAverage:
    """An exponential moving average of a model's weights (buffers copied), with the usual warmup of the
    decay, ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so that a run of a few dozen steps is
    not averaged with its random start."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, new in zip(self.module.parameters(), model.parameters(), strict=True):
            avg.lerp_(new.detach(), 1 - d)
        self.copy_buffers(model)

    @torch.no_grad()
    def copy_buffers(self, model: torch.nn.Module) -> None:
        """The model's buffers (BatchNorm statistics) as they are: they are not averaged."""
        for avg, new in zip(self.module.buffers(), model.buffers(), strict=True):
            avg.copy_(new)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


def lr_factor(progress: float, warmup: float = 0.05, floor: float = 0.01) -> float:
    """The learning-rate multiplier at ``progress`` in [0, 1] of the run: linear warmup over the first
    ``warmup`` share, then a cosine down to ``floor``.

    >>> [round(lr_factor(p), 3) for p in (0.0, 0.05, 0.525, 1.0)]
    [0.01, 1.0, 0.505, 0.01]
    """
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return floor + (1 - floor) * progress / warmup
    t = (progress - warmup) / max(1e-9, 1 - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


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
    ema_decay: float | None = None,
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Train ``model`` for ``config.epochs`` (or, with ``config.time``, until that many minutes are spent,
    whatever ``epochs`` says); return the best epoch's state dict and the history.

    ``validate(model)`` returns the epoch's validation metrics (``primary`` is maximised); early stop
    after ``config.patience`` epochs without improvement. The learning rate warms up over the first 5 %
    of the run and follows a cosine to 1 % (:func:`lr_factor`); with a time budget the run's progress is
    the larger of the steps done and the time spent, so the schedule ends when the budget does. With
    ``ema_decay``, an exponential moving average of the weights is what is validated and kept (it makes
    the per-epoch validation of a small-data run far steadier). As a rank of a distributed training
    (:mod:`training.distributed`) the model is trained in DDP on this rank's shard of each epoch; rank 0
    alone validates (the metrics are broadcast), reports progress and writes the checkpoint, and its clock
    decides the schedule and the end of a time budget for every rank.
    """
    run = _EpochLoop(model, loader, loss_fn, config, out_dir, device, progress, ema_decay)
    run.resume()
    for epoch in range(run.start, MAX_EPOCHS if run.budget else config.epochs):
        if run.stale >= config.patience or run.out_of_time:
            break
        loss = run.train_epoch(epoch)
        row = run.validate_epoch(epoch, loss, validate, primary)
        if run.main:
            run.save(epoch)
            report(
                progress,
                stage="val",
                epoch=epoch + 1,
                epochs=max(epoch + 1, run.epochs_expected()),
                loss=row["loss"],
                metrics=row,
            )
    return run.finish()


class _EpochLoop:
    """The state of one :func:`fit_epochs` run (model, optimizer, schedule, best epoch) and its steps."""

    def __init__(
        self,
        model: torch.nn.Module,
        loader: torch.utils.data.DataLoader,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        config: TrainConfig,
        out_dir: Path,
        device: str,
        progress: ProgressFn | None,
        ema_decay: float | None,
    ) -> None:
        from training import distributed

        self.distributed = distributed
        self.ddp = distributed.active()
        world = torch.distributed.get_world_size() if self.ddp else 1
        if device == "cpu":
            set_train_threads(max(1, set_train_threads() // world) if self.ddp else None)
        model.to(device)
        self.loader = distributed.shard(loader) if self.ddp else loader
        self.main = distributed.is_main()
        self.model, self.loss_fn, self.config, self.out_dir = model, loss_fn, config, out_dir
        self.device, self.progress = device, progress
        self.train_model = distributed.wrap(model, device) if self.ddp else model
        self.lr = config.lr or 1e-3
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=self.lr, weight_decay=float(config.extra.get("weight_decay", 1e-4))
        )
        self.steps = max(1, len(self.loader))
        self.total_steps = config.epochs * self.steps
        self.budget = float(config.time) * 60 if config.time else None
        self.warmup = float(config.extra.get("warmup", 0.05))
        self.ema = WeightAverage(model, ema_decay) if ema_decay else None
        self.amp = device.startswith("cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.ckpt_path = Path(out_dir) / "train" / CHECKPOINT
        self.history: list[dict[str, Any]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_score, self.start, self.stale, self.done = -math.inf, 0, 0, 0
        self.began = time.monotonic()
        self.out_of_time = False

    def resume(self) -> None:
        """Continue from the checkpoint of an interrupted run with the same epochs and time budget."""
        config = self.config
        ckpt = load_checkpoint(self.ckpt_path) if config.extra.get("resume", True) else None
        spent = 0.0
        if ckpt is not None and ckpt.get("epochs") == config.epochs and ckpt.get("time") == config.time:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scaler.load_state_dict(ckpt["scaler"])
            if self.ema is not None and ckpt.get("ema") is not None:
                self.ema.load_state_dict(ckpt["ema"])
            self.history, self.best_state = ckpt["history"], ckpt["best"]
            self.best_score, self.start, self.stale = ckpt["best_score"], ckpt["epoch"], ckpt["stale"]
            self.done = int(ckpt.get("steps_done", self.start * self.steps))
            spent = float(ckpt.get("spent", 0.0))
            torch.set_rng_state(ckpt["rng"])
            log.info("resuming from %s at epoch %d", self.ckpt_path, self.start + 1)
        self.began = time.monotonic() - spent

    def run_progress(self) -> float:
        if self.budget:
            return (time.monotonic() - self.began) / self.budget
        return self.done / self.total_steps

    def epochs_expected(self) -> int:
        """``config.epochs``, or with a time budget an estimate of how many epochs fit in it."""
        if not self.budget or not self.done:
            return self.config.epochs
        return max(1, math.ceil(self.budget / ((time.monotonic() - self.began) / self.done) / self.steps))

    def _agreed(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank of a time-budgeted distributed run (its clock decides)."""
        if self.ddp and self.budget:
            return self.distributed.broadcast(value if self.main else None)
        return value

    def _step(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[float, int]:
        """One optimizer step at the scheduled learning rate; the batch's summed loss and size."""
        now = self._agreed(self.run_progress())
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * lr_factor(now, self.warmup)
        x, y = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            loss = self.loss_fn(self.train_model(x), y)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.done += 1
        return float(loss.detach()) * len(x), len(x)

    def train_epoch(self, epoch: int) -> float:
        """One pass over the loader (cut short when the time budget is spent); the mean training loss."""
        self.model.train()
        total, seen = 0.0, 0
        for step, (xb, yb) in enumerate(self.loader, 1):
            loss, n = self._step(xb, yb)
            total, seen = total + loss, seen + n
            if self.main:
                report(
                    self.progress,
                    stage="train",
                    epoch=epoch + 1,
                    epochs=max(epoch + 1, self.epochs_expected()),
                    step=step,
                    steps=self.steps,
                    loss=total / seen,
                )
            if self._agreed(bool(self.budget) and time.monotonic() - self.began >= self.budget):
                self.out_of_time = True
                log.info(
                    "time budget of %.1f min spent during epoch %d: validating and stopping",
                    (self.budget or 0.0) / 60,
                    epoch + 1,
                )
                break
        return total / max(1, seen)

    def validate_epoch(
        self, epoch: int, loss: float, validate: Callable[[torch.nn.Module], dict[str, float]], primary: str
    ) -> dict[str, Any]:
        """Validate the model (its average with EMA), record the epoch's row, keep the best state."""
        self.model.eval()
        if self.ddp:
            self.distributed.sync_buffers(self.model)
        if self.ema is not None:
            self.ema.copy_buffers(self.model)
        evaluated = self.ema.module if self.ema is not None else self.model
        evaluated.eval()
        if self.ddp:
            metrics = self.distributed.broadcast(validate(evaluated) if self.main else None)
        else:
            metrics = validate(evaluated)
        row = {
            "epoch": epoch + 1,
            "loss": loss,
            "lr": self.optimizer.param_groups[0]["lr"],
            "minutes": round((time.monotonic() - self.began) / 60, 3),
            **metrics,
        }
        self.history.append(row)
        score = metrics.get(primary, -math.inf)
        if score is not None and score > self.best_score:
            self.best_score, self.stale = score, 0
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in evaluated.state_dict().items()})
        else:
            self.stale += 1
        return row

    def save(self, epoch: int) -> None:
        """The checkpoint after ``epoch`` (rank 0 only), what :meth:`resume` reads back."""
        save_checkpoint(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "epoch": epoch + 1,
                "epochs": self.config.epochs,
                "time": self.config.time,
                "history": self.history,
                "best": self.best_state,
                "best_score": self.best_score,
                "stale": self.stale,
                "rng": torch.get_rng_state(),
                "steps_done": self.done,
                "spent": time.monotonic() - self.began,
            },
            self.ckpt_path,
        )

    def finish(self) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
        """The best epoch's state dict (the last one when no epoch scored) and the history."""
        if self.ddp:
            self.distributed.check_ranks_agree(self.model, self.out_dir)
        best_state = self.best_state
        if best_state is None:
            final = self.ema.module if self.ema is not None else self.model
            best_state = {k: v.detach().cpu() for k, v in final.state_dict().items()}
        return best_state, self.history


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
