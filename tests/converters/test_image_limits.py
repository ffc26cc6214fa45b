"""converters/images.py within its limits: the pixel limit is HISTOLOOP_MAX_IMAGE_PIXELS, not
Pillow's; an unreadable image says so in words (not "No module named 'pi_heif'"); a fetch has a total
deadline."""

from __future__ import annotations

import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from converters.images import ImageError, ImageLoader


def png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def small_pillow_limit():
    """Pillow's decompression-bomb limit at 1,000 pixels (its error above 2,000), restored after."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 1000
    yield
    Image.MAX_IMAGE_PIXELS = saved


def test_the_pixel_limit_is_ours_not_pillows(small_pillow_limit) -> None:
    data = png(60, 60)  # 3,600 pixels: over Pillow's 2 x 1,000, under our 5,000
    assert ImageLoader(max_pixels=5000).decode(data, "x.png").shape == (60, 60, 3)
    with pytest.raises(ImageError, match=r"x.png: 60x60 pixels, more than the limit 3000"):
        ImageLoader(max_pixels=3000).decode(data, "x.png")


def test_the_limit_is_reported_as_ours_when_pillow_refuses_first(small_pillow_limit) -> None:
    Image.MAX_IMAGE_PIXELS = 100  # below ours: Pillow's own error (over 200 pixels) comes first
    with pytest.raises(ImageError, match=r"more pixels than the limit 150|more than the limit 150"):
        ImageLoader(max_pixels=150).decode(png(60, 60), "x.png")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "not a PNG, JPEG or TIFF file"),
        (b"", "an empty file"),
        (b"GIF89a" + b"\x00" * 10, "not a readable image (GIF"),
        (png(8, 8)[:40], "not a readable image (PNG"),
        (b"II*\x00" + b"\x00" * 20, "not a readable TIFF"),
    ],
)
def test_unreadable_images_say_why(data: bytes, reason: str) -> None:
    from training.offline import ultralytics

    ultralytics()  # imported offline; it patches PIL.Image.open to try pi_heif, which is not installed

    with pytest.raises(ImageError) as exc:
        ImageLoader().decode(data, "slide.heic", "/data/upload/1/slide.heic")
    message = str(exc.value)
    assert message.startswith("/data/upload/1/slide.heic: ") and reason in message, message
    assert "pi_heif" not in message and "No module" not in message and "BytesIO" not in message


def test_a_fetch_has_a_total_deadline() -> None:
    class Drip(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        t0 = time.monotonic()
        with pytest.raises(ImageError, match=r"not received within the deadline of 1.5 s"):
            ImageLoader(label_studio_url=url, timeout=1.5).load("/data/upload/1/x.png")
        assert time.monotonic() - t0 < 2.5  # one byte every 0.2 s never resets the clock
    finally:
        server.shutdown()
        server.server_close()


def _trickling_server(stage: bytes) -> tuple[socket.socket, threading.Event]:
    """A raw TCP server that answers each connection with ``stage`` (e.g. the status line and a header
    or two) one byte every 0.2 s and then headers for ever, so no single read waits longer than that."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            payload = stage + b"".join(b"X-Pad-%d: y\r\n" % n for n in range(100_000))
            for byte in payload:
                if stop.wait(0.2):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener, stop


@pytest.mark.parametrize("stage", [b"", b"HTTP/1.1 200 OK\r\n"], ids=["status line", "headers"])
def test_the_deadline_covers_the_status_line_and_headers(stage: bytes) -> None:
    listener, stop = _trickling_server(stage)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        t0 = time.monotonic()
        with pytest.raises(ImageError, match=r"not received within the deadline of 1\.5 s"):
            ImageLoader(label_studio_url=url, timeout=1.5).load("/data/upload/1/x.png")
        assert time.monotonic() - t0 < 4  # before the fix: as long as the server trickles
    finally:
        stop.set()
        listener.close()
