"""A training job's progress in ``job.meta``, and its cancellation flag.

:class:`JobProgress` is the ``progress`` callback the worker hands to a trainer
(:data:`training.base.ProgressFn`). It writes ``stage``, ``epoch``/``epochs``, ``step``/``steps``,
``loss`` and the latest metrics into the RQ job's meta (what ``histoloop jobs list/show`` and
rq-dashboard display), at most a few times a second, and checks the cancellation flag that
``histoloop jobs cancel ID`` sets (:func:`workers.jobs.cancel`): when it is set it raises
:class:`training.base.Cancelled`, which the trainer lets propagate — training stops between two
batches, nothing is registered.
"""

from __future__ import annotations

import math
import time
from typing import Any

from rq.job import Job

from training.base import Cancelled, Progress
from workers.jobs import cancel_requested


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return None


class JobProgress:
    """Progress callback bound to an RQ job (or to nothing, when run outside a worker)."""

    def __init__(self, job: Job | None, min_interval_s: float = 0.5) -> None:
        self.job = job
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self.timings: dict[str, float] = {}
        """Seconds spent in each pipeline stage, as :meth:`stage` was called."""
        self._stage: tuple[str, float] | None = None

    def stage(self, stage: str, *, check: bool = True, **extra: Any) -> None:
        """Record a pipeline stage (export, convert, train, evaluate, register, done...).

        ``check``: also honour a cancellation request here (False for the final stage of a run).
        """
        now = time.perf_counter()
        if self._stage is not None:
            name, since = self._stage
            self.timings[name] = round(self.timings.get(name, 0.0) + now - since, 3)
        self._stage = (stage, now)
        self._save({"stage": stage, "timings": dict(self.timings), **extra}, force=True, check=check)

    def note(self, **extra: Any) -> None:
        """Record facts about the run in the job's meta (where it runs: host, GPUs), now."""
        self._save(extra, force=True, check=False)

    def __call__(self, progress: Progress) -> None:
        update: dict[str, Any] = {
            "stage": progress.stage,
            "epoch": progress.epoch,
            "epochs": progress.epochs,
            "step": progress.step,
            "steps": progress.steps,
            "loss": _clean(progress.loss),
        }
        if progress.metrics:
            update["metrics"] = {k: _clean(v) for k, v in progress.metrics.items() if _clean(v) is not None}
        force = progress.stage != "train"  # epoch ends and evaluation always get through
        self._save(update, force=force)

    def _save(self, update: dict[str, Any], force: bool, check: bool = True) -> None:
        if self.job is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.min_interval_s:
            return
        self._last = now
        self.job.meta.update(update)
        self.job.meta["updated_at"] = time.time()
        self.job.save_meta()
        if check and cancel_requested(self.job.id, self.job.connection):
            self.job.meta["stage"] = "cancelling"
            self.job.save_meta()
            raise Cancelled(f"job {self.job.id} was cancelled")
