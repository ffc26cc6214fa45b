"""A training job's progress in ``job.meta``, and its cancellation flag.

:class:`JobProgress` is the ``progress`` callback the worker hands to a trainer
(:data:`training.base.ProgressFn`). It writes ``stage``, ``epoch``/``epochs``, ``step``/``steps``,
``loss`` and the latest metrics into the RQ job's meta (what ``histoloop jobs list/show`` and
rq-dashboard display), at most a few times a second, and checks the cancellation flag that
``histoloop jobs cancel ID`` sets (:func:`workers.jobs.cancel`): when it is set it raises
:class:`training.base.Cancelled`, which the trainer lets propagate — training stops between two
batches, nothing is registered.

While Redis does not answer, progress is not saved (and no cancellation can be asked): the training goes
on, one warning says so, and saving resumes when Redis answers (tried again after ``retry_s`` seconds,
doubling up to a minute, so a training does not wait on redis-py's connection retries at every batch).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.job import Job

from training.base import Cancelled, Progress
from workers.jobs import cancel_requested

log = logging.getLogger(__name__)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return None


class JobProgress:
    """Progress callback bound to an RQ job (or to nothing, when run outside a worker)."""

    def __init__(self, job: Job | None, min_interval_s: float = 0.5, retry_s: float = 5.0) -> None:
        self.job = job
        self.min_interval_s = min_interval_s
        self.retry_s = retry_s
        self._down_until: float | None = None
        """While Redis is away: when the next save tries it again."""
        self._backoff = retry_s
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
        if self._down_until is not None and now < self._down_until:
            return
        try:
            self.job.save_meta()
            cancelling = check and cancel_requested(self.job.id, self.job.connection)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if self._down_until is None:
                log.warning(
                    "job %s: Redis unavailable, training on without saving progress (%s)", self.job.id, exc
                )
            else:
                self._backoff = min(self._backoff * 2, 60.0)
            self._down_until = time.monotonic() + self._backoff
            return
        if self._down_until is not None:
            log.warning("job %s: Redis answers again, progress saved", self.job.id)
            self._down_until, self._backoff = None, self.retry_s
        if cancelling:
            self.job.meta["stage"] = "cancelling"
            self.job.save_meta()
            raise Cancelled(f"job {self.job.id} was cancelled")
