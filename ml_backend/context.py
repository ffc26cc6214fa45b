"""What the request handlers share: the :class:`Backend` of the app and JSON request/response helpers.

The :class:`Backend` is built once per app (:func:`ml_backend.app.create_app`) and holds every piece of
state a route reads: the settings, the registry and its model cache, what ``/setup`` told us, the image
loader, the prediction engine (batch and interactive), the event store and the dispatcher of ``/webhook``. Routes get it with
:func:`backend`; nothing is kept in module globals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn

from flask import abort, current_app, jsonify, make_response, request

from kernel.kinds import KINDS, Kind
from kernel.settings import Settings
from ml_backend import jsonio
from ml_backend.engine import Engine
from ml_backend.interactive import InteractiveEngine
from ml_backend.labelconfig import LabelConfigError, parse_label_config
from ml_backend.models import ModelCache
from ml_backend.projects import Projects
from ml_backend.task_images import TaskImages
from training.registry import Registry
from workers.dispatch import Dispatcher
from workers.events import EventStore

EXTENSION = "histoloop"


@dataclass
class Backend:
    settings: Settings
    registry: Registry
    cache: ModelCache
    projects: Projects
    images: TaskImages
    engine: Engine
    events: EventStore
    dispatcher: Dispatcher
    interactive: InteractiveEngine

    @classmethod
    def build(cls, settings: Settings) -> Backend:
        registry = Registry.from_settings(settings)
        cache = ModelCache(registry, settings.device)
        images = TaskImages(settings)
        events = EventStore.from_settings(settings)
        return cls(settings, registry, cache, Projects(), images, Engine(settings, cache, images), events,
                   Dispatcher(settings, events), InteractiveEngine(settings, cache, images))  # fmt: skip

    def kinds_of(self, key: str) -> tuple[Kind, ...]:
        """The model kinds a project's label config (from its last /setup) uses; all kinds if unknown."""
        config = self.projects.get(key).label_config
        if config:
            try:
                return parse_label_config(config).kinds
            except LabelConfigError:
                pass
        return KINDS


def backend() -> Backend:
    return current_app.extensions[EXTENSION]


def fail(status: int, message: str) -> NoReturn:
    """Stop the request with ``{"error": message}`` and ``status``."""
    abort(make_response(jsonify(error=message), status))


def json_object(required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object; 400 with the parser's message when it is not one."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            fail(400, "empty request body: expected a JSON object")
        return {}
    try:
        body = jsonio.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(400, f"malformed JSON body: {exc}")
    if not isinstance(body, dict):
        fail(400, f"expected a JSON object, got {type(body).__name__}")
    return body
