"""Issue 11 item 3 over real HTTP: a Label Studio that drips one byte at a time.

``histoloop serve`` (gunicorn, 4 threads) with a tiny classifier; every /predict fetches its image from a
server that sends one byte every 0.5 s. Each fetch is cut at the deadline (HISTOLOOP_IMAGE_TIMEOUT=3 s,
in all, not per byte), a fourth /predict finds every predict slot taken and gets a 503 at once, and
/health and /webhook answer within a second the whole time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from backend_testkit import add_version
from test_image_access import CHOICES
from waits import LONG, wait_for

from kernel.net import free_port


class Drip:
    """A real HTTP server that announces 100 kB and sends one byte every ``every`` seconds."""

    def __init__(self, every: float = 0.5) -> None:
        self.requests = 0
        stop = self.stop = threading.Event()
        drip = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                drip.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                try:
                    for _ in range(100_000):
                        if stop.wait(every):
                            return
                        self.wfile.write(b"\x89")
                        self.wfile.flush()
                except OSError:  # the client hung up (its deadline)
                    return

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def timed(call) -> tuple[float, requests.Response]:
    t0 = time.monotonic()
    r = call()
    return time.monotonic() - t0, r


def test_slow_images_hold_neither_health_nor_webhook(make_settings, tmp_path: Path) -> None:
    drip = Drip()
    settings = make_settings(label_studio_url=drip.url)
    add_version(settings, "4", "classify")
    port = free_port()
    env = {
        **os.environ,
        "HISTOLOOP_MODEL_STORE": str(settings.model_store),
        "HISTOLOOP_DEVICE": "cpu",
        "HISTOLOOP_LABEL_STUDIO_URL": drip.url,
        "HISTOLOOP_IMAGE_TIMEOUT": "3",
        "HISTOLOOP_REDIS_URL": settings.redis_url,
        "HISTOLOOP_LOCAL_FILES_ROOT": str(settings.local_files_root),
    }
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "histoloop.cli", "serve", "--port", str(port), "--threads", "4"],
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
                if requests.get(f"{url}/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        r = requests.post(
            f"{url}/setup",
            json={"project": "4.1795424387", "schema": CHOICES, "hostname": drip.url},
            timeout=10,
        )
        assert r.json()["model_version"] == "classify-v1"
        loaded = lambda: requests.get(f"{url}/health", timeout=5).json()["projects"]["4"]["loaded"]  # noqa: E731
        while loaded() != ["classify"]:  # /setup loads the model in the background
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        body = {
            "tasks": [{"id": 1, "data": {"image": "/data/upload/1/slow.png"}}],
            "project": "4.1795424387",
            "label_config": CHOICES,
        }
        hook = {
            "action": "ANNOTATION_CREATED",
            "project": {"id": 4, "label_config": CHOICES},
            "annotation": {"id": 1, "task": 1, "result": []},
        }
        with ThreadPoolExecutor(4) as pool:
            predicts = [
                pool.submit(timed, lambda: requests.post(f"{url}/predict", json=body, timeout=60))
                for _ in range(4)
            ]
            # every predict thread is busy now (three fetch the dripping image, the fourth was refused)
            wait_for(lambda: drip.requests >= 3, LONG, "three predicts fetching the slow image")
            probes = []
            for _ in range(4):
                probes.append(timed(lambda: requests.get(f"{url}/health", timeout=10)))
                probes.append(timed(lambda: requests.post(f"{url}/webhook", json=hook, timeout=10)))
                time.sleep(0.4)
            answers = [f.result() for f in predicts]
        for seconds, r in probes:
            assert r.status_code == 200 and seconds < 1.0, (seconds, r.status_code, r.text)
        codes = sorted(r.status_code for _, r in answers)
        assert codes == [200, 200, 200, 503], [(s, r.text) for s, r in answers]
        for seconds, r in answers:
            if r.status_code == 200:
                assert "deadline of 3 s" in r.json()["results"][0]["error"] and seconds < 8, (seconds, r.text)
            else:
                assert seconds < 1.0 and r.headers["Retry-After"] and "busy" in r.json()["error"]
        assert drip.requests == 3
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(LONG)
        drip.close()
    # item 8: a control socket of this instance's own (not the per-user ~/.gunicorn/gunicorn.ctl that a
    # second `histoloop serve` would take over), removed when it stops
    sockets = re.findall(r"Control socket listening at (\S+)", log.read_text())
    assert sockets and all("/histoloop-gunicorn-" in s for s in sockets), log.read_text()
    assert not Path(sockets[0]).parent.exists()
