"""``POST /webhook``: Label Studio's events, recorded durably, answered in milliseconds.

Each request is one transaction in the backend's event store (:func:`workers.intake.record_webhook`) and
a wake-up of the backend's dispatcher thread (:class:`workers.dispatch.Dispatcher`), which queues what the
trigger policy says is due. With Redis down it still answers 200, and the trigger fires when Redis is back.
The webhook Label Studio creates for a backend sends no credentials, so basic auth does not cover it;
``webhook_secret`` (``HISTOLOOP_WEBHOOK_SECRET``) makes it require the header
``X-Histoloop-Webhook-Secret: <secret>`` (added to the webhook in Label Studio, see the README): 401
without it. Events of projects that never connected to this backend are answered ``ignored`` and not
stored (:mod:`workers.intake`). On a full disk the event store cannot write: ``503`` with the reason
(nothing was recorded) and ``/health`` says ``DEGRADED`` until a webhook is recorded again. The
``Server-Timing`` header gives the milliseconds spent reading the body
(``request``), recording the event (``record``: waiting for the event store's group commit included, see
:meth:`workers.events.EventStore.record`) and in the handler in all (``total``).
"""

from __future__ import annotations

import hmac
import time

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from ml_backend.context import backend, fail, parse_json, write_or_503
from ml_backend.telemetry import count_webhook
from workers.intake import BadPayload, PayloadTooLarge, record_webhook

blueprint = Blueprint("webhook", __name__)

SECRET_HEADER = "X-Histoloop-Webhook-Secret"  # noqa: S105 - the header's name; the secret is a setting


@blueprint.post("/webhook")
def webhook() -> ResponseReturnValue:
    started = time.perf_counter()
    b = backend()
    secret = b.settings.webhook_secret.get()
    if secret and not hmac.compare_digest(request.headers.get(SECRET_HEADER, "").encode(), secret.encode()):
        fail(401, f"missing or wrong {SECRET_HEADER} header (the backend has a webhook secret)")
    payload = parse_json(request.get_data(cache=True)) if request.get_data(cache=True).strip() else None
    if not isinstance(payload, dict) or not isinstance(payload.get("action"), str):
        fail(400, "expected a JSON object with an 'action' (a Label Studio webhook)")
    parsed = time.perf_counter()
    try:
        with write_or_503("event store", b.events_where):
            reply = record_webhook(b.settings, b.events, payload)
    except PayloadTooLarge as exc:
        count_webhook(payload["action"], "too large")
        fail(413, str(exc))
    except BadPayload as exc:
        count_webhook(payload["action"], "bad payload")
        fail(400, str(exc))
    count_webhook(payload["action"], str(reply.get("status", "")))
    recorded = time.perf_counter()
    if reply["status"] == "recorded":
        b.dispatcher.notify(reply["project"])
    response = jsonify(reply)
    done = time.perf_counter()
    response.headers["Server-Timing"] = (
        f"request;dur={1000 * (parsed - started):.2f}, record;dur={1000 * (recorded - parsed):.2f}, "
        f"total;dur={1000 * (done - started):.2f}"
    )
    return response, 200
