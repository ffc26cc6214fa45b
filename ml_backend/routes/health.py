"""``GET /health``: up, and per project which kinds have a production model.

Label Studio polls it with a 1 s timeout and treats any 200 JSON as healthy. The projects listed are
those that sent ``/setup`` to this process (with the kinds their label config uses) and those with
versions in the registry (all kinds). ``without_model`` names the kinds that get no predictions;
``failed`` the kinds whose production version failed to load (it is not served under its name): then
``status`` is ``DEGRADED``, as it is while a store cannot write for a full disk (``disk``: store -> reason)
(still a 200: Label Studio's check reads only the status code, and the other
projects are served). ``GET /health?project=4`` reports one project.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from kernel.labelstudio import project_key
from ml_backend.context import backend, fail

blueprint = Blueprint("health", __name__)


@blueprint.get("/health")
@blueprint.get("/")
def health() -> ResponseReturnValue:
    b = backend()
    if "project" in request.args:
        try:
            keys = [project_key(request.args["project"])]
        except ValueError as exc:
            fail(400, str(exc))
    else:
        keys = sorted(
            set(b.projects.keys()) | {v.project for v in b.registry.list()}, key=lambda k: (len(k), k)
        )
    projects: dict[str, Any] = {}
    degraded = False
    for key in keys:
        kinds = b.kinds_of(key)
        serving = b.cache.status(key, kinds)
        projects[key] = {
            "model_version": serving.model_version,
            "kinds": {k: v.label for k, v in serving.versions.items()},
            "loaded": sorted(serving.models),
            "without_model": serving.missing,
            "failed": serving.failed,
        }
        degraded = degraded or bool(serving.failed)
    disk = b.disk.problems()
    return jsonify(
        status="DEGRADED" if degraded or disk else "UP",
        model_class="histoloop",
        device=b.cache.device,
        projects=projects,
        disk=disk,
    )
