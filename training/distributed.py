"""One training on several devices: torch's DistributedDataParallel for the segmenter and the classifier.

``TrainConfig.devices`` asks for it (``train.<kind>.devices`` in the settings; ``histoloop worker --gpus
0,1`` sets it for every kind): a list of CUDA device indices (as the process sees them, after
``CUDA_VISIBLE_DEVICES``), or a count ``n`` (``cuda:0`` .. ``cuda:n-1``; on the CPU, ``n`` processes with the
gloo backend — what the tests run). The detector uses ultralytics' own DDP instead (``training/kinds/detect.py``).

:func:`launch` runs the kind's ``fit`` as rank 0 in this process (so the progress callback, the cancel
check and the return value stay where they were) and ranks 1..n-1 in spawned interpreters that die with it;
they meet over TCP on the loopback (``nccl`` on CUDA, ``gloo`` on the CPU). :func:`training.loop.fit_epochs`
then trains the DDP-wrapped model on each rank's shard of every epoch; only rank 0 validates (its metrics
are broadcast, so early stopping agrees), writes checkpoints, the weights and the card; the version is
the same files as a one-device run (the unwrapped model's state dict). At the end every rank's parameters
are hashed and compared: :data:`RANKS_FILE` records them, and ranks that disagree fail the training.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from kernel.net import free_port
from kernel.processes import die_with_parent
from training.base import Fitted, ProgressFn, TrainConfig
from training.runtime import resolve_device

log = logging.getLogger(__name__)
RANKS_FILE = "ranks.json"
"""``<out_dir>/train/ranks.json``: world size, backend and each rank's parameter hash after training."""


def world_size(config: TrainConfig) -> int:
    """How many processes one training of ``config`` uses (1: no DDP)."""
    devices = config.devices
    if devices is None:
        return 1
    if isinstance(devices, int):
        return max(1, devices)
    return max(1, len(devices))


def active() -> bool:
    """Whether this process is a rank of a distributed training now."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0 (or no distributed training): the process that validates, reports and writes files."""
    return rank() == 0


def rank_device(config: TrainConfig, device: str) -> str:
    """This rank's device: ``cuda:<devices[rank]>`` on CUDA, else ``device`` itself."""
    if not active() or not device.startswith("cuda"):
        return device
    devices = config.devices
    index = devices[rank()] if isinstance(devices, list) else rank()
    return f"cuda:{index}"


def needs_launch(config: TrainConfig) -> bool:
    """A training that asks for several devices and is not yet running as a rank."""
    return world_size(config) > 1 and not active()


def _join(rank_: int, world: int, init_method: str, backend: str) -> None:
    dist.init_process_group(backend, init_method=init_method, rank=rank_, world_size=world)


def _rank_main(
    module: str,
    rank_: int,
    world: int,
    init_method: str,
    backend: str,
    dataset_dir: Path,
    config: TrainConfig,
    out_dir: Path,
) -> None:
    die_with_parent()
    _join(rank_, world, init_method, backend)
    try:
        importlib.import_module(module).fit(dataset_dir, config, out_dir, None)
    finally:
        dist.destroy_process_group()


def launch(
    module: str, dataset_dir: Path, config: TrainConfig, out_dir: Path, progress: ProgressFn | None
) -> Fitted:
    """Run ``<module>.fit`` on :func:`world_size` processes (this one is rank 0); returns rank 0's result."""
    import torch.multiprocessing as mp

    world = world_size(config)
    device = resolve_device(config.device)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    init_method = f"tcp://127.0.0.1:{free_port()}"
    ctx = mp.get_context("spawn")
    ranks = [
        ctx.Process(
            target=_rank_main,
            args=(module, r, world, init_method, backend, dataset_dir, config, out_dir),
            name=f"histoloop-rank{r}",
        )
        for r in range(1, world)
    ]
    for p in ranks:
        p.start()
    log.info("training on %d processes (%s, %s)", world, backend, device)
    ok = False
    try:
        _join(0, world, init_method, backend)
        fitted: Fitted = importlib.import_module(module).fit(dataset_dir, config, out_dir, progress)
        ok = True
    finally:
        if active():
            dist.destroy_process_group()
        for p in ranks:
            if not ok and p.is_alive():  # rank 0 failed or was cancelled: the others wait on it forever
                p.kill()
            p.join(60)
            if p.is_alive():
                p.kill()
                p.join(10)
    failed = [p.name for p in ranks if p.exitcode != 0]
    if failed:
        raise RuntimeError(
            f"distributed training: {', '.join(failed)} failed (exit codes {[p.exitcode for p in ranks]})"
        )
    return fitted


class ShardSampler(torch.utils.data.Sampler[int]):
    """Rank ``r``'s share of what ``base`` draws: every rank draws the same sequence (same seed), pads it
    to a multiple of the world size and keeps every ``world``-th item from its rank on, so the shards are
    disjoint, equal in length (DDP needs the same number of steps on every rank), and the class balancing
    or shuffling of ``base`` is kept."""

    def __init__(self, base: torch.utils.data.Sampler[int], rank_: int, world: int) -> None:
        self.base, self.rank, self.world = base, rank_, world

    def __iter__(self) -> Iterator[int]:
        drawn = list(self.base)
        if not drawn:
            return iter(())
        pad = (-len(drawn)) % self.world
        drawn += drawn[:pad]
        return iter(drawn[self.rank :: self.world])

    def __len__(self) -> int:
        n = len(self.base)  # type: ignore[arg-type]
        return (n + (-n) % self.world) // self.world


def shard(loader: torch.utils.data.DataLoader) -> torch.utils.data.DataLoader:
    """The same loader over this rank's :class:`ShardSampler` of its sampler."""
    sampler = ShardSampler(loader.sampler, dist.get_rank(), dist.get_world_size())  # type: ignore[arg-type]
    return torch.utils.data.DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        drop_last=loader.drop_last,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
    )


def wrap(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """``model`` in DDP on its rank's device."""
    from torch.nn.parallel import DistributedDataParallel

    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        torch.cuda.set_device(index)
        return DistributedDataParallel(model, device_ids=[index], output_device=index)
    return DistributedDataParallel(model)


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics) on every rank, before validating or saving."""
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def parameters_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def check_ranks_agree(model: torch.nn.Module, out_dir: Path, backend: str | None = None) -> list[str]:
    """Every rank's parameter hash, written by rank 0 to ``train/ranks.json``; raises when they differ."""
    hashes: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(hashes, parameters_hash(model))
    if is_main():
        path = Path(out_dir) / "train" / RANKS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "world_size": len(hashes),
                    "backend": backend or dist.get_backend(),
                    "parameters": hashes,
                    "pid": os.getpid(),
                },
                indent=2,
            )
        )
    if len(set(hashes)) != 1:
        raise RuntimeError(f"distributed training: the ranks' parameters differ ({hashes})")
    return hashes
