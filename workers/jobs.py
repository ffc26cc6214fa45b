"""Retraining jobs on RQ: enqueue (one queued + at most one running per project/kind), list, cancel.

Job ids are deterministic: ``retrain-<project>-<kind>-<n>``, where ``n`` counts the runs of that
(project, kind). :func:`enqueue_retrain` holds a short Redis lock per (project, kind) (redis-py's
``Lock``) while it looks at job ``n``:

- queued, deferred or scheduled (waiting for a retry): nothing to add, its id is returned — a thousand
  webhooks in a second land on this one job, which exports whatever is approved when it starts;
- started: job ``n + 1`` is enqueued *depending on* job ``n`` (``allow_failure``), so it waits until
  ``n`` ends — even with many workers there is never more than one running per (project, kind);
- finished, failed, stopped, canceled or gone: job ``n + 1`` is enqueued.

``n`` never goes below the highest job number the event store's runs and requests hold, so after a Redis
that keeps no data restarts, ids continue where they were and no ``runs`` row is ever overwritten.

Transient errors (Label Studio unreachable) make the job return ``rq.Retry`` with backoff; bad data
raises and is not retried. The job's timeout is ``settings.job_timeout``.

>>> job_key("4.1795424387", "detect")
'retrain-4-detect'
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Callback, Queue
from rq.exceptions import NoSuchJobError
from rq.job import Dependency, Job, JobStatus
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from kernel.kinds import KINDS
from kernel.labelstudio import project_key
from kernel.settings import Settings
from workers.events import EventStore

JOB_FUNC = "workers.pipeline.retrain"
ON_FAILURE = "workers.pipeline.on_failure"
WAITING = (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED)
CANCEL_KEY = "histoloop:cancel:{}"
RESULT_TTL = 30 * 24 * 3600
FAILURE_TTL = 90 * 24 * 3600

_connections: dict[str, Redis] = {}
_connections_lock = threading.Lock()


def redis_connection(url: str) -> Redis:
    """One connection pool per URL per process; connecting fails fast when Redis is down."""
    with _connections_lock:
        if url not in _connections:
            _connections[url] = Redis.from_url(
                url, socket_connect_timeout=1.0, socket_timeout=10.0, health_check_interval=30
            )
        return _connections[url]


def job_key(project: str, kind: str) -> str:
    """The id prefix of (project, kind)'s jobs; ``ValueError`` for a kind or project that is none
    (:func:`kernel.labelstudio.project_key`: a job that could never export is never queued)."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r} (expected one of {', '.join(KINDS)})")
    return f"retrain-{project_key(project)}-{kind}"


def _fetch(job_id: str, connection: Redis) -> Job | None:
    try:
        return Job.fetch(job_id, connection=connection)
    except NoSuchJobError:
        return None


def enqueue_retrain(
    settings: Settings,
    project: str,
    kind: str,
    reason: str,
    *,
    connection: Redis | None = None,
    store: EventStore | None = None,
) -> str:
    """Make sure a retraining of (project, kind) is queued; returns its (deterministic) job id.

    The counter ``n`` is Redis's, but never below the highest one the event store's runs and requests
    hold (``store``, default the settings' own): a Redis that restarted empty does not hand out an id
    whose run is already recorded.
    """
    conn = connection or redis_connection(settings.redis_url)
    key = job_key(project, kind)
    seq_key = f"histoloop:seq:{key}"
    recorded = (store or EventStore.from_settings(settings)).last_job_number(key)
    with conn.lock(f"histoloop:lock:{key}", timeout=30, blocking_timeout=30):
        n = max(int(conn.get(seq_key) or 0), recorded)
        latest = _fetch(f"{key}-{n}", conn) if n else None
        status = latest.get_status(refresh=False) if latest else None
        if latest is not None and status in WAITING:
            return latest.id
        depends = None
        if latest is not None and status == JobStatus.STARTED:
            depends = Dependency(jobs=[latest], allow_failure=True)
        n += 1
        while _fetch(f"{key}-{n}", conn) is not None:  # the counter was lost (Redis restarted)
            n += 1
        job = Queue(settings.queue, connection=conn).enqueue_call(
            JOB_FUNC,
            args=(str(project), kind),
            kwargs={"reason": reason},
            job_id=f"{key}-{n}",
            timeout=settings.job_timeout,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            depends_on=depends,
            on_failure=Callback(ON_FAILURE),
            description=f"retrain {project}/{kind}: {reason}"[:200],
            meta={"project": str(project), "kind": kind, "reason": reason, "stage": "queued"},
        )
        conn.set(seq_key, n)
        return job.id


@dataclass(frozen=True)
class JobInfo:
    id: str
    status: str
    project: str
    kind: str
    reason: str
    meta: dict[str, Any]
    enqueued_at: str | None
    started_at: str | None
    ended_at: str | None
    worker: str | None
    host: str | None
    """The machine the job runs (or ran) on."""
    gpus: str | None
    """The GPUs it trains on (``0``, ``0,1``), or ``cpu``."""
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _status(job: Job) -> str:
    status = job.get_status(refresh=False)
    return str(getattr(status, "value", status))


def _info(job: Job) -> JobInfo:
    meta = dict(job.meta or {})
    error: str | None = None
    if _status(job) == JobStatus.FAILED.value:
        latest = job.latest_result()
        last = (latest.exc_string or "").strip().splitlines()[-1:] if latest else []
        error = last[0] if last else meta.get("error")
    iso = lambda t: t.isoformat(timespec="seconds") if t else None  # noqa: E731
    return JobInfo(
        id=job.id,
        status=_status(job),
        project=meta.get("project", ""),
        kind=meta.get("kind", ""),
        reason=meta.get("reason", ""),
        meta=meta,
        enqueued_at=iso(job.enqueued_at),
        started_at=iso(job.started_at),
        ended_at=iso(job.ended_at),
        worker=job.worker_name,
        host=meta.get("host"),
        gpus=meta.get("gpus"),
        error=error,
    )


def list_jobs(settings: Settings, *, connection: Redis | None = None) -> list[JobInfo]:
    """Every retraining job RQ still knows (queued, running, deferred, scheduled, finished, failed)."""
    conn = connection or redis_connection(settings.redis_url)
    queue = Queue(settings.queue, connection=conn)
    ids: list[str] = list(queue.get_job_ids())
    for registry in (
        StartedJobRegistry,
        DeferredJobRegistry,
        ScheduledJobRegistry,
        FinishedJobRegistry,
        FailedJobRegistry,
        CanceledJobRegistry,
    ):
        ids += registry(queue=queue).get_job_ids()
    jobs = [j for j in Job.fetch_many(list(dict.fromkeys(ids)), connection=conn) if j is not None]
    jobs.sort(key=lambda j: (j.enqueued_at or j.created_at).timestamp(), reverse=True)
    return [_info(j) for j in jobs]


def get_job(settings: Settings, job_id: str, *, connection: Redis | None = None) -> JobInfo:
    job = _fetch(job_id, connection or redis_connection(settings.redis_url))
    if job is None:
        raise KeyError(f"no job {job_id!r} (finished jobs are kept {RESULT_TTL // 86400} days)")
    return _info(job)


def cancel_requested(job_id: str, connection: Redis) -> bool:
    return bool(connection.exists(CANCEL_KEY.format(job_id)))


def cancel(settings: Settings, job_id: str, *, connection: Redis | None = None) -> str:
    """Cancel a job: a waiting one is removed from the queue (with the explicit requests it held); a running
    one is asked to stop.

    A running training checks the flag at every progress report and stops cleanly (raises
    :class:`training.base.Cancelled`: nothing registered, staging removed, production untouched).
    Returns what was done: ``"canceled"``, ``"stopping"`` or ``"already <status>"``.
    """
    conn = connection or redis_connection(settings.redis_url)
    job = _fetch(job_id, conn)
    if job is None:
        raise KeyError(f"no job {job_id!r}")
    status = job.get_status()
    if status in WAITING:
        job.cancel()
        # its explicit requests go with it: a Redis that later forgets the cancelled job gives none back
        EventStore.from_settings(settings).drop_requests(job_id)
        return "canceled"
    if status == JobStatus.STARTED:
        conn.set(CANCEL_KEY.format(job_id), "1", ex=max(int(settings.job_timeout), 60) + 3600)
        return "stopping"
    return f"already {_status(job)}"
