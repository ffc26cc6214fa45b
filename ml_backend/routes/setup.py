"""``POST /setup``: Label Studio (re)connects a project; reply the ``model_version`` it will see.

Body (observed, Label Studio 1.23.2): ``{"project": "4.1795424387", "schema": "<View>...",
"hostname": "http://localhost:8080", "access_token": "...", "extra_params": null}``. The label config,
hostname and token are remembered for the project (the token in memory only, never echoed, and sent
only back to that hostname: :mod:`ml_backend.task_images`; without basic auth a later ``/setup`` cannot
replace a token the project has: :mod:`ml_backend.projects`), and ``extra_params`` is read (a token, serving
settings: :mod:`ml_backend.projects`); the project is recorded as connected, so that its webhooks are
taken (:mod:`workers.intake`). The reply
is the same ``model_version`` every prediction of the next ``/predict`` carries, so Label Studio does not
duplicate predictions.
"""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from kernel.labelstudio import project_key
from ml_backend.context import backend, fail, json_object, write_or_503
from ml_backend.labelconfig import LabelConfigError, parse_label_config
from ml_backend.projects import KEEP, ExtraParamsError

blueprint = Blueprint("setup", __name__)


@blueprint.post("/setup")
def setup() -> ResponseReturnValue:
    b = backend()
    body = json_object()
    try:
        key = project_key(body.get("project"))
    except ValueError as exc:
        fail(400, str(exc))
    schema = body.get("schema")
    if schema is not None and not isinstance(schema, str):
        fail(400, "'schema' must be the label config XML string")
    config = schema or b.projects.get(key).label_config
    kinds: tuple[str, ...] = ()
    if config:
        try:
            kinds = parse_label_config(config).kinds
        except LabelConfigError as exc:
            fail(400, f"project {key}: {exc}")
    hostname, token = body.get("hostname"), body.get("access_token")
    try:
        b.projects.setup(
            key,
            config,
            hostname if isinstance(hostname, str) else None,
            token if isinstance(token, str) else None,
            body.get("extra_params", KEEP),
            trusted=bool(b.settings.basic_auth_user),  # then the app let only authenticated requests in
        )
    except ExtraParamsError as exc:
        fail(400, f"project {key}: {exc}")
    with write_or_503("event store", b.events_where):
        b.events.connect(key)  # webhooks of this project are Label Studio's (workers.intake)
    b.cache.warm(key, kinds)
    return jsonify(model_version=b.cache.versions(key, kinds).model_version)
