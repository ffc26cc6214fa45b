"""ImageLoader: local-files under a root (never outside it), Label Studio paths over real HTTP with the
token, limits and corrupt files."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from converters.images import ImageError, ImageLoader

TOKEN = "ab" * 20


def _png(w: int = 6, h: int = 4) -> bytes:
    buf = io.BytesIO()
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = 200
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def fake_label_studio():
    """A real HTTP server on 127.0.0.1 that serves /data/upload/1/x.png only with the right token."""
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != f"Token {TOKEN}":
                self.send_response(401)
                self.end_headers()
                return
            if self.path == "/data/upload/1/x.png":
                body = _png()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_response(404)
                self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_upload_paths_are_fetched_with_the_token(fake_label_studio):
    url, seen = fake_label_studio
    loader = ImageLoader(label_studio_url=url, api_key=TOKEN)
    img = loader.load("/data/upload/1/x.png")
    assert img.shape == (4, 6, 3) and img.dtype == np.uint8 and img[0, 0, 0] == 200
    assert seen == [f"Token {TOKEN}"]
    with pytest.raises(ImageError) as exc:
        loader.load("/data/upload/1/missing.png")
    assert "/data/upload/1/missing.png" in str(exc.value) and "HTTP 404" in str(exc.value)
    assert TOKEN not in str(exc.value)
    with pytest.raises(ImageError, match="HTTP 401"):
        ImageLoader(label_studio_url=url, api_key="wrong").load("/data/upload/1/x.png")


def test_the_token_is_never_sent_to_another_host(fake_label_studio):
    url, seen = fake_label_studio
    loader = ImageLoader(label_studio_url="http://localhost:1", api_key=TOKEN)
    with pytest.raises(ImageError, match="HTTP 401"):
        loader.load(url + "/data/upload/1/x.png")  # same server, but not Label Studio's host:port
    assert seen == [None]


def test_local_files_are_read_under_the_root_only(tmp_path):
    (tmp_path / "root" / "a").mkdir(parents=True)
    (tmp_path / "root" / "a" / "x.png").write_bytes(_png(3, 5))
    (tmp_path / "secret.png").write_bytes(_png())
    loader = ImageLoader(local_root=tmp_path / "root")
    assert loader.load("/data/local-files/?d=a/x.png").shape == (5, 3, 3)
    assert loader.load("/data/local-files/?d=a%2Fx.png").shape == (5, 3, 3)
    for bad in ("/data/local-files/?d=../secret.png", str(tmp_path / "secret.png"), "../secret.png"):
        with pytest.raises(ImageError, match=r"outside|escapes"):
            loader.load(bad)
    with pytest.raises(ImageError, match=r"\?d=a/nope.png: image not found"):
        loader.load("/data/local-files/?d=a/nope.png")
    with pytest.raises(ImageError, match="no Label Studio URL"):
        ImageLoader().load("/data/upload/1/x.png")


def test_limits_and_corrupt_files(tmp_path):
    (tmp_path / "big.png").write_bytes(_png(64, 64))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ImageError, match="more than the limit 100"):
        ImageLoader(max_pixels=100).load(tmp_path / "big.png")
    with pytest.raises(ImageError, match="bytes, more than the limit"):
        ImageLoader(max_bytes=10).load(tmp_path / "big.png")
    with pytest.raises(ImageError, match=r"bad.png: not a readable image"):
        ImageLoader().load(tmp_path / "bad.png")
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((2, 3), 7, np.uint8)).save(gray)
    assert ImageLoader().load(gray).shape == (2, 3, 3)


def test_reads_the_real_monuseg_tiff(shared_data):
    loader = ImageLoader(local_root=shared_data)
    img = loader.load("/data/local-files/?d=monuseg-breast/images/TCGA-A7-A13E-01Z-00-DX1.tif")
    assert img.shape == (1000, 1000, 3) and img.dtype == np.uint8 and img.std() > 10


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def _pil_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _variants() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    grey = rgb[..., 0]
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90; PIL's convert ignores it, so must the fast path
    return {
        "png rgb": _encoded(Image.fromarray(rgb), "PNG"),
        "png rgba": _encoded(Image.fromarray(np.dstack([rgb, grey])), "PNG"),
        "png grey": _encoded(Image.fromarray(grey), "PNG"),
        "png grey 4-bit": _encoded(Image.fromarray(grey >> 4 << 4), "PNG", bits=4),
        "png grey+alpha": _encoded(Image.fromarray(np.dstack([grey, grey]), "LA"), "PNG"),
        "png palette": _encoded(Image.fromarray(rgb).convert("P"), "PNG"),
        "png palette 4-bit": _encoded(Image.fromarray(rgb).convert("P", colors=16), "PNG", bits=4),
        "png palette tRNS": _encoded(Image.fromarray(rgb).convert("P"), "PNG", transparency=3),
        "png rgb tRNS": _encoded(Image.fromarray(rgb), "PNG", transparency=(1, 2, 3)),
        "png interlaced": _encoded(Image.fromarray(rgb), "PNG", interlace=1),
        "png 16-bit grey": _encoded(Image.fromarray(grey.astype(np.uint16) * 257), "PNG"),
        "png 1-bit": _encoded(Image.fromarray(grey > 127), "PNG"),
        "jpeg rgb": _encoded(Image.fromarray(rgb), "JPEG", quality=85),
        "jpeg grey": _encoded(Image.fromarray(grey), "JPEG", quality=85),
        "jpeg progressive 4:4:4": _encoded(Image.fromarray(rgb), "JPEG", progressive=True, subsampling=0),
        "jpeg exif-rotated": _encoded(Image.fromarray(rgb), "JPEG", exif=exif),
        "jpeg cmyk": _encoded(Image.fromarray(rgb).convert("CMYK"), "JPEG"),
    }


@pytest.mark.parametrize("variant", list(_variants()))
def test_decoding_is_pixel_identical_to_pil(variant):
    """The fast decoders (imagecodecs) give exactly PIL's ``convert("RGB")`` pixels, in every mode."""
    data = _variants()[variant]
    got = ImageLoader().decode(data, "x")
    assert got.dtype == np.uint8 and got.shape == (37, 53, 3)
    assert np.array_equal(got, _pil_rgb(data))
