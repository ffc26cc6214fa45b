"""Where and how a model runs: the device, seeds, and torch's thread count on a shared CPU.

>>> choose_threads(2, 0.1), choose_threads(2, 0.8)
(2, 1)
"""

from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path

import numpy as np


def resolve_device(device: str = "auto") -> str:
    """``auto`` → ``cuda`` when a GPU is present, else ``cpu``; anything else is passed through."""
    import torch

    if device in ("auto", "", None):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).isdigit():
        return f"cuda:{device}"
    return str(device)


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
