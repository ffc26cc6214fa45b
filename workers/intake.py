"""What a Label Studio webhook changes in the event store: one payload in, one transaction.

The backend's ``POST /webhook`` (:mod:`ml_backend.routes.webhook`) hands each payload to
:func:`record_webhook`. Handled actions (payloads as Label Studio 1.23 sends them, see ../shared/NOTES.md):

- ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED`` ``{annotation{id, task, result, was_cancelled,
  ground_truth, ...}, project{id, label_config, ...}}``: the annotation is stored as approved or not under
  the project's approval rule (:func:`kernel.labelstudio.is_approved`), for the model kinds whose
  retraining trains on its regions (:func:`kernel.labelstudio.result_kinds`; all the project's kinds when
  it has none, e.g. an empty result);
- ``ANNOTATIONS_DELETED`` (plural) ``{annotations: [{id}], project}``: the annotations no longer count
  (at most :data:`MAX_DELETED_PER_EVENT` per event);
- ``START_TRAINING`` (Label Studio's Train button): a retrain request for every model kind of the project;
- ``PROJECT_UPDATED``: the stored label config (and so the project's model kinds) is updated.

It never exports, trains or waits on Redis: the caller wakes the dispatcher. Other actions are ignored.

**Projects that never connected.** Label Studio sends webhooks only for projects connected to the
backend, and connecting one sends ``/setup`` first (on connect, and again before every batch of
predictions), which records the project as connected (:meth:`workers.events.EventStore.connect`). So an
event of a project that never sent ``/setup`` to a backend of this store, and is not named in the config
file's ``[projects]``, is not Label Studio's: it is answered ``ignored`` and nothing is stored or queued
(a flood of made-up projects queues nothing). Projects in an event store from before this rule count as
connected.

**What is stored** per event is only what the policies read (the annotation's id, task, approval and
kinds; how many were deleted; the kinds a request is for): never the results, the whole label config
(kept once per project) or the project token. Old events are pruned (``event_retention_days``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kernel.labelstudio import (
    LabelConfigError,
    is_approved,
    label_studio_id,
    project_key,
    read_label_config,
    result_kinds,
)
from kernel.settings import Settings
from workers.events import AnnotationRow, EventStore

log = logging.getLogger(__name__)

HANDLED = (
    "ANNOTATION_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
    "START_TRAINING",
    "PROJECT_UPDATED",
)


MAX_DELETED_PER_EVENT = 100_000
"""Annotation ids one ``ANNOTATIONS_DELETED`` may name; more are refused (:class:`PayloadTooLarge`)
before anything is written, so that one event cannot hold the event store's writer for long (100,000
take about a second on SQLite)."""


class BadPayload(ValueError):
    """A webhook payload that is not what Label Studio sends; the message says what is wrong."""


class PayloadTooLarge(BadPayload):
    """A webhook payload over one of this module's bounds (the route answers ``413``)."""


def _project_of(payload: Mapping[str, Any], annotation: Mapping[str, Any] | None) -> str:
    raw = payload.get("project")
    if raw is None and annotation is not None:
        raw = annotation.get("project")
    try:
        return project_key(raw)
    except ValueError as exc:
        raise BadPayload(f"{payload.get('action')}: {exc}") from None


def _kinds_of(label_config: str) -> tuple[str, ...]:
    """The model kinds of a label config (every annotation webhook carries its project's: the kernel's
    cached parse reads each distinct config once)."""
    try:
        return read_label_config(label_config).kinds
    except LabelConfigError as exc:
        raise BadPayload(f"the project's label config: {exc}") from None


def _summary(
    rows: list[AnnotationRow],
    deleted: list[int],
    requests: list[tuple[str, str]],
    kinds: tuple[str, ...] | None,
) -> dict[str, Any]:
    """What is stored of an event: the fields the policies read, bounded in size."""
    out: dict[str, Any] = {}
    if rows:
        out["annotations"] = [
            {"id": r.annotation_id, "task": r.task_id, "approved": r.approved, "kinds": list(r.kinds)}
            for r in rows
        ]
    if deleted:
        out["deleted"] = len(deleted)
    if requests:
        out["requests"] = [kind for kind, _ in requests]
    if kinds is not None:
        out["kinds"] = list(kinds)
    return out


def record_webhook(settings: Settings, store: EventStore, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Record one webhook payload; returns the reply body. Raises :class:`BadPayload`."""
    action = payload.get("action")
    if action not in HANDLED:
        return {"status": "ignored", "action": action}
    annotation = payload.get("annotation") if isinstance(payload.get("annotation"), Mapping) else None
    project = _project_of(payload, annotation)
    if not (store.is_connected(project) or project in settings.projects):
        return {
            "status": "ignored",
            "action": action,
            "project": project,
            "reason": f"project {project} never connected to this backend (no /setup)",
        }
    raw_project = payload.get("project")
    label_config = raw_project.get("label_config") if isinstance(raw_project, Mapping) else None
    if label_config is not None and not isinstance(label_config, str):
        raise BadPayload(f"{action}: project.label_config must be the label config XML string")
    kinds = _kinds_of(label_config) if label_config else None
    known_kinds = kinds if kinds is not None else store.project_kinds(project)
    rows: list[AnnotationRow] = []
    deleted: list[int] = []
    requests: list[tuple[str, str]] = []
    try:
        if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
            if annotation is None or annotation.get("id") is None:
                raise BadPayload(f"{action}: no annotation id in the payload")
            annotation_id = label_studio_id(annotation.get("id"), "annotation.id")
            task = annotation.get("task")
            task = task.get("id") if isinstance(task, Mapping) else task
            task_id = None if task is None else label_studio_id(task, "annotation.task")
            approved = is_approved(annotation, settings.project(project).approval)
            ann_kinds = result_kinds(annotation.get("result")) or known_kinds
            rows.append(AnnotationRow(annotation_id, task_id, ann_kinds, approved))
        elif action == "ANNOTATIONS_DELETED":
            items = payload.get("annotations")
            if not isinstance(items, list):
                raise BadPayload("ANNOTATIONS_DELETED: no 'annotations' list in the payload")
            if len(items) > MAX_DELETED_PER_EVENT:
                raise PayloadTooLarge(
                    f"ANNOTATIONS_DELETED names {len(items)} annotations, over the {MAX_DELETED_PER_EVENT} "
                    "one event may name; nothing was recorded (delete them in smaller batches)"
                )
            deleted = [
                label_studio_id(a.get("id"), "annotations[].id") for a in items if isinstance(a, Mapping)
            ]
        elif action == "START_TRAINING":
            if not known_kinds:
                return {
                    "status": "ignored",
                    "action": action,
                    "reason": "the label config has no trainable control",
                }
            requests = [(kind, "START_TRAINING (Label Studio's Train button)") for kind in known_kinds]
    except BadPayload:
        raise
    except ValueError as exc:
        raise BadPayload(f"{action}: {exc}") from None
    seq = store.record(
        action,
        project,
        _summary(rows, deleted, requests, kinds),
        label_config=label_config,
        kinds=kinds,
        annotations=rows,
        deleted_ids=deleted,
        requests=requests,
    )
    return {"status": "recorded", "action": action, "project": project, "event": seq}
