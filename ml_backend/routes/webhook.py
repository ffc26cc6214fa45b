"""``POST /webhook``: Label Studio's events, recorded durably, answered in milliseconds.

Each request is one transaction in the backend's event store (:func:`workers.intake.record_webhook`) and
a wake-up of the backend's dispatcher thread (:class:`workers.dispatch.Dispatcher`), which queues what the
trigger policy says is due. With Redis down it still answers 200, and the trigger fires when Redis is back.
The webhook Label Studio creates for a backend sends no credentials, so basic auth does not cover it.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from ml_backend.context import backend, fail
from ml_backend.telemetry import count_webhook
from workers.intake import BadPayload, record_webhook

blueprint = Blueprint("webhook", __name__)


@blueprint.post("/webhook")
def webhook() -> ResponseReturnValue:
    b = backend()
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("action"), str):
        fail(400, "expected a JSON object with an 'action' (a Label Studio webhook)")
    try:
        reply = record_webhook(b.settings, b.events, payload)
    except BadPayload as exc:
        count_webhook(payload["action"], "bad payload")
        fail(400, str(exc))
    count_webhook(payload["action"], str(reply.get("status", "")))
    if reply["status"] == "recorded":
        b.dispatcher.notify(reply["project"])
    return jsonify(reply), 200
