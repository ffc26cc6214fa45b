"""``histoloop serve`` as a real process: gunicorn by default, Flask's server with --dev."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from backend_testkit import BOX_CONFIG, add_version
from waits import LONG, wait_for

from kernel.net import free_port
from ml_backend.server import GunicornApp


@pytest.mark.parametrize("mode", [[], ["--dev"]], ids=["gunicorn", "dev"])
def test_serve_answers_label_studio(make_settings, tmp_path: Path, mode: list[str]) -> None:
    settings = make_settings()
    add_version(settings, "4", "detect")
    port = free_port()
    env = {
        **os.environ,
        "HISTOLOOP_MODEL_STORE": str(settings.model_store),
        "HISTOLOOP_DEVICE": "cpu",
        "HISTOLOOP_LOCAL_FILES_ROOT": str(settings.local_files_root),
    }
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "histoloop.cli", "serve", "--port", str(port), "--threads", "2", *mode],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + LONG
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if requests.get(f"{url}/health", timeout=LONG).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or the worker still booting
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        r = requests.post(
            f"{url}/setup", json={"project": "4.1795424387", "schema": BOX_CONFIG}, timeout=LONG
        )
        assert r.json() == {"model_version": "detect-v1"}
        body = {
            "tasks": [{"id": 1, "data": {"image": "/data/local-files/?d=images/a.png"}}],
            "project": "4.1795424387",
            "label_config": BOX_CONFIG,
        }
        results = requests.post(f"{url}/predict", json=body, timeout=LONG).json()["results"]
        assert results[0]["model_version"] == "detect-v1" and results[0]["result"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(LONG) is not None
    if not mode:
        assert "gunicorn" in log.read_text().lower()
        _assert_one_log_format(log.read_text())


LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


def _assert_one_log_format(text: str) -> None:
    """gunicorn's own lines (start, workers, access) and the app's share the Python log format."""
    lines = text.splitlines()
    assert any(" gunicorn.error: Starting gunicorn" in line for line in lines), text
    access = [line for line in lines if " gunicorn.access: " in line]
    assert any('"POST /setup HTTP/1.1" 200' in line for line in access), text
    assert all("[" not in line.split(" gunicorn.access: ")[1].split('"')[0] for line in access), access
    banner = [line for line in lines if line.startswith("histoloop backend on ")]  # `serve`'s console line
    assert len(banner) == 1, text
    assert [line for line in lines if not LINE.match(line) and line not in banner] == [], text


def test_gunicorn_options() -> None:
    options = GunicornApp.options_for("0.0.0.0", 9090, workers=2, threads=8)
    assert options["bind"] == "0.0.0.0:9090" and options["workers"] == 2 and options["threads"] == 8
    assert (
        options["worker_class"] == "ml_backend.gworker.BufferingWorker" and options["timeout"] > 100
    )  # Label Studio waits 100 s


def test_serve_beyond_this_host_needs_basic_auth_and_a_webhook_secret(make_settings, tmp_path: Path) -> None:
    """`--host 0.0.0.0` without credentials is refused (exit 2) with how to set them; with basic auth and a
    webhook secret it serves, behind the basic auth."""
    settings = make_settings()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HISTOLOOP_BASIC_AUTH_USER", "HISTOLOOP_BASIC_AUTH_PASSWORD", "HISTOLOOP_WEBHOOK_SECRET")
    }
    env.update(HISTOLOOP_MODEL_STORE=str(settings.model_store), HISTOLOOP_DEVICE="cpu")
    port = free_port()
    serve = [sys.executable, "-m", "histoloop.cli", "serve", "--host", "0.0.0.0", "--port", str(port)]
    refused = subprocess.run(serve, env=env, capture_output=True, text=True, timeout=LONG)
    assert refused.returncode == 2, refused.stderr
    for needed in ("HISTOLOOP_BASIC_AUTH_USER", "HISTOLOOP_BASIC_AUTH_PASSWORD", "HISTOLOOP_WEBHOOK_SECRET"):
        assert needed in refused.stderr
    assert "secrets.token_hex(32)" in refused.stderr and "--behind-auth-proxy" in refused.stderr
    env.update(HISTOLOOP_BASIC_AUTH_USER="ls", HISTOLOOP_BASIC_AUTH_PASSWORD="pw")  # no webhook secret yet
    refused = subprocess.run(serve, env=env, capture_output=True, text=True, timeout=LONG)
    assert refused.returncode == 2 and "without HISTOLOOP_WEBHOOK_SECRET:" in refused.stderr, refused.stderr
    env["HISTOLOOP_WEBHOOK_SECRET"] = "s" * 64
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [*serve, "--threads", "2"], env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:

        def answers() -> int | None:
            assert proc.poll() is None, log.read_text()
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=LONG).status_code
            except requests.RequestException:  # not listening yet
                return None

        assert wait_for(answers, what="the backend on 0.0.0.0") == 401
        r = requests.get(f"http://127.0.0.1:{port}/health", auth=("ls", "pw"), timeout=LONG)
        assert r.status_code == 200 and r.json()["status"] == "UP"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(LONG) is not None
