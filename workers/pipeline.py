"""The retraining job (runs in a worker's horse): export, then :func:`training.lifecycle.retrain_from_tasks`.

1. **export** the project's tasks from Label Studio and its label config
   (:meth:`converters.lsclient.LabelStudioClient.export`, label_studio_sdk's JSON export);
2. **convert → train → evaluate → register → promote**: :func:`training.lifecycle.retrain_from_tasks`, the
   one path ``histoloop train``, the demo and the simulation use too; the progress goes to the job's meta
   (:class:`workers.progress.JobProgress`, which also stops the run when ``histoloop jobs cancel`` asks).

Errors: Label Studio unreachable (or answering 5xx/429) → the job returns ``rq.Retry`` (3 tries, backoff
15 s, 60 s, 300 s); the run is recorded ``unavailable`` (it does not move the trigger counter) and the
explicit requests it took (``histoloop retrain``, the Train button) are pending again, so that when the
retries run out the request is still there: the next dispatch (a webhook, a worker starting, the
backend's periodic sweep) queues it again. Bad data (:class:`training.base.TrainingError`, a conversion that yields nothing) or a
full disk → the version is recorded failed in the registry and the job fails without retry; cancelled →
the job fails with ``Cancelled``, nothing registered. In every case the staging and dataset directories are
removed and production is untouched unless step 2 promoted.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from rq import Retry, get_current_job
from rq.job import Job

from converters.lsclient import LabelStudioClient, LabelStudioUnavailable
from kernel.processes import die_with_parent
from kernel.settings import Settings, load_settings
from workers.events import EventStore

if TYPE_CHECKING:
    from training.registry import Registry

log = logging.getLogger(__name__)

RETRY = Retry(max=3, interval=[15, 60, 300])


def export_project(settings: Settings, project: str) -> tuple[list[dict[str, Any]], str]:
    """The project's tasks (Label Studio JSON export) and its label config
    (:meth:`converters.lsclient.LabelStudioClient.export`)."""
    return LabelStudioClient.from_settings(settings).export(int(project))


def _store_and_registry(settings: Settings) -> tuple[EventStore, Registry]:
    from training.registry import Registry

    return EventStore.from_settings(settings), Registry.from_settings(settings)


def retrain(project: str, kind: str, reason: str = "") -> Any:
    """The RQ job function (``workers.pipeline.retrain``); settings come from the worker's environment."""
    from training.lifecycle import retrain_from_tasks
    from workers.progress import JobProgress
    from workers.triggers import decide

    if "RQ_JOB_ID" in os.environ:  # a spawned work horse: exit when the worker process dies
        die_with_parent()
    settings = load_settings()
    if "RQ_JOB_ID" in os.environ:  # a fresh interpreter: the worker's log format and level, not Python's
        from kernel.logs import LOG_FORMAT

        logging.basicConfig(
            level=getattr(logging, settings.log_level.upper(), logging.INFO), format=LOG_FORMAT
        )
        for name in ("httpx", "httpcore", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)
    job = get_current_job()
    job_id = job.id if job is not None else f"local-{os.getpid()}-{int(time.time())}"
    progress = JobProgress(job)
    progress.note(host=socket.gethostname(), gpus=_gpus(settings), pid=os.getpid())
    store, registry = _store_and_registry(settings)

    store.mark_requested(project, kind, job_id)  # what is pending for (project, kind) is this run's now
    manual = store.has_requests(job_id)
    if not manual and not any(t.kind == kind for t in decide(store.kind_states([project]), settings.project)):
        progress.stage("skipped")
        return {"status": "skipped", "reason": "nothing new since the last run of this kind"}

    # the snapshot is taken before the export: what is approved later counts for the next run
    run = store.start_run(job_id, project, kind, reason, store.approved_ids(project, kind))
    try:
        progress.stage("export", pid=os.getpid(), host=socket.gethostname())
        try:
            tasks, label_config = export_project(settings, project)
        except LabelStudioUnavailable as exc:
            log.warning("job %s: %s; retrying later", job_id, exc)
            store.finish_run(job_id, "unavailable", detail=str(exc))
            store.release_requests(job_id)  # still pending if the retries run out
            progress.stage("waiting for Label Studio", check=False, error=str(exc))
            return RETRY
        summary = retrain_from_tasks(
            settings, registry, project, kind, tasks, label_config, progress=progress, job_id=job_id
        ).summary()
    except BaseException as exc:
        _finish_failed(store, registry, project, kind, job_id, exc, run.annotation_ids)
        progress.stage(_failure_stage(exc), check=False, error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    store.finish_run(job_id, "done", version_id=summary["version_id"], detail=summary["decision"])
    progress.stage(
        "done",
        check=False,
        version=summary["version"],
        promoted=summary["promoted"],
        decision=summary["decision"],
    )
    summary["timings"] = dict(progress.timings)
    return summary


def _gpus(settings: Settings) -> str:
    """Which GPUs this job trains on, as ``histoloop jobs list`` shows them: ``0,1`` (the worker's
    ``--gpu``/``--gpus``, the host's numbering), ``cpu``, or the device setting when the worker chose none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return visible or "cpu"
    return "cpu" if settings.device == "cpu" else settings.device


def _failure_stage(exc: BaseException) -> str:
    from training.base import Cancelled, TrainingError, disk_full

    if isinstance(exc, Cancelled):
        return "cancelled"
    if isinstance(exc, TrainingError) or isinstance(exc.__cause__, TrainingError):
        return "failed (bad data)"
    return "failed (disk full)" if disk_full(exc) else "failed"


def _finish_failed(
    store: EventStore,
    registry: Registry,
    project: str,
    kind: str,
    job_id: str,
    exc: BaseException,
    annotation_ids: list[int],
) -> None:
    """Record a failed run; a failure that is the data's (bad data, a full disk) gets a failed version."""
    from training.base import Cancelled, TrainingError, failure_reason
    from training.lifecycle import VersionFailed

    if isinstance(exc, Cancelled):
        store.finish_run(job_id, "cancelled", detail=str(exc))
        return
    failed = exc.version if isinstance(exc, VersionFailed) else None
    reason = exc.reason if isinstance(exc, VersionFailed) else failure_reason(exc, registry.store / "staging")
    if reason is not None and failed is None:  # failed before training (the conversion)
        failed = registry.record_failed(
            project, kind, reason[:1000], lineage={"annotation_count": len(annotation_ids), "job_id": job_id}
        )
    if reason is None:
        store.finish_run(job_id, "error", detail=f"{type(exc).__name__}: {exc}")
        return
    bad_data = isinstance(exc, TrainingError) or isinstance(exc.__cause__, TrainingError)
    store.finish_run(
        job_id, "bad_data" if bad_data else "error", version_id=failed.id if failed else None, detail=reason
    )


def mark_abandoned(job_id: str, detail: str, job: Job | None = None, store: EventStore | None = None) -> bool:
    """Record that a run's worker or horse died (its snapshot no longer counts: the next trigger retrains),
    make the explicit requests it held pending again (once each, :data:`workers.events.MAX_RERUNS`: the
    next dispatch queues them), and show ``abandoned`` as the job's stage; returns whether it was abandoned
    (not ended by itself)."""
    store = store or EventStore.from_settings(load_settings())
    run = store.run(job_id)
    if run is not None and not store.abandon_run(job_id, detail):
        return False  # it recorded its own end (done, failed, cancelled, unavailable)
    released = store.release_abandoned(job_id)
    if released:
        log.warning("job %s was abandoned: its %d explicit request(s) are pending again", job_id, released)
    if job is not None:
        try:
            job.meta["stage"] = "abandoned"
            job.meta["error"] = detail[:500]
            job.save_meta()
        except Exception:  # the job may be gone from Redis already
            log.warning("job %s: could not mark its stage abandoned", job_id)
    return True


def on_failure(job: Job, connection: Any, exc_type: Any, exc_value: Any, traceback: Any) -> None:
    """RQ failure callback: a timeout, or a worker that died (``AbandonedJobError``), leaves no run running.

    RQ declares a job abandoned when its heartbeat in Redis ran out, which a worker cut off from Redis for
    longer than that (a persistent Redis back after minutes) cannot prevent, though it trains on. Its run
    is stamped in the event store all the while: a run stamped within the last two heartbeats is left
    running (its worker records its end; if it dies later, :func:`workers.worker.recover_runs` abandons it).
    """
    from rq.exceptions import AbandonedJobError

    settings = load_settings()
    store = EventStore.from_settings(settings)
    detail = f"{getattr(exc_type, '__name__', exc_type)}: {exc_value}"[:500]
    if isinstance(exc_type, type) and issubclass(exc_type, AbandonedJobError):
        run = store.run(job.id)
        since = time.time() - run.alive_at if run is not None and run.alive_at is not None else None
        if (
            run is not None
            and run.status == "running"
            and since is not None
            and since < 2 * settings.heartbeat
        ):
            log.warning(
                "job %s: Redis lost its heartbeat, but its worker stamped its run %.0f s ago: left running",
                job.id,
                since,
            )
            return
    mark_abandoned(job.id, detail, job, store=store)
