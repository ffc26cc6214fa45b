"""Over real HTTP: a Label Studio that drips one byte at a time.

``histoloop serve`` (gunicorn, 4 threads) with a tiny classifier; every /predict fetches its image from a
server that sends one byte every 0.5 s. Each fetch is cut at the deadline (HISTOLOOP_IMAGE_TIMEOUT=3 s,
in all, not per byte); a fourth /predict finds every predict slot taken and waits for one (the queue
holds one here, HISTOLOOP_PREDICT_QUEUE=1), a fifth finds the queue full too and gets a 503 at once, and
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
            def do_GET(self) -> None:
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
        "HISTOLOOP_PREDICT_QUEUE": "1",
        "HISTOLOOP_PREDICT_QUEUE_TIMEOUT": "60",
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
        with ThreadPoolExecutor(5) as pool:
            predicts = [
                pool.submit(timed, lambda: requests.post(f"{url}/predict", json=body, timeout=60))
                for _ in range(4)
            ]
            wait_for(lambda: drip.requests >= 3, LONG, "three predicts fetching the slow image")
            fifth = timed(lambda: requests.post(f"{url}/predict", json=body, timeout=60))
            probes = []
            for _ in range(4):
                probes.append(timed(lambda: requests.get(f"{url}/health", timeout=10)))
                probes.append(timed(lambda: requests.post(f"{url}/webhook", json=hook, timeout=10)))
                time.sleep(0.4)
            every = [f.result() for f in predicts] + [fifth]
        for seconds, r in probes:
            assert r.status_code == 200 and seconds < 1.0, (seconds, r.status_code, r.text)
        # the fourth and fifth race for the one place in the queue: one waits, the other is refused at once
        answers = [(s, r) for s, r in every if r.status_code != 503]
        assert len(answers) == 4 and all(r.status_code == 200 for _, r in answers), [
            (s, r.text) for s, r in every
        ]
        for seconds, r in answers:  # the one that waited for a slot (3 s), then fetched (3 s)
            assert "deadline of 3 s" in r.json()["results"][0]["error"] and seconds < 30, (seconds, r.text)
        assert sorted(s for s, _ in answers)[-1] > 5.0
        (seconds, r), *_ = [(s, r) for s, r in every if r.status_code == 503]
        assert r.status_code == 503 and seconds < 1.0, (seconds, r.text)
        assert r.headers["Retry-After"] and "1 waiting" in r.json()["error"]
        assert drip.requests == 4
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(LONG)
        drip.close()
    # item 8: a control socket of this instance's own (not the per-user ~/.gunicorn/gunicorn.ctl that a
    # second `histoloop serve` would take over), removed when it stops
    sockets = re.findall(r"Control socket listening at (\S+)", log.read_text())
    assert sockets and all("/histoloop-gunicorn-" in s for s in sockets), log.read_text()
    assert not Path(sockets[0]).parent.exists()


def test_a_prediction_waits_for_a_slot_for_a_bounded_time(make_settings, serve) -> None:
    """One slot held by a fetch that takes its whole 10 s deadline: a second /predict waits 1 s for it
    (HISTOLOOP_PREDICT_QUEUE_TIMEOUT) and is a 503 saying so; with the slot free again, one is served."""
    drip = Drip()
    try:
        settings = make_settings(
            label_studio_url=drip.url,
            image_timeout=4.0,
            predict_slots=1,
            predict_queue=2,
            predict_queue_timeout=1.0,
        )
        add_version(settings, "4", "classify")
        live = serve(settings)
        live.setup(CHOICES)
        body = {
            "tasks": [{"id": 1, "data": {"image": "/data/upload/1/slow.png"}}],
            "project": "4.1795424387",
            "label_config": CHOICES,
        }
        post = lambda: requests.post(f"{live.url}/predict", json=body, timeout=60)  # noqa: E731
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(timed, post)
            running = time.monotonic() + 60
            while drip.requests < 1:
                assert time.monotonic() < running
                time.sleep(0.05)
            seconds, r = timed(post)
            assert r.status_code == 503 and 0.9 < seconds < 8, (seconds, r.text)
            assert "none was free within 1 s" in r.json()["error"] and r.headers["Retry-After"]
            assert first.result()[1].status_code == 200
        assert timed(post)[1].status_code == 200
    finally:
        drip.close()
