"""A full disk under the event store, for real: ``histoloop serve`` runs in a mount namespace of its own
(``unshare -rm``) with its model store on a 16 MB tmpfs; the test fills that filesystem through
``/proc/<pid>/root`` until the kernel answers ENOSPC, then frees it."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from backend_testkit import BOX_CONFIG
from waits import LONG, wait_for

from kernel.net import free_port

NAMESPACE = ["unshare", "--map-root-user", "--mount"]


def _namespaces_work(tmp_path: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    mount = f"mount -t tmpfs -o size=64k tmpfs {probe}"
    return subprocess.run([*NAMESPACE, "sh", "-c", mount], capture_output=True, timeout=LONG).returncode == 0


def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until the filesystem is full (ENOSPC); return it."""
    filler = directory / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def test_a_full_disk_is_a_503_with_the_reason_and_health_says_degraded(tmp_path: Path) -> None:
    if not _namespaces_work(tmp_path):
        pytest.skip("no unprivileged mount namespaces here (unshare -rm; mount -t tmpfs) for a small disk")
    store = tmp_path / "store"
    store.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "HISTOLOOP_MODEL_STORE": str(store),
        "HISTOLOOP_REDIS_URL": "redis://127.0.0.1:9/0",
        "HISTOLOOP_LABEL_STUDIO_URL": "http://127.0.0.1:9",
        "HISTOLOOP_DEVICE": "cpu",
    }
    script = (
        'mount -t tmpfs -o size=16m tmpfs "$HISTOLOOP_MODEL_STORE" && exec "$0" -m histoloop.cli serve "$@"'
    )
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [*NAMESPACE, "sh", "-c", script, sys.executable, "--port", str(port), "--threads", "2"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def health() -> dict | None:
            assert proc.poll() is None, log.read_text()
            try:
                return requests.get(f"{url}/health", timeout=LONG).json()
            except requests.RequestException:
                return None

        assert wait_for(health, what="the backend")["status"] == "UP"
        setup = {"project": "4.1795424387", "schema": BOX_CONFIG}
        assert requests.post(f"{url}/setup", json=setup, timeout=LONG).status_code == 200
        inside = Path(f"/proc/{proc.pid}/root") / store.relative_to("/")  # the store as the backend sees it
        filler = fill(inside)
        statuses = []
        for i in range(1, 2001):  # SQLite reuses pages it has: the first writes may still fit
            event = {"action": "ANNOTATION_CREATED", "project": {"id": 4}, "annotation": {"id": i, "task": i}}
            r = requests.post(f"{url}/webhook", json=event, timeout=LONG)
            statuses.append(r.status_code)
            if r.status_code != 200:
                break
        assert r.status_code == 503, (statuses[-5:], r.text)
        assert set(statuses[:-1]) <= {200}
        error = r.json()["error"]
        assert "event store cannot write" in error and "full" in error and "nothing was recorded" in error
        assert "<model store>/events.sqlite" in error and str(store) not in error, error
        assert r.headers["Retry-After"]
        state = health()
        assert state["status"] == "DEGRADED" and "full" in state["disk"]["event store"], state
        filler.unlink()  # space again: the next webhook is recorded and /health is UP
        event = {"action": "ANNOTATION_CREATED", "project": {"id": 4}, "annotation": {"id": 9999, "task": 1}}
        r = requests.post(f"{url}/webhook", json=event, timeout=LONG)
        assert r.status_code == 200, r.text
        state = health()
        assert state["status"] == "UP" and state["disk"] == {}, state
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(LONG) is not None
