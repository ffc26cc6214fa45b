"""Fixtures for the workers tests: a real Redis (one database per test), settings, real processes.

- ``redis_url``: a Redis database of its own for this test (flushed first), on the tests' own
  redis-server (``test_redis``: a free port, never the user's Redis).
- ``wsettings(**project_overrides)``: settings on a fresh store, that Redis database, a queue of its
  own, device cpu; ``wenv(settings)``: the environment that gives a child process the same settings.
- ``serve_backend(settings)``: ``ml_backend.app.create_app`` (which registers the webhook blueprint)
  served over real HTTP on 127.0.0.1 in a thread.
- ``workers_started``: real ``histoloop worker`` processes (``prefix``: a command they run under, such as
  ``small_disk``'s), stopped after the test.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from werkzeug.serving import make_server
from workers_testkit import EXPORT, EXPORT_CONFIG, LabelStudioStub, WorkerProcess, wenv

from kernel.settings import ProjectSettings, Settings, load_settings

_DBS = itertools.cycle(range(1, 15))  # 15 is the e2e session's


@pytest.fixture
def redis_url(test_redis: str) -> Iterator[str]:
    url = f"{test_redis}/{next(_DBS)}"
    client = Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def wsettings(tmp_path: Path, redis_url: str) -> Callable[..., Settings]:
    def make(**project: Any) -> Settings:
        base = load_settings(
            env={
                "HISTOLOOP_MODEL_STORE": str(tmp_path / "store"),
                "HISTOLOOP_REDIS_URL": redis_url,
                "HISTOLOOP_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
                "HISTOLOOP_DEVICE": "cpu",
                "HISTOLOOP_LABEL_STUDIO_URL": "http://127.0.0.1:9",
                "HISTOLOOP_LABEL_STUDIO_API_KEY": "0123456789abcdef0123456789abcdef01234567",
            }
        )
        defaults = dataclasses.replace(ProjectSettings(), **project)
        return dataclasses.replace(base, project_defaults=defaults)

    return make


@pytest.fixture
def serve_app() -> Iterator[Callable[[Any], str]]:
    """``serve_app(flask_app) -> base URL``: served over real HTTP on 127.0.0.1 in a thread until the test ends."""
    servers = []

    def start(app: Any) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def serve_backend(serve_app: Callable[[Any], str]) -> Callable[[Settings], str]:
    from ml_backend.app import create_app

    return lambda settings: serve_app(create_app(settings))


@pytest.fixture
def label_studio() -> Iterator[LabelStudioStub]:
    """A local HTTP server answering Label Studio's export endpoints with the real export in tests/data."""
    stub = LabelStudioStub(json.loads(EXPORT.read_text()), EXPORT_CONFIG.read_text())
    yield stub
    stub.close()


@pytest.fixture
def workers_started(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []
    counter = itertools.count()

    def start(
        settings: Settings, config_file: Path | None = None, burst: bool = False, prefix: Sequence[str] = ()
    ) -> WorkerProcess:
        n = next(counter)
        worker = WorkerProcess(
            wenv(settings, config_file),
            tmp_path / f"worker{n}.log",
            burst=burst,
            name=f"w{n}-{uuid.uuid4().hex[:6]}",
            prefix=prefix,
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
