"""Fixtures shared by every package's tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from waits import LONG

from kernel.net import free_port

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HISTOLOOP_SHARED", ROOT.parent / "shared"))

# No test may reach a model hub or write to the user's home.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout (real histology samples); skip where it is absent."""
    data = SHARED / "data"
    if not (data / "monuseg-breast" / "images").is_dir():
        pytest.skip(f"real sample data not found at {data} (set HISTOLOOP_SHARED to the shared/ folder)")
    return data


@pytest.fixture(scope="session")
def test_redis() -> Iterator[str]:
    """A redis-server of the tests' own on a free loopback port (``redis://127.0.0.1:<port>``), never a
    Redis the user runs: the tests flush its databases. Stopped after the session."""
    from workers.redis_server import start_redis

    handle = start_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=LONG)
    yield handle.url.rsplit("/", 1)[0]
    handle.stop()


POSTGRES = os.environ.get("HISTOLOOP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
"""The PostgreSQL server the tests use (trust auth); each session makes and drops databases of its own."""


class PostgresServer:
    """A database of this test session's own (a random name) on the tests' PostgreSQL server, dropped at
    the end; ``fresh()`` empties it (histoloop's schemas dropped) for the next test and returns its URL."""

    def __init__(self, admin_url: str) -> None:
        import uuid

        import psycopg

        self._admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
        self.name = f"histoloop_test_{uuid.uuid4().hex[:12]}"
        self._admin.execute(f'CREATE DATABASE "{self.name}"')
        self.url = f"{admin_url.rsplit('/', 1)[0]}/{self.name}"

    def fresh(self) -> str:
        import psycopg

        import kernel.database

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS histoloop_registry, histoloop_events CASCADE")
        kernel.database._upgraded.clear()  # this process migrated the schemas just dropped
        return self.url

    def close(self) -> None:
        self._admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self._admin.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The tests' PostgreSQL server (``HISTOLOOP_TEST_POSTGRES``, default postgres@127.0.0.1:5432, trust
    auth); skip with a message where none answers (``.ci/run`` installs and starts one)."""
    try:
        server = PostgresServer(POSTGRES)
    except Exception as exc:  # psycopg.OperationalError, or psycopg missing
        pytest.skip(f"no PostgreSQL server at {POSTGRES} ({type(exc).__name__}: {str(exc).strip()[:200]})")
    yield server
    server.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Run the test on both backends: ``""`` (the embedded SQLite default) and the URL of the session's
    PostgreSQL database, emptied for this test."""
    if request.param == "sqlite":
        return ""
    return request.getfixturevalue("postgres_server").fresh()


@pytest.fixture
def settings(tmp_path: Path):
    """Settings on a fresh model store under tmp_path, nothing read from the environment; the queue on the
    discard port (no Redis answers there: never the user's on 6379)."""
    from kernel.settings import load_settings

    return load_settings(
        env={"HISTOLOOP_MODEL_STORE": str(tmp_path / "store"), "HISTOLOOP_REDIS_URL": "redis://127.0.0.1:9/0"}
    )


@pytest.fixture(scope="session")
def small_disk() -> Callable[[Path, str], list[str]]:
    """``small_disk(directory, size) -> argv prefix`` that runs a command with a tmpfs of ``size`` (``"4m"``)
    mounted on ``directory``, visible to that command and its children only (``unshare -rm``: a user and
    mount namespace of their own, no root needed), so that writing there fills a real disk. Files outside
    ``directory`` are written as usual. Skip where user namespaces are not allowed."""
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a small disk here (unshare -rm: {probe.stderr.strip()})")

    def prefix(directory: Path, size: str) -> list[str]:
        Path(directory).mkdir(parents=True, exist_ok=True)
        mount = f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"'
        return ["unshare", "-rm", "sh", "-c", mount, str(directory)]

    return prefix
