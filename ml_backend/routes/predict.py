"""``POST /predict``: predictions for a batch of tasks, one item per task, in order.

Body (observed, Label Studio 1.23.2): ``{"tasks": [...], "project": "4.1795424387", "label_config":
"<View>...", "params": {"login", "password", "context"}}``. Reply: ``{"results": [{"result": [...],
"score": s, "model_version": v}, ...]}``. A ``params.context`` with a smart tool's region (Label Studio's
interactive pre-annotation) is answered by :mod:`ml_backend.interactive` on a crop. A malformed body is a
400 with the reason; a bad task is an empty result for that task (see :mod:`ml_backend.engine`), never an
error for the batch. The ``Server-Timing`` header gives the milliseconds spent in each stage:
``request`` (reading and parsing the body), ``fetch`` and ``decode`` (the images), ``queue`` (waiting for
a model another request is using), ``model``, ``results`` (building the Label Studio results), ``json``
(serialising the reply) and ``total`` (the handler from start to end; what a client measures beyond it
is HTTP and the server's own queueing). The interactive path reports ``image`` instead of ``fetch`` and
``decode``, and no ``queue``.

``503`` (Label Studio stores nothing and asks again later): every model the config needs failed to load
(the reason in ``error``; ``/health`` says ``DEGRADED``), or all ``predict_slots`` of this process are
busy (``Retry-After``: the threads left are kept for ``/health`` and ``/webhook``).
"""

from __future__ import annotations

import time

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from kernel.labelstudio import project_key
from ml_backend.context import backend, fail, json_object
from ml_backend.engine import Limits, ModelUnavailable
from ml_backend.interactive import is_interactive
from ml_backend.labelconfig import LabelConfigError, parse_label_config
from ml_backend.telemetry import count_predictions

blueprint = Blueprint("predict", __name__)


@blueprint.post("/predict")
def predict() -> ResponseReturnValue:
    started = time.perf_counter()
    b = backend()
    body = json_object()
    parsed = time.perf_counter()
    tasks = body.get("tasks")
    if not isinstance(tasks, list):
        fail(400, "'tasks' must be a list of Label Studio tasks")
    raw_project = body.get("project")
    if raw_project is None and tasks and isinstance(tasks[0], dict):
        raw_project = tasks[0].get("project")
    try:
        key = project_key(raw_project)
    except ValueError as exc:
        fail(400, str(exc))
    state = b.projects.get(key)
    config = body.get("label_config") or state.label_config
    if not isinstance(config, str):
        fail(400, f"project {key}: no label config (send 'label_config' or call /setup first)")
    try:
        plan = parse_label_config(config)
    except LabelConfigError as exc:
        fail(400, f"project {key}: {exc}")
    params = body.get("params")
    try:
        with b.predict_slot():
            if isinstance(params, dict) and is_interactive(params):
                version, results, timings = b.interactive.predict(key, tasks, params["context"], plan, state)
                count_predictions("interactive", results)
            else:
                limits = Limits(
                    deadline=time.monotonic() + b.settings.predict_timeout - (time.perf_counter() - started),
                    timeout_s=b.settings.predict_timeout,
                    max_pixels=b.settings.predict_max_pixels,
                )
                version, results, timings = b.engine.predict(key, tasks, plan, state, limits)
                count_predictions("batch", results)
    except ModelUnavailable as exc:  # not an empty answer under a version that is not served
        fail(503, f"{exc}; no prediction until it is fixed (see /health)")
    t0 = time.perf_counter()
    response = jsonify(results=results, model_version=version)
    done = time.perf_counter()
    stages = {"request": parsed - started, **timings, "json": done - t0, "total": done - started}
    response.headers["Server-Timing"] = ", ".join(f"{k};dur={1000 * v:.2f}" for k, v in stages.items())
    return response
