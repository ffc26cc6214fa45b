"""Fixtures shared by every package's tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def test_redis() -> Iterator[str]:
    """A redis-server of the tests' own on a free loopback port (``redis://127.0.0.1:<port>``), never a
    Redis the user runs: the tests flush its databases. Stopped after the session."""
    from workers.redis_server import start_redis

    handle = start_redis(f"redis://127.0.0.1:{free_port()}/0")
    yield handle.url.rsplit("/", 1)[0]
    handle.stop()


@pytest.fixture
def settings(tmp_path: Path):
    """Settings on a fresh model store under tmp_path, nothing read from the environment."""
    from kernel.settings import load_settings

    return load_settings(env={"HISTOLOOP_MODEL_STORE": str(tmp_path / "store")})


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
