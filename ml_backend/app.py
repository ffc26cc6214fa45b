"""The Flask app Label Studio talks to: ``create_app(settings)``.

Routes (one blueprint per resource, see :mod:`ml_backend.routes`): ``GET /health``, ``POST /setup``,
``POST /predict``, ``GET /versions``, ``POST /webhook`` and ``GET /metrics``, all fed from one :class:`ml_backend.context.Backend`.
Optional HTTP basic auth (``basic_auth_user``/``basic_auth_password``, the
credentials of Label Studio's "Connect model" form) guards every route except ``/webhook``: the webhook
Label Studio creates for an ML backend sends no credentials. Failed logins are bounded per client address
(:mod:`ml_backend.auth`). What a client reads names server files relative to the model store and the
local-files root (``<model store>/models/4/...``), never by their absolute paths.

Run it with gunicorn (``histoloop serve``, or ``gunicorn 'ml_backend.wsgi:app'``) or, for development,
``histoloop serve --dev``.

>>> from kernel.settings import load_settings
>>> import tempfile
>>> app = create_app(load_settings(env={"HISTOLOOP_MODEL_STORE": tempfile.mkdtemp()}))
>>> app.test_client().get("/health").json["status"]
'UP'
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from kernel.database import disk_full_reason
from kernel.settings import Settings
from ml_backend.auth import require_basic_auth
from ml_backend.context import EXTENSION, Backend
from ml_backend.jsonio import OrjsonProvider
from ml_backend.routes import BLUEPRINTS
from ml_backend.telemetry import instrument

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024 * 1024


def create_app(settings: Settings) -> Flask:
    """The backend app for ``settings``."""
    from training.offline import ensure_offline

    ensure_offline(settings.model_store / "ultralytics")
    app = Flask("histoloop.ml_backend")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json = OrjsonProvider(app)
    app.extensions[EXTENSION] = Backend.build(settings)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    instrument(app)
    if settings.basic_auth_user:
        require_basic_auth(app, settings.basic_auth_user, settings.basic_auth_password.get())

    server_paths = _server_paths(settings)

    @app.after_request
    def relative_paths(response: Response) -> Response:
        # what a client reads (errors, per-task reasons, /health) names server files relative to the
        # model store and the local-files root; the logs keep the absolute paths
        if response.direct_passthrough or response.mimetype != "application/json":
            return response
        data = response.get_data()
        if any(path in data for path, _ in server_paths):
            for path, name in server_paths:
                data = data.replace(path, name)
            response.set_data(data)
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        response = exc.get_response()
        if response.content_type == "application/json":
            return response
        response.data = jsonify(error=exc.description or exc.name).get_data()
        response.content_type = "application/json"
        return response

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> ResponseReturnValue:
        log.exception("%s %s failed", request.method, request.path)
        full = disk_full_reason(exc)
        if full is not None:  # a write no route expected to fail: still not a 500
            return jsonify(error=f"cannot write: {full}; free space on the backend's disks"), 503
        return jsonify(error=f"internal error: {type(exc).__name__}"), 500

    return app


def _server_paths(settings: Settings) -> list[tuple[bytes, bytes]]:
    """(absolute path, its name for clients) for the model store and the local-files root, as configured
    and resolved, longest first (one may lie inside the other)."""
    pairs = {}
    for root, name in (
        (settings.local_files_root, b"<local files root>"),
        (settings.model_store, b"<model store>"),
    ):
        if root is None:
            continue
        for form in (str(root), str(root.resolve())):
            if form.rstrip("/"):
                pairs[form.rstrip("/").encode()] = name
    return sorted(pairs.items(), key=lambda pair: -len(pair[0]))
