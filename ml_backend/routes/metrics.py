"""``GET /metrics``: the backend's counters in Prometheus' text format (see :mod:`ml_backend.telemetry`).

Like every route but ``/webhook`` it is behind the backend's basic auth when that is set (give Prometheus
the same user and password: ``basic_auth`` in its scrape config).
"""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ml_backend.context import backend
from ml_backend.telemetry import exposition

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
def metrics() -> Response:
    state = backend()
    return Response(exposition(state.settings, state.registry), content_type=CONTENT_TYPE_LATEST)
