"""The Flask app Label Studio talks to: ``create_app(settings)``.

Routes (one blueprint per resource, see :mod:`ml_backend.routes`): ``GET /health``, ``POST /setup``,
``POST /predict``, ``GET /versions``, ``POST /webhook`` and ``GET /metrics``, all fed from one :class:`ml_backend.context.Backend`.
Optional HTTP basic auth (``basic_auth_user``/``basic_auth_password``, the
credentials of Label Studio's "Connect model" form) guards every route except ``/webhook``: the webhook
Label Studio creates for an ML backend sends no credentials. Failed logins are bounded per client address
(:mod:`ml_backend.auth`).

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

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

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
        return jsonify(error=f"internal error: {type(exc).__name__}"), 500

    return app
