"""Over real HTTP: where a key goes, and what the backend reads at all.

A listener on another port stands for an attacker's host (it records every request it receives); the
backend is served by werkzeug on 127.0.0.1, with a tiny classifier in production so that /predict
really fetches the task images.
"""

from __future__ import annotations

import dataclasses
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from backend_testkit import add_version
from PIL import Image
from waits import LONG

from kernel.settings import Secret

KEY = "K" * 40
SETUP_TOKEN = "T" * 40
CHOICES = (
    '<View><Image name="image" value="$image"/>'
    '<Choices name="dx" toName="image"><Choice value="benign"/><Choice value="malignant"/></Choices></View>'
)


def png_bytes(w: int = 8, h: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class Listener:
    """A real HTTP server that records (path, Authorization) of every request and answers a PNG."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                listener.seen.append((self.path, self.headers.get("Authorization")))
                body = png_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


@pytest.fixture
def label_studio() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


def predict(live, images: list[str], project: str = "4.1795424387") -> list[dict]:
    tasks = [{"id": i + 1, "data": {"image": image}} for i, image in enumerate(images)]
    r = live.session.post(
        f"{live.url}/predict",
        json={"tasks": tasks, "project": project, "label_config": CHOICES},
        timeout=LONG,
    )
    assert r.status_code == 200, r.text
    return r.json()["results"]


def setup(live, hostname: str | None, token: str | None = None) -> None:
    body = {"project": "4.1795424387", "schema": CHOICES, "hostname": hostname, "access_token": token}
    assert live.session.post(f"{live.url}/setup", json=body, timeout=LONG).status_code == 200


def test_setup_cannot_send_the_configured_key_elsewhere(make_settings, serve, listener, label_studio) -> None:
    """The issue's repro: /setup names another host; the key must not reach it, not even as 127.1."""
    settings = make_settings(label_studio_url=label_studio.url, label_studio_api_key=Secret(KEY))
    add_version(settings, "4", "classify")
    live = serve(settings)
    for hostname in (listener.url, f"http://127.1:{listener.port}", f"http://localhost:{listener.port}"):
        setup(live, hostname)
        (out,) = predict(live, ["/data/upload/1/x.png"])
        assert out["result"] and "error" not in out, out
    assert listener.seen == []  # fetched from the configured Label Studio instead
    assert label_studio.seen == [("/data/upload/1/x.png", f"Token {KEY}")] * 3


def test_a_setup_token_goes_only_back_to_its_host_and_is_dropped_when_it_moves(
    make_settings, serve, listener, label_studio
) -> None:
    settings = make_settings(
        label_studio_url=label_studio.url,
        label_studio_api_key=Secret(KEY),
        image_allow=(listener.url,),
        basic_auth_user="ls",  # an authenticated /setup may move the project (test below: without)
        basic_auth_password=Secret("pw"),
    )
    add_version(settings, "4", "classify")
    live = serve(settings)
    live.session.auth = ("ls", "pw")
    setup(live, label_studio.url, SETUP_TOKEN)  # Label Studio's own /setup with its project token
    predict(live, ["/data/upload/1/a.png"])
    assert label_studio.seen == [("/data/upload/1/a.png", f"Token {SETUP_TOKEN}")]
    setup(live, listener.url)  # only the hostname changes (an allow-listed one): the token stays behind
    predict(live, ["/data/upload/1/b.png", f"{label_studio.url}/data/upload/1/c.png"])
    assert listener.seen == [("/data/upload/1/b.png", None)]
    assert label_studio.seen[1:] == [("/data/upload/1/c.png", f"Token {KEY}")]  # the configured key only


def test_an_unauthenticated_setup_cannot_swap_a_projects_token(
    make_settings, serve, listener, label_studio
) -> None:
    """Without basic auth anyone who reaches the port can send /setup: the first token a project set up
    with stays (a second token, or a hostname change that would drop it, is not taken); with basic auth,
    Label Studio's authenticated /setup replaces it."""
    settings = make_settings(
        label_studio_url=label_studio.url, label_studio_api_key=Secret(KEY), image_allow=(listener.url,)
    )
    add_version(settings, "4", "classify")
    live = serve(settings)
    setup(live, label_studio.url, SETUP_TOKEN)  # Label Studio connects first
    setup(live, label_studio.url, "A" * 40)  # someone else's token for the same project
    setup(live, listener.url)  # a move to another (allowed) host would drop the first token
    setup(live, label_studio.url, "A" * 40)  # ... and let the next one in
    predict(live, ["/data/upload/1/a.png"])
    assert label_studio.seen == [("/data/upload/1/a.png", f"Token {SETUP_TOKEN}")]
    assert listener.seen == []
    authed = serve(dataclasses.replace(settings, basic_auth_user="ls", basic_auth_password=Secret("pw")))
    authed.session.auth = ("ls", "pw")
    setup(authed, label_studio.url, SETUP_TOKEN)
    setup(authed, label_studio.url, "B" * 40)  # Label Studio's own, authenticated: taken
    predict(authed, ["/data/upload/1/b.png"])
    assert label_studio.seen[1:] == [("/data/upload/1/b.png", f"Token {'B' * 40}")]


def test_default_reads_only_label_studio_and_the_root(make_settings, serve, listener, tmp_path) -> None:
    """No SSRF and no file oracle: outside paths and foreign URLs all get the same refusal, no request."""
    (tmp_path / "outside.png").write_bytes(png_bytes())
    settings = make_settings(local_files_root=None, label_studio_url="http://127.0.0.1:9")
    add_version(settings, "4", "classify")
    live = serve(settings)
    setup(live, "http://localhost:8080")
    probes = [
        str(tmp_path / "outside.png"),
        str(tmp_path / "missing.png"),
        "/etc/shadow",
        "/etc/passwd",
        f"file://{tmp_path}/outside.png",
        f"{listener.url}/x.png",
        f"http://localhost:{listener.port}/",
        "http://127.0.0.1:6379/",
        "gopher://127.0.0.1:6379/_INFO",
        "../outside.png",
    ]
    results = predict(live, probes)
    assert listener.seen == []
    for probe, out in zip(probes, results, strict=True):
        assert out["result"] == [] and "not an allowed image source" in out["error"], (probe, out)
        assert "HTTP" not in out["error"] and "not found" not in out["error"]
    # what the allow-list names is read (a directory, a URL prefix), nothing else
    allowed = dataclasses.replace(settings, image_allow=(str(tmp_path), f"{listener.url}/slides/"))
    live = serve(allowed)
    setup(live, "http://localhost:8080")
    ok, refused, other = predict(
        live, [str(tmp_path / "outside.png"), f"{listener.url}/slides/x.png", f"{listener.url}/admin"]
    )
    assert ok["result"] and refused["result"] and "not an allowed" in other["error"]
    assert listener.seen == [("/slides/x.png", None)]


def test_local_files_stay_under_the_root(make_settings, serve, tmp_path) -> None:
    (tmp_path / "secret.png").write_bytes(png_bytes())
    settings = make_settings()
    add_version(settings, "4", "classify")
    live = serve(settings)
    setup(live, "http://localhost:8080")
    inside, *outside = predict(
        live,
        [
            "/data/local-files/?d=images/a.png",
            str(tmp_path / "secret.png"),
            str(tmp_path / "nope.png"),
            "/data/local-files/?d=../secret.png",
        ],
    )
    assert inside["result"]
    assert all(o["result"] == [] and ("outside" in o["error"] or "escapes" in o["error"]) for o in outside)
