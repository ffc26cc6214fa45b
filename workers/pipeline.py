"""The retraining job (runs in a worker's horse): export → convert → train → evaluate → register → promote.

1. **export** the project's tasks from Label Studio with ``label_studio_sdk``
   (``LabelStudio(base_url, api_key).projects.exports.as_json``) and its label config;
2. **convert** them with :func:`converters.labelstudio.export_to_dataset` into the dataset of the kind,
   with the project's fixed patient-level validation split (``val_fraction``, ``split_group_regex``);
3. **train** with :func:`training.base.get_trainer` into a fresh staging directory of the registry, the
   progress going to the job's meta (:class:`workers.progress.JobProgress`, which also stops the run
   when ``histoloop jobs cancel`` asks);
4. **evaluate** the candidate and the current production version with :func:`training.base.evaluate` on
   the same validation split;
5. **register** the candidate (lineage: dataset fingerprint, annotation ids...), and **promote** it when
   :func:`workers.promotion.should_promote` says so.

Errors: Label Studio unreachable (or answering 5xx/429) → the job returns ``rq.Retry`` (3 tries, backoff
15 s, 60 s, 300 s); bad data (:class:`training.base.TrainingError`, a conversion that yields nothing) →
the version is recorded failed in the registry and the job fails without retry; cancelled → the job
fails with ``Cancelled``, nothing registered. In every case the staging and dataset directories are
removed and production is untouched unless step 5 promoted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from typing import Any

from rq import Retry, get_current_job

log = logging.getLogger(__name__)

RETRY = Retry(max=3, interval=[15, 60, 300])


class LabelStudioUnavailable(RuntimeError):
    """Label Studio could not be reached (or answered 5xx/429): worth a retry."""


def die_with_parent() -> None:
    """In a spawned work horse: exit when the worker process dies (see :func:`workers.worker.die_with_parent`)."""
    if "RQ_JOB_ID" in os.environ:
        from workers.worker import die_with_parent as arrange

        arrange()


def export_project(settings: Any, project: str) -> tuple[list[dict[str, Any]], str]:
    """The project's tasks (Label Studio JSON export) and its label config."""
    import httpx
    from label_studio_sdk.client import LabelStudio
    from label_studio_sdk.core.api_error import ApiError

    if not settings.label_studio_api_key:
        raise RuntimeError(
            "no Label Studio API key: set HISTOLOOP_LABEL_STUDIO_API_KEY (or LABEL_STUDIO_API_KEY)"
        )
    client = LabelStudio(base_url=settings.label_studio_url, api_key=settings.label_studio_api_key.get(),
                         timeout=120)  # fmt: skip
    try:
        label_config = client.projects.get(id=int(project)).label_config
        tasks = client.projects.exports.as_json(int(project))
    except (httpx.TransportError, OSError) as exc:
        raise LabelStudioUnavailable(
            f"Label Studio at {settings.label_studio_url}: {type(exc).__name__}: {exc}"
        ) from exc
    except ApiError as exc:
        if exc.status_code is None or exc.status_code >= 500 or exc.status_code == 429:
            raise LabelStudioUnavailable(
                f"Label Studio at {settings.label_studio_url} answered {exc.status_code}"
            ) from exc
        raise RuntimeError(
            f"Label Studio refused the export of project {project}: HTTP {exc.status_code}"
        ) from exc
    if not isinstance(tasks, list):
        raise RuntimeError(f"project {project}: the export is not a list of tasks")
    return tasks, label_config


def _store_and_registry(settings: Any):
    from training.registry import Registry
    from workers.events import EventStore

    return EventStore(settings.events_path), Registry.from_settings(settings)


def retrain(project: str, kind: str, reason: str = "") -> Any:
    """The RQ job function (``workers.pipeline.retrain``); settings come from the worker's environment."""
    from histoloop.settings import load_settings
    from workers.progress import JobProgress
    from workers.triggers import decide

    die_with_parent()
    settings = load_settings()
    job = get_current_job()
    job_id = job.id if job is not None else f"local-{os.getpid()}-{int(time.time())}"
    progress = JobProgress(job)
    store, registry = _store_and_registry(settings)

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
            store.finish_run(job_id, "error", detail=str(exc))
            progress.stage("waiting for Label Studio", check=False, error=str(exc))
            return RETRY
        summary = train_from_tasks(settings, registry, project, kind, tasks, label_config, progress, job_id)
    except BaseException as exc:
        _finish_failed(store, registry, settings, job_id, project, kind, exc, run.annotation_ids)
        progress.stage(_failure_stage(exc), check=False, error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    store.finish_run(job_id, "done", version_id=summary["version_id"], detail=summary["decision"])
    progress.stage("done", check=False, version=summary["version"], promoted=summary["promoted"])
    summary["timings"] = dict(progress.timings)
    return summary


def _failure_stage(exc: BaseException) -> str:
    from training.base import Cancelled, TrainingError, disk_full

    if isinstance(exc, Cancelled):
        return "cancelled"
    if isinstance(exc, TrainingError):
        return "failed (bad data)"
    return "failed (disk full)" if disk_full(exc) else "failed"


def _finish_failed(store, registry, settings, job_id, project, kind, exc, annotation_ids) -> None:
    from training.base import Cancelled, TrainingError, failure_reason

    reason = failure_reason(exc, registry.store / "staging")
    if isinstance(exc, Cancelled):
        store.finish_run(job_id, "cancelled", detail=str(exc))
    elif reason is not None:  # bad data or a full disk: the version is recorded failed, with the reason
        failed = registry.record_failed(project, kind, reason[:1000],
                                        lineage={"annotation_count": len(annotation_ids), "job_id": job_id})  # fmt: skip
        status = "bad_data" if isinstance(exc, TrainingError) else "error"
        store.finish_run(job_id, status, version_id=failed.id, detail=reason)
    else:
        store.finish_run(job_id, "error", detail=f"{type(exc).__name__}: {exc}")


def train_from_tasks(
    settings: Any,
    registry: Any,
    project: str,
    kind: str,
    tasks: list[dict[str, Any]],
    label_config: str,
    progress: Any = None,
    job_id: str = "manual",
) -> dict[str, Any]:
    """Steps 2–5 on tasks already exported (Label Studio JSON): convert, train, evaluate, register, promote.

    Also what ``histoloop demo`` bootstraps its first versions with. Returns the run's summary.
    """
    from workers.progress import JobProgress

    progress = progress if progress is not None else JobProgress(None)
    from converters.images import ImageLoader
    from converters.labelstudio import export_to_dataset
    from training.base import TrainConfig, TrainingError, evaluate, get_trainer
    from workers.promotion import should_promote

    ps = settings.project(project)
    work = registry.staging_dir()  # the dataset (and the converter's temp folder) live in here
    dataset_dir = work / "dataset"
    staging = registry.staging_dir()
    try:
        progress.stage("convert", tasks=len(tasks))
        images = ImageLoader(
            local_root=settings.local_files_root, label_studio_url=settings.label_studio_url,
            api_key=settings.label_studio_api_key.get(), max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
        )  # fmt: skip
        report = export_to_dataset(tasks, kind, dataset_dir, label_config=label_config, images=images,
                                   val_fraction=ps.val_fraction, group_regex=ps.split_group_regex, seed=0,
                                   approval=ps.approval)  # fmt: skip
        for item, why in list(report.skipped)[:20]:
            log.warning("job %s: skipped %s: %s", job_id, item, why)
        if not report.converted:
            raise TrainingError(f"project {project}: no approved {kind} annotation could be converted "
                                f"({len(report.skipped)} skipped)")  # fmt: skip
        manifest = json.loads((dataset_dir / "manifest.json").read_text())
        ids = sorted({int(i) for item in manifest["items"] for i in item.get("annotation_ids", [])})
        splits = [item.get("split") for item in manifest["items"]]
        lineage = {
            "dataset_fingerprint": manifest.get("fingerprint"), "annotation_count": len(ids),
            "annotation_ids_hash": _hash_ids(ids), "annotation_ids": ids, "max_annotation_id": max(ids, default=None),
            "n_train": splits.count("train"), "n_val": splits.count("val"), "job_id": job_id,
        }  # fmt: skip

        options = dict(ps.train.get(kind, {}))
        options.setdefault("device", settings.device)
        config = TrainConfig(**options)
        progress.stage("train", n_train=lineage["n_train"], n_val=lineage["n_val"])
        get_trainer(kind).train(dataset_dir, config, staging, progress=progress)

        progress.stage("evaluate")
        candidate = evaluate(staging, dataset_dir, split="val", device=config.device)
        production = registry.production(project, kind)
        production_metrics = None
        if production is not None and production.artifact_dir is not None:
            try:
                production_metrics = evaluate(
                    production.artifact_dir, dataset_dir, split="val", device=config.device
                )
            except Exception as exc:  # classes changed, files unreadable: it cannot defend its place
                log.warning("job %s: production %s could not be evaluated: %s", job_id, production.ref, exc)
        promote, why = should_promote(ps.auto_promote, kind, candidate, production_metrics,
                                      margin=ps.promotion_margin, has_production=production is not None)  # fmt: skip

        progress.stage("register")
        metrics = {**candidate, "production": _scalars(production_metrics), "promotion": why}
        version = registry.register(project, kind, staging, metrics=metrics, config=config.to_dict(),
                                    lineage=lineage, parent_id=production.id if production else None)  # fmt: skip
        if promote:
            version = registry.promote(version.id, by=f"worker:{job_id}", reason=why)
        log.info(
            "job %s: %s %s (%s)", job_id, version.ref, "promoted" if promote else "kept as candidate", why
        )
        return {
            "status": "done", "version_id": version.id, "version": version.ref, "promoted": promote,
            "decision": why, "metrics": _scalars(candidate), "production_metrics": _scalars(production_metrics),
        }  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _scalars(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str | bool)}


def _hash_ids(ids: list[int]) -> str:
    import hashlib

    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]


def mark_abandoned(job_id: str, detail: str) -> None:
    """Record that a run's worker or horse died (its snapshot no longer counts: the next trigger retrains)."""
    from histoloop.settings import load_settings
    from workers.events import EventStore

    store = EventStore(load_settings().events_path)
    run = store.run(job_id)
    if run is not None and run.status == "running":
        store.finish_run(job_id, "abandoned", detail=detail)


def on_failure(job, connection, exc_type, exc_value, traceback) -> None:  # noqa: ANN001 - RQ's callback signature
    """RQ failure callback: a timeout, or a worker that died (``AbandonedJobError``), leaves no run running."""
    mark_abandoned(job.id, f"{getattr(exc_type, '__name__', exc_type)}: {exc_value}"[:500])
