"""``POST /webhook``: Label Studio's events, recorded durably, answered in milliseconds.

Registered on the backend by :func:`ml_backend.app.create_app`; reads the settings from
``current_app.config["HISTOLOOP_SETTINGS"]``. Handled actions (payloads as Label Studio 1.23 sends them,
see ../shared/NOTES.md):

- ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED`` ``{annotation{id, task, result, was_cancelled,
  ground_truth, ...}, project{id, label_config, ...}}``: the annotation is stored as approved or not
  under the project's approval policy (:mod:`workers.approval`);
- ``ANNOTATIONS_DELETED`` (plural) ``{annotations: [{id}], project}``: the annotations no longer count;
- ``START_TRAINING`` (Label Studio's Train button): a retrain request for every model kind of the project;
- ``PROJECT_UPDATED``: the stored label config (and so the project's model kinds) is updated.

Each request does one SQLite transaction (:class:`workers.events.EventStore`) and wakes the process's
dispatch thread (:mod:`workers.dispatch`); it never exports, trains or waits on Redis. With Redis down it
still answers 200 and the trigger fires when Redis is back. Other actions are answered 200 and ignored.
The project token Label Studio puts in the payload is not stored.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from workers.approval import is_approved, result_kinds
from workers.dispatch import dispatcher_for
from workers.events import AnnotationRow, EventStore

log = logging.getLogger(__name__)

blueprint = Blueprint("histoloop_webhook", __name__)

HANDLED = (
    "ANNOTATION_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
    "START_TRAINING",
    "PROJECT_UPDATED",
)
_KEEP_PROJECT_FIELDS = ("id", "title")

_stores: dict[str, EventStore] = {}
_stores_lock = threading.Lock()


class BadPayload(ValueError):
    pass


def _store(settings: Any) -> EventStore:
    key = str(settings.events_path)
    with _stores_lock:
        if key not in _stores:
            _stores[key] = EventStore(settings.events_path)
        return _stores[key]


def project_key(value: Any) -> str | None:
    """``4``, ``"4"``, ``"4.1795424387"`` (``<id>.<created ts>``) or ``{"id": 4}`` -> ``"4"``."""
    if isinstance(value, dict):
        value = value.get("id")
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip().split(".", 1)[0]
    return text if text.isdigit() else None


@lru_cache(maxsize=256)
def config_kinds(label_config: str) -> tuple[str, ...]:
    """The model kinds a label config's image control tags need (``RectangleLabels`` -> detect, ...).

    >>> config_kinds('<View><Image name="i" value="$image"/><Text name="t" value="$text"/>'
    ...              '<Choices name="c" toName="t"><Choice value="a"/></Choices>'
    ...              '<RectangleLabels name="r" toName="i"><Label value="x"/></RectangleLabels></View>')
    ('detect',)
    """
    from label_studio_sdk.label_interface import LabelInterface

    try:
        controls = LabelInterface(label_config).controls
    except Exception as exc:  # the SDK raises lxml/ValueError/KeyError variants
        raise BadPayload(f"cannot parse the project's label config: {exc}") from exc
    on_images = [
        c for c in controls if any(o.tag.lower() == "image" for o in getattr(c, "objects", []) or [])
    ]
    return result_kinds([{"type": control.tag} for control in on_images])


def _slim(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as stored: the project reduced to id and title (no token, no config copy)."""
    out = {k: v for k, v in payload.items() if k != "project"}
    if isinstance(payload.get("project"), dict):
        out["project"] = {k: payload["project"].get(k) for k in _KEEP_PROJECT_FIELDS}
    else:
        out["project"] = payload.get("project")
    return out


def record_webhook(settings: Any, payload: dict[str, Any], store: EventStore | None = None) -> dict[str, Any]:
    """Record one webhook payload; returns the reply body. Raises :class:`BadPayload`."""
    store = store or _store(settings)
    action = payload.get("action")
    if action not in HANDLED:
        return {"status": "ignored", "action": action}
    annotation = payload.get("annotation") if isinstance(payload.get("annotation"), dict) else None
    project = project_key(payload.get("project")) or project_key((annotation or {}).get("project"))
    if project is None:
        raise BadPayload(f"{action}: no project id in the payload")
    label_config = (
        payload["project"].get("label_config") if isinstance(payload.get("project"), dict) else None
    )
    kinds = config_kinds(label_config) if label_config else None
    known_kinds = kinds if kinds is not None else store.project_kinds(project)
    rows, deleted, requests = [], [], []
    if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        if annotation is None or not isinstance(annotation.get("id"), int):
            raise BadPayload(f"{action}: no annotation id in the payload")
        policy = settings.project(project).approval
        ann_kinds = result_kinds(annotation.get("result") or []) or known_kinds
        task = annotation.get("task")
        task_id = task.get("id") if isinstance(task, dict) else task
        rows.append(AnnotationRow(annotation["id"], task_id, ann_kinds, is_approved(annotation, policy)))
    elif action == "ANNOTATIONS_DELETED":
        items = payload.get("annotations")
        if not isinstance(items, list):
            raise BadPayload("ANNOTATIONS_DELETED: no 'annotations' list in the payload")
        deleted = [a["id"] for a in items if isinstance(a, dict) and isinstance(a.get("id"), int)]
    elif action == "START_TRAINING":
        if not known_kinds:
            return {
                "status": "ignored",
                "action": action,
                "reason": "the label config has no trainable control",
            }
        requests = [(kind, "START_TRAINING (Label Studio's Train button)") for kind in known_kinds]
    seq = store.record(action, project, _slim(payload), label_config=label_config, kinds=kinds,
                       annotations=rows, deleted_ids=deleted, requests=requests)  # fmt: skip
    return {"status": "recorded", "action": action, "project": project, "event": seq}


@blueprint.post("/webhook")
def webhook():
    settings = current_app.config["HISTOLOOP_SETTINGS"]
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("action"), str):
        return jsonify(error="expected a JSON object with an 'action' (a Label Studio webhook)"), 400
    try:
        reply = record_webhook(settings, payload)
    except BadPayload as exc:
        return jsonify(error=str(exc)), 400
    if reply["status"] == "recorded":
        dispatcher_for(settings).notify(reply["project"])
    return jsonify(reply), 200
