"""Over real HTTP: Label Studio's redirects are followed to its own origin only, and the password of a
Label Studio URL is in no error and no log line.

Two real local servers: ``ls`` stands for Label Studio (it redirects), ``other`` for any other host
(another port is another origin); ``other`` records every request it gets.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from converters.images import ImageError, ImageLoader
from converters.lsclient import LabelStudioClient, LabelStudioError
from kernel.net import free_port

KEY = "0123456789abcdef0123456789abcdef01234567"


def png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((6, 8, 3), 90, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class Server:
    """A real HTTP server answering ``routes``: path -> (status, headers, body); records what it gets."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.seen: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.seen.append((self.path, self.headers.get("Authorization")))
                status, headers, body = server.routes.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                for k, v in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    ls, other = Server(), Server()
    project = json.dumps({"id": 2, "label_config": "<View/>"}).encode()
    other.routes = {"/api/projects/1/": (200, {}, project), "/slides/y.png": (200, {}, png())}
    ls.routes = {
        "/api/projects/1/": (302, {"Location": f"{other.url}/api/projects/1/"}, b""),
        "/api/projects/3/": (302, {"Location": "/api/projects/2/"}, b""),  # same origin
        "/api/projects/2/": (200, {"Content-Type": "application/json"}, project),
        "/data/upload/x.png": (302, {"Location": f"{other.url}/x.png"}, b""),
        "/data/upload/same.png": (302, {"Location": "/data/upload/real.png"}, b""),
        "/data/upload/real.png": (200, {}, png()),
        "/data/upload/allowed.png": (302, {"Location": f"{other.url}/slides/y.png"}, b""),
    }
    yield ls, other
    ls.close()
    other.close()


def test_label_studio_redirects_to_another_origin_are_not_followed(servers) -> None:
    ls, other = servers
    client = LabelStudioClient(ls.url, KEY, timeout=30)
    with pytest.raises(LabelStudioError, match="redirected to another origin") as exc:
        client.call("GET", "/api/projects/1/")
    assert other.url.split("//")[1] in str(exc.value)
    assert client.call("GET", "/api/projects/3/")["label_config"] == "<View/>"  # same origin: followed
    with pytest.raises(LabelStudioError, match="redirected to another origin"):
        client.export(1)  # label_studio_sdk's client (httpx)
    assert other.seen == []


def test_image_redirects_go_to_the_same_origin_or_the_allow_list_only(servers) -> None:
    ls, other = servers
    loader = ImageLoader(label_studio_url=ls.url, api_key=KEY, allow=[f"{other.url}/slides/"])
    with pytest.raises(ImageError, match="redirected to another origin"):
        loader.read_bytes("/data/upload/x.png")
    assert other.seen == []
    data, _ = loader.read_bytes("/data/upload/same.png")
    assert data == png() and ls.seen[-1] == ("/data/upload/real.png", f"Token {KEY}")  # key kept
    data, _ = loader.read_bytes("/data/upload/allowed.png")  # a presigned-URL style redirect, allowed
    assert data == png() and other.seen == [("/slides/y.png", None)]  # without the key
    unrestricted = ImageLoader(label_studio_url=ls.url, api_key=KEY)  # `histoloop convert`'s loader
    with pytest.raises(ImageError, match="redirected to another origin"):
        unrestricted.read_bytes("/data/upload/x.png")
    assert other.seen == [("/slides/y.png", None)]


def test_the_label_studio_urls_password_is_in_no_error_or_log(caplog, servers) -> None:
    ls, _ = servers
    caplog.set_level(logging.DEBUG)
    down = f"http://admin:s3cret-pw@127.0.0.1:{free_port()}"  # nothing listens there
    messages = []
    client = LabelStudioClient(down, KEY, timeout=30)
    for call in (lambda: client.call("GET", "/api/projects/1/"), lambda: client.export(1)):
        with pytest.raises(LabelStudioError) as exc:
            call()
        messages.append(str(exc.value))
    up = LabelStudioClient(ls.url.replace("http://", "http://admin:s3cret-pw@"), KEY, timeout=30)
    with pytest.raises(LabelStudioError) as exc:
        up.label_config(9)  # a 404
    messages.append(str(exc.value))
    messages.append(repr(up))
    for loader in (ImageLoader(label_studio_url=down, api_key=KEY), ImageLoader(label_studio_url=down)):
        with pytest.raises(ImageError) as image_exc:
            loader.read_bytes("/data/upload/1/x.png")
        messages.append(str(image_exc.value))
    assert all("127.0.0.1" in m for m in messages), messages
    for text in [*messages, caplog.text]:
        assert "s3cret-pw" not in text and "admin" not in text, text
