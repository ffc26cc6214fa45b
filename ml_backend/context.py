"""What the request handlers share: the :class:`Backend` of the app and JSON request/response helpers.

The :class:`Backend` is built once per app (:func:`ml_backend.app.create_app`) and holds every piece of
state a route reads: the settings, the registry and its model cache, what ``/setup`` told us, the image
loader, the prediction engine (batch and interactive), the event store and the dispatcher of ``/webhook``. Routes get it with
:func:`backend`; nothing is kept in module globals.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

from flask import abort, current_app, jsonify, make_response, request

from kernel.database import disk_full_reason
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


class DiskStatus:
    """The stores this process could not write for a full disk (store -> reason), until a write succeeds
    again: ``/health`` says ``DEGRADED`` naming them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._full: dict[str, str] = {}

    def full(self, store: str, reason: str) -> None:
        with self._lock:
            self._full[store] = reason

    def ok(self, store: str) -> None:
        if self._full:
            with self._lock:
                self._full.pop(store, None)

    def problems(self) -> dict[str, str]:
        with self._lock:
            return dict(self._full)


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
    disk: DiskStatus = field(default_factory=DiskStatus)
    slots: threading.BoundedSemaphore | None = field(default=None, repr=False)
    waiting: threading.BoundedSemaphore | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.slots is None and self.settings.predict_slots > 0:
            self.slots = threading.BoundedSemaphore(self.settings.predict_slots)
        if self.waiting is None and self.settings.predict_queue > 0:
            self.waiting = threading.BoundedSemaphore(self.settings.predict_queue)

    @contextmanager
    def predict_slot(self) -> Iterator[None]:
        """Hold one of the ``predict_slots`` for a ``/predict``. With all taken, wait for one for at most
        ``predict_queue_timeout`` s, as one of at most ``predict_queue`` waiting; a ``503`` when the wait
        ends or the queue is full, so that a slow batch never leaves ``/health`` and ``/webhook`` without
        a thread."""
        if self.slots is None:
            yield
            return
        if not self.slots.acquire(blocking=False):
            self._wait_for_slot(self.slots)
        try:
            yield
        finally:
            self.slots.release()

    def _wait_for_slot(self, slots: threading.BoundedSemaphore) -> None:
        settings = self.settings
        busy = f"busy: {settings.predict_slots} prediction(s) running"
        if self.waiting is None or not self.waiting.acquire(blocking=False):
            _refuse(f"{busy} and {settings.predict_queue} waiting; retry shortly")
        try:
            got = slots.acquire(timeout=settings.predict_queue_timeout)
        finally:
            if self.waiting is not None:
                self.waiting.release()
        if not got:
            _refuse(f"{busy}; none was free within {settings.predict_queue_timeout:g} s; retry shortly")

    @classmethod
    def build(cls, settings: Settings) -> Backend:
        registry = Registry.from_settings(settings)
        cache = ModelCache(registry, settings.device)
        images = TaskImages(settings)
        events = EventStore.from_settings(settings)
        return cls(
            settings,
            registry,
            cache,
            Projects(),
            images,
            Engine(settings, cache, images),
            events,
            Dispatcher(settings, events),
            InteractiveEngine(settings, cache, images),
        )

    @property
    def events_where(self) -> str:
        """Where the event store writes, for messages: its SQLite file, or PostgreSQL."""
        return str(self.events.path) if self.events.path is not None else "PostgreSQL"

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


def parse_json(raw: bytes) -> Any:
    """The JSON value of a request body; 400 with the reason when it is not JSON (or nested too deep)."""
    try:
        return jsonio.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if "recursion" in str(exc).lower() or "depth limit" in str(exc).lower():
            fail(400, "malformed JSON body: nested too deeply")
        fail(400, f"malformed JSON body: {exc}")
    except RecursionError:
        fail(400, "malformed JSON body: nested too deeply")


def json_object(required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object; 400 with the parser's message when it is not one."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            fail(400, "empty request body: expected a JSON object")
        return {}
    body = parse_json(raw)
    if not isinstance(body, dict):
        fail(400, f"expected a JSON object, got {type(body).__name__}")
    return body


@contextmanager
def write_or_503(store: str, where: str) -> Iterator[None]:
    """Run a write to ``store`` (``"event store"``) that lives at ``where``; on a full disk record it
    for ``/health`` and stop the request with a ``503`` saying so (nothing was written); otherwise clear
    it. Other errors pass."""
    b = backend()
    try:
        yield
    except Exception as exc:
        reason = disk_full_reason(exc)
        if reason is None:
            raise
        b.disk.full(store, f"{reason} ({where})")
        response = make_response(
            jsonify(
                error=f"the {store} cannot write: {reason} ({where}); nothing was recorded: free space on "
                "that disk (see /health)"
            ),
            503,
        )
        response.headers["Retry-After"] = "60"
        abort(response)
    b.disk.ok(store)


def _refuse(message: str) -> NoReturn:
    response = make_response(jsonify(error=message), 503)
    response.headers["Retry-After"] = "5"
    abort(response)
