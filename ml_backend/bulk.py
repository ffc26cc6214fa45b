"""Predicting a whole Label Studio project outside the HTTP path (``histoloop predict --project N``).

"Retrieve predictions" asks the backend for every selected task in one request, which Label Studio cuts
off after 100 s; a project of thousands of tiles never finishes that way. Here the same engine
(:class:`ml_backend.engine.Engine`, the production models of the project's label config) runs in a
process of its own (the CLI, or an RQ job on a worker: :func:`predict_job`, GPU when the worker has one):

1. the project's label config and its tasks, page by page (``GET /api/tasks?project=N``, only their id,
   data and the model versions of their predictions);
2. the tasks to predict: those without a prediction of the production ``model_version`` (or, with
   ``only_missing``, those without any prediction) — so a second run, or a run after an interruption,
   predicts only what is left and never duplicates;
3. ``batch`` tasks at a time: predicted, then uploaded in one request (``POST
   /api/projects/N/import/predictions``) with that ``model_version``, the same string ``/setup`` reports,
   so Label Studio does not ask the backend for them again.

A task that fails (a missing image...) is counted and reported, not uploaded (a later run retries it).
Label Studio is reached through :class:`converters.lsclient.LabelStudioClient` (a Personal Access Token
or a legacy token; 5xx answers and reset connections retried).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from converters.lsclient import LabelStudioClient, LabelStudioError
from kernel.settings import Settings
from ml_backend.engine import Engine
from ml_backend.labelconfig import parse_label_config
from ml_backend.models import ModelCache
from ml_backend.projects import ProjectState
from ml_backend.task_images import TaskImages

log = logging.getLogger(__name__)


class BulkError(LabelStudioError):
    """The project cannot be predicted (no key, Label Studio refused, no model...)."""


@dataclass
class BulkReport:
    project: str
    model_version: str
    total: int = 0
    """Tasks in the project."""
    skipped: int = 0
    """Tasks that already had a prediction (of this version, or any with ``only_missing``)."""
    uploaded: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    """The first few failures, ``task <id>: <reason>``."""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


Progress = Callable[[int, int], None]
"""``progress(done, todo)``: tasks handled so far (uploaded or failed) out of those to predict."""


def _has_prediction(task: dict[str, Any], version: str, only_missing: bool) -> bool:
    versions = task.get("predictions_model_versions") or []
    if isinstance(versions, str):  # Label Studio joins them with ", " in some versions
        versions = [v.strip() for v in versions.split(",") if v.strip()]
    if only_missing:
        return bool(versions) or bool(task.get("total_predictions"))
    return version in versions


def predict_project(
    settings: Settings,
    project: int,
    *,
    only_missing: bool = False,
    batch: int = 32,
    progress: Progress | None = None,
    api: LabelStudioClient | None = None,
) -> BulkReport:
    """Predict every task of ``project`` that needs it and upload the predictions (module docstring).
    :class:`converters.lsclient.LabelStudioError` (of which :class:`BulkError` is one) when it cannot."""
    started = time.perf_counter()
    api = api or LabelStudioClient.from_settings(settings)
    key = str(project)
    config = api.label_config(project)
    plan = parse_label_config(config)
    if not plan.controls:
        raise BulkError(f"project {key}: its label config has no control histoloop predicts")
    from training.registry import Registry

    cache = ModelCache(Registry.from_settings(settings), settings.device)
    version = cache.versions(key, plan.kinds).model_version
    serving = cache.serving(key, plan.kinds)
    if not serving.models:
        raise BulkError(f"project {key}: no production model for {', '.join(plan.kinds)} ({serving.missing})")
    engine = Engine(settings, cache, TaskImages(settings))
    state = ProjectState(
        label_config=config, hostname=settings.label_studio_url, token=settings.label_studio_api_key
    )
    report = BulkReport(key, version)
    todo: list[dict[str, Any]] = []
    for task in api.tasks(project):
        report.total += 1
        if _has_prediction(task, version, only_missing):
            report.skipped += 1
        else:
            todo.append({"id": task["id"], "data": task.get("data") or {}})
    log.info("project %s: %d task(s), %d to predict with %s", key, report.total, len(todo), version)
    if progress:
        progress(0, len(todo))
    for i in range(0, len(todo), max(1, batch)):
        chunk = todo[i : i + max(1, batch)]
        _, items, _ = engine.predict(key, chunk, plan, state)
        upload = []
        for task, item in zip(chunk, items, strict=True):
            if item.get("error"):
                report.failed += 1
                if len(report.errors) < 20:
                    report.errors.append(f"task {task['id']}: {item['error']}")
                continue
            upload.append(
                {
                    "task": task["id"],
                    "result": item["result"],
                    "score": item["score"],
                    "model_version": version,
                }
            )
        if upload:
            api.import_predictions(project, upload)
            report.uploaded += len(upload)
        if progress:
            progress(report.uploaded + report.failed, len(todo))
    report.seconds = time.perf_counter() - started
    return report


def predict_job(project: int, only_missing: bool = False, batch: int = 32) -> dict[str, Any]:
    """The RQ job (``histoloop predict --project N --queue``): progress in ``job.meta`` (``done``/``todo``),
    the report returned; ``histoloop jobs cancel predict-N`` stops it between two batches."""
    from rq import get_current_job

    from kernel.settings import load_settings
    from training.base import Cancelled
    from workers.jobs import cancel_requested

    job = get_current_job()

    def progress(done: int, todo: int) -> None:
        if job is None:
            return
        job.meta.update(stage="predicting", done=done, todo=todo)
        job.save_meta()
        if cancel_requested(job.id, job.connection):  # histoloop jobs cancel predict-N: stop between batches
            raise Cancelled(f"{job.id} cancelled after {done} of {todo} tasks (what was uploaded stays)")

    report = predict_project(
        load_settings(), project, only_missing=only_missing, batch=batch, progress=progress
    )
    log.info("bulk predict: %s", json.dumps(report.as_dict()))
    return report.as_dict()
