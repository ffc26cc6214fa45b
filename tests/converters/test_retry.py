"""Retries on 5xx answers and reset connections, for image fetches and the Label Studio client, against a
real local HTTP server that fails the first N requests of a path (or every one) and then answers."""

from __future__ import annotations

import io
import json
import logging
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image

from converters.images import ImageError, ImageLoader
from converters.lsclient import LabelStudioClient, LabelStudioError, LabelStudioUnavailable
from tests.waits import LONG

TOKEN = "0123456789abcdef0123456789abcdef01234567"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 5, 3), 200, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()


class Flaky:
    """``/<how>/<n>/...``: the first ``n`` requests of the path fail ``how`` (``502``, ``503``, ``reset``
    or ``404``), later ones succeed (``n`` = ``always``: every one fails). A path under ``/api/`` answers
    JSON, any other a PNG."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.bodies: list[object] = []
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                path = urlsplit(self.path).path
                flaky.hits[path] += 1
                _, how, n, *_ = path.split("/")
                failing = n == "always" or flaky.hits[path] <= int(n)
                if failing and how == "reset":  # RST instead of an answer
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if failing:
                    self.send_response(int(how))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if "/api/" in path:
                    query = parse_qs(urlsplit(self.path).query)
                    body = json.dumps(
                        {"created": 2}
                        if self.command == "POST"
                        else {"label_config": "<View/>", "query": query}
                    ).encode()
                    kind = "application/json"
                else:
                    body, kind = PNG, "image/png"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                flaky.bodies.append(json.loads(self.rfile.read(length) or b"null"))
                self._answer()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def flaky() -> Iterator[Flaky]:
    server = Flaky()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


# -- image fetches ----------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["502", "503", "reset"])
def test_an_image_fetch_is_tried_again_after_a_passing_failure(flaky, how, caplog) -> None:
    loader = ImageLoader(label_studio_url=flaky.url, api_key=TOKEN, timeout=LONG)
    with caplog.at_level(logging.WARNING, logger="converters.retry"):
        image = loader.load(f"{flaky.url}/{how}/2/x.png")
    assert image.shape == (4, 5, 3)
    assert flaky.hits[f"/{how}/2/x.png"] == 3
    assert "trying again" in caplog.text and TOKEN not in caplog.text


def test_an_image_that_always_fails_names_the_url_without_credentials(flaky, caplog) -> None:
    url = flaky.url.replace("http://", "http://user:hunter2@") + "/502/always/x.png?X-Amz-Signature=s3cr3t"
    loader = ImageLoader(timeout=LONG)  # unrestricted: a URL with its own credentials is fetched
    with caplog.at_level(logging.WARNING), pytest.raises(ImageError) as err:
        loader.load(url)
    message = str(err.value)
    assert f"{flaky.url}/502/always/x.png" in message and "HTTP 502 (after 3 attempt(s))" in message
    for secret in ("hunter2", "s3cr3t"):
        assert secret not in message and secret not in caplog.text
    assert flaky.hits["/502/always/x.png"] == 3
    restricted = ImageLoader(allow=[flaky.url + "/"], timeout=LONG)
    with pytest.raises(ImageError, match="not an allowed image source") as err:
        restricted.load(url)  # refused (credentials of the task's own), and the refusal hides them
    assert "hunter2" not in str(err.value) and "s3cr3t" not in str(err.value)


def test_an_image_fetch_is_not_tried_again_on_a_4xx(flaky) -> None:
    loader = ImageLoader(label_studio_url=flaky.url, api_key=TOKEN, timeout=LONG)
    with pytest.raises(ImageError, match="HTTP 404"):
        loader.load(f"{flaky.url}/404/always/x.png")
    assert flaky.hits["/404/always/x.png"] == 1


def test_the_retries_stay_within_the_fetch_deadline(flaky) -> None:
    # the first pause (0.5 s) would end after the 0.3 s deadline: one try only, the failure raised
    loader = ImageLoader(label_studio_url=flaky.url, api_key=TOKEN, timeout=0.3)
    with pytest.raises(ImageError, match="HTTP 502"):
        loader.load(f"{flaky.url}/502/always/x.png")
    assert flaky.hits["/502/always/x.png"] == 1


# -- the Label Studio client ------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["502", "reset"])
def test_a_label_studio_call_is_tried_again_after_a_passing_failure(flaky, how) -> None:
    client = LabelStudioClient(flaky.url, TOKEN, timeout=LONG)
    assert client.call("GET", f"/{how}/2/api/projects/4/")["label_config"] == "<View/>"
    assert flaky.hits[f"/{how}/2/api/projects/4/"] == 3
    predictions = [{"task": 1, "result": [], "score": 0.5, "model_version": "v1"}] * 2
    assert client.call("POST", f"/{how}/1/api/projects/4/import/predictions", json=predictions) == {
        "created": 2
    }
    assert flaky.bodies[-1] == predictions


def test_a_label_studio_call_that_always_fails_says_so_without_the_key(flaky, caplog) -> None:
    client = LabelStudioClient(flaky.url, TOKEN, timeout=LONG)
    with caplog.at_level(logging.DEBUG), pytest.raises(LabelStudioUnavailable) as err:
        client.call("GET", "/503/always/api/projects/4/")
    assert str(err.value) == f"GET {flaky.url}/503/always/api/projects/4/: HTTP 503 (after 3 attempt(s))"
    assert err.value.status == 503 and flaky.hits["/503/always/api/projects/4/"] == 3
    assert TOKEN not in caplog.text and TOKEN not in repr(client)
    with pytest.raises(LabelStudioUnavailable, match=r"ConnectionError \(after 3 attempt\(s\)\)"):
        client.call("GET", "/reset/always/api/projects/4/")


def test_a_label_studio_call_is_not_tried_again_on_a_4xx(flaky) -> None:
    client = LabelStudioClient(flaky.url, TOKEN, timeout=LONG)
    with pytest.raises(LabelStudioError, match="HTTP 404") as err:
        client.call("GET", "/404/always/api/projects/4/")
    assert not isinstance(err.value, LabelStudioUnavailable) and err.value.status == 404
    assert flaky.hits["/404/always/api/projects/4/"] == 1


def test_the_client_needs_a_key() -> None:
    with pytest.raises(LabelStudioError, match="no Label Studio API key"):
        LabelStudioClient("http://127.0.0.1:9", "")
