"""``GET /versions``: the model versions of a project (Label Studio sends GET with a JSON body).

Reply ``{"versions": [...], "model_version": current}``: the current ``model_version`` first, then
every registered (not failed) version's label, newest first. Without a project, all projects'.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from kernel.labelstudio import project_key
from ml_backend.context import backend, fail, json_object

blueprint = Blueprint("versions", __name__)


@blueprint.route("/versions", methods=["GET", "POST"])
def versions() -> ResponseReturnValue:
    b = backend()
    body = json_object(required=False)
    raw = body.get("project", request.args.get("project"))
    key = None
    if raw is not None:
        try:
            key = project_key(raw)
        except ValueError as exc:
            fail(400, str(exc))
    registered = [v for v in b.registry.list(project=key) if v.status != "failed"]
    registered.sort(key=lambda v: v.created_at, reverse=True)
    labels = [v.label if key else f"{v.project}/{v.label}" for v in registered]
    current = None
    if key is not None:
        kinds = b.kinds_of(key)
        current = b.cache.versions(key, kinds).model_version
        labels.insert(0, current)
    return jsonify(versions=list(dict.fromkeys(labels)), model_version=current)
