"""Fixtures: settings on a fresh store with a local-files root, and a real server on 127.0.0.1.

- ``make_settings(**overrides)``: settings on a fresh model store, with a local-files root holding
  generated PNGs (``images/a.png`` 200x160, ``images/b.png`` 320x240) and ``monuseg/`` linked to the
  MoNuSeg tile copied (a temp copy) when ../shared/data is there.
- ``serve(settings)``: ``create_app(settings)`` served by werkzeug on a free port in a thread; returns a
  :class:`backend_testkit.Live` (``.url``, ``.setup()``, ``.predict()``).
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from backend_testkit import MONUSEG, MONUSEG_TILE, Live, png
from werkzeug.serving import make_server

from kernel.settings import Settings, load_settings

NO_REDIS = "redis://127.0.0.1:9/0"
"""Where the backend tests' settings point the queue: the discard port, where no Redis answers."""


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    root = tmp_path / "files"
    png(root / "images" / "a.png", (200, 160), seed=1)
    png(root / "images" / "b.png", (320, 240), seed=2)
    if MONUSEG.is_dir():  # a copy in the test's temp dir: a link out of the root would (rightly) be refused
        (root / "monuseg").mkdir()
        shutil.copyfile(MONUSEG / MONUSEG_TILE, root / "monuseg" / MONUSEG_TILE)

    def make(**overrides: Any) -> Settings:
        base = load_settings(
            env={
                "HISTOLOOP_MODEL_STORE": str(tmp_path / "store"),
                "HISTOLOOP_LOCAL_FILES_ROOT": str(root),
                "HISTOLOOP_LABEL_STUDIO_URL": "http://127.0.0.1:9",  # nothing listens there
                "HISTOLOOP_REDIS_URL": NO_REDIS,  # never the user's Redis on 6379
                "HISTOLOOP_DEVICE": "cpu",
            }
        )
        return dataclasses.replace(base, **overrides)

    return make


@pytest.fixture
def serve() -> Iterator[Callable[[Settings], Live]]:
    from ml_backend.app import create_app

    servers = []

    def start(settings: Settings) -> Live:
        server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return Live(f"http://127.0.0.1:{server.server_port}", settings, requests.Session())

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
