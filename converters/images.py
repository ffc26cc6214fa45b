"""Resolve and read the images that Label Studio tasks point to.

A task's image is one of: ``/data/local-files/?d=<path>`` (Label Studio's local-files storage: read from
``local_root`` directly, never outside it, else fetched from Label Studio), ``/data/upload/...`` and
other Label Studio paths (fetched from Label Studio with the key: ``Authorization: Token <key>`` for a
legacy token, ``Bearer <access token>`` for a Personal Access Token, see :mod:`converters.lsauth`), an
http(s) URL, or a local path (inside ``local_root`` when one is set). TIFF, PNG and JPEG are read; size limits are checked before decoding.
Every failure is an :class:`ImageError` naming the URL and the reason (never a key).

**Where a key goes.** The configured ``api_key`` is sent only to the configured ``label_studio_url``
(same scheme, host and port); a per-call ``token`` (what ``/setup`` sent) only to the address it came
with (``base_url``). Nothing is sent anywhere else, redirects included; a Personal Access Token is
exchanged only at the address it belongs to.

**What is read** (``allow``). ``allow=None`` (the library and ``histoloop convert``: files the user
named on their own machine) reads any local path and any http(s) URL. ``allow=[...]`` (the backend and
the workers, :meth:`ImageLoader.from_settings`: task URLs come from the network) reads only Label
Studio's own URLs, the local-files root, and what the list names: URL prefixes (``https://slides.lab/``)
and directories (``/srv/slides``). Anything else is refused before any file is touched or any request
is made, with the same message whether it exists or not.

**Deadline.** A fetch gets ``timeout`` seconds in all (connecting, waiting and every byte), not per
byte: a server that drips one byte a second is cut off at the deadline. A 5xx answer or a refused or
reset connection is tried again (:mod:`converters.retry`: at most 3 tries, backoff 0.5 s then 1 s) within
that same deadline; a 4xx is not.

>>> loader = ImageLoader(local_root="/srv/images")
>>> loader.local_path("/data/local-files/?d=slides/a.png").as_posix()
'/srv/images/slides/a.png'
>>> loader.local_path("/data/local-files/?d=../etc/passwd")
Traceback (most recent call last):
...
converters.images.ImageError: /data/local-files/?d=../etc/passwd: path escapes the local files root
>>> ImageLoader(label_studio_url="http://ls:8080", allow=[]).load("/etc/shadow")
Traceback (most recent call last):
...
converters.images.ImageError: /etc/shadow: not an allowed image source (Label Studio's URLs, the local files root and HISTOLOOP_IMAGE_ALLOW are)
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
from PIL import Image

from converters.retry import pause_before_retry, retryable_status, safe_url
from kernel.settings import Settings

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_PIXELS = 16384 * 16384
TIFF_SUFFIXES = {".tif", ".tiff", ".svs"}
LABEL_STUDIO_PATHS = ("/data/", "/storage-data/", "/tasks/")
"""Paths Label Studio serves (fetched from its address)."""
_MAGIC = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"BM": "BMP", b"GIF8": "GIF", b"RIFF": "WEBP"}
_READ_CHUNK = 1 << 16


class ImageError(ValueError):
    """An image could not be resolved or read; the message names the URL and the reason."""


def url_origin(url: str | None) -> str | None:
    """``scheme://host:port`` of an http(s) URL (lower case, default port filled in); None otherwise.

    >>> url_origin("HTTP://LS.lab:80/x"), url_origin("https://ls.lab/data"), url_origin("/data/x")
    ('http://ls.lab:80', 'https://ls.lab:443', None)
    """
    if not url:
        return None
    try:
        parts = urlsplit(str(url).strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return f"{scheme}://{parts.hostname.lower().rstrip('.')}:{port or (443 if scheme == 'https' else 80)}"


class ImageLoader:
    def __init__(
        self,
        local_root: str | Path | None = None,
        label_studio_url: str | None = None,
        api_key: str | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        timeout: float = 30.0,
        allow: Iterable[str] | None = None,
    ) -> None:
        self.local_root = Path(local_root).resolve() if local_root else None
        self.label_studio_url = label_studio_url.rstrip("/") if label_studio_url else None
        self._api_key = api_key
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.timeout = timeout
        self.restricted = allow is not None
        entries = [str(a).strip() for a in allow or () if str(a).strip()]
        self._allow_urls = [(url_origin(a), urlsplit(a).path or "/") for a in entries if url_origin(a)]
        self._allow_dirs = [Path(a).expanduser().resolve() for a in entries if not url_origin(a)]
        # Pillow's own decompression-bomb limit (about 179 MP) must not undercut ours
        if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
            Image.MAX_IMAGE_PIXELS = max_pixels

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ImageLoader:
        """The loader of the configured Label Studio, local-files root, key, limits and allow-list
        (restricted: see the module docstring)."""
        options: dict[str, Any] = {
            "local_root": settings.local_files_root,
            "label_studio_url": settings.label_studio_url,
            "api_key": settings.label_studio_api_key.get() or None,
            "max_bytes": settings.max_image_bytes,
            "max_pixels": settings.max_image_pixels,
            "timeout": settings.image_timeout,
            "allow": settings.image_allow,
        }
        return cls(**{**options, **overrides})

    def __repr__(self) -> str:
        return f"ImageLoader(local_root={self.local_root!r}, label_studio_url={self.label_studio_url!r})"

    # -- the policy -----------------------------------------------------------------------------------
    def allowed_url(self, url: str, base_url: str | None = None) -> bool:
        """Whether an http(s) URL may be fetched: always unrestricted; restricted, when it is on Label
        Studio's address (the configured one or ``base_url``) or under an allow-listed URL prefix."""
        origin = url_origin(url)
        if origin is None:
            return False
        if self.restricted and "@" in urlsplit(url).netloc:
            return False  # credentials of the task's own: never sent, never mixed with a key
        if not self.restricted or origin in (url_origin(self.label_studio_url), url_origin(base_url)):
            return True
        path = urlsplit(url).path or "/"
        return any(origin == o and path.startswith(p) for o, p in self._allow_urls)

    def _allow_listed(self, url: str) -> bool:
        """Whether ``url`` is under a URL prefix of ``allow`` (where a redirect to another origin may go)."""
        origin, path = url_origin(url), urlsplit(url).path or "/"
        return origin is not None and any(origin == o and path.startswith(p) for o, p in self._allow_urls)

    def _refused(self, url: str) -> ImageError:
        return ImageError(
            f"{safe_url(url)}: not an allowed image source (Label Studio's URLs, the local files root and"
            " HISTOLOOP_IMAGE_ALLOW are)"
        )

    # -- resolving ------------------------------------------------------------------------------------
    def _inside_root(self, url: str, relative: str) -> Path:
        if self.local_root is None:  # the callers look a path up only under a local files root
            raise ImageError(f"{url}: no local files root is configured")
        path = (self.local_root / relative.lstrip("/")).resolve()
        if not path.is_relative_to(self.local_root):
            raise ImageError(f"{url}: path escapes the local files root")
        return path

    def local_path(self, url_or_path: str | Path) -> Path | None:
        """The file on this machine for a URL/path, or None when it must be fetched over HTTP."""
        url = str(url_or_path)
        if "\x00" in url:
            raise ImageError(f"{url!r}: not an image URL or path")
        parts = urlsplit(url)
        if parts.path.startswith("/data/local-files"):
            rel = parse_qs(parts.query).get("d", [""])[0]
            if not rel:
                raise ImageError(f"{url}: local-files URL without ?d=")
            return self._inside_root(url, unquote(rel)) if self.local_root else None
        if parts.scheme in ("http", "https") or url.startswith(LABEL_STUDIO_PATHS):
            return None
        if parts.scheme == "file":
            url = unquote(parts.path)
        elif parts.scheme and len(parts.scheme) > 1:
            if self.restricted:
                raise self._refused(url)
            raise ImageError(f"{url}: unsupported URL scheme {parts.scheme!r} (http, https or a path)")
        path = Path(url)
        if self.local_root is not None:
            if path.is_absolute():
                resolved = path.resolve()
                if resolved.is_relative_to(self.local_root):
                    return resolved
                if not self._in_allowed_dir(resolved):
                    raise ImageError(f"{url}: path is outside the local files root")
                return resolved
            return self._inside_root(url, url)
        if self.restricted:
            resolved = path.resolve() if path.is_absolute() else None
            if resolved is None or not self._in_allowed_dir(resolved):
                raise self._refused(url)
            return resolved
        return path

    def _in_allowed_dir(self, path: Path) -> bool:
        return any(path.is_relative_to(d) for d in self._allow_dirs)

    def _key_for(
        self, url: str, token: str | None = None, token_url: str | None = None
    ) -> tuple[str, str] | None:
        """``(key, the address it belongs to)`` to send with ``url``: a key only to its own address (a
        ``token`` to ``token_url``, default the configured Label Studio; the configured key to the
        configured Label Studio); None when ``url`` is on no key's address."""
        origin = url_origin(url)
        if origin is None:
            return None
        owner = token_url or self.label_studio_url
        if token and owner and origin == url_origin(owner):
            return token, owner
        if self._api_key and self.label_studio_url and origin == url_origin(self.label_studio_url):
            return self._api_key, self.label_studio_url
        return None

    def _headers_for(
        self, url: str, token: str | None = None, token_url: str | None = None
    ) -> dict[str, str]:
        """The ``Authorization`` header for ``url``: a key only to the address it belongs to."""
        from converters.lsauth import auth_headers

        key = self._key_for(url, token, token_url)
        return auth_headers(key[0], key[1], self.timeout) if key else {}

    def read_bytes(
        self, url_or_path: str | Path, api_key: str | None = None, *, base_url: str | None = None
    ) -> tuple[bytes, str]:
        """The raw file bytes and a name (for its suffix).

        ``base_url``: the Label Studio address to fetch Label Studio paths from for this call (default
        the configured one); ``api_key``: a token for that address only.
        """
        url = str(url_or_path)
        path = self.local_path(url)
        if path is not None:
            try:
                if not path.is_file():
                    raise ImageError(f"{url}: image not found ({path})")
                size = path.stat().st_size
                if size > self.max_bytes:
                    raise ImageError(f"{url}: file has {size} bytes, more than the limit {self.max_bytes}")
                return read_regular(path), path.name
            except OSError as exc:
                raise ImageError(
                    f"{url}: cannot read {path} ({exc.strerror or type(exc).__name__})"
                ) from None
        return self._fetch(url, api_key, base_url)

    def _absolute(self, url: str, base_url: str | None) -> tuple[str, str | None]:
        """The absolute, allowed URL of ``url`` (a Label Studio path joins the Label Studio URL) and that base."""
        base = (base_url or self.label_studio_url or "").rstrip("/") or None
        if not urlsplit(url).scheme:
            if not base:
                raise ImageError(f"{url}: a Label Studio path, but no Label Studio URL is configured")
            if url_origin(base) is None:
                raise ImageError(f"{url}: the Label Studio URL {safe_url(base)!r} is not an http(s) URL")
            if not self.allowed_url(base, None):
                raise self._refused(url)
            url = base + url
        if not self.allowed_url(url, base):
            raise self._refused(url)
        return url, base

    def _fetch(self, url: str, token: str | None, base_url: str | None) -> tuple[bytes, str]:
        url, base = self._absolute(url, base_url)
        key = self._key_for(url, token, base if base_url else None)
        # Label Studio's own redirects are followed to its own origin, or under an allow-listed prefix (its
        # cloud storage's presigned URLs); requests drops the key on a host change
        follow = url_origin(url) in (url_origin(self.label_studio_url), url_origin(base))
        deadline = time.monotonic() + self.timeout
        failures = 0
        while True:  # a 5xx or a reset connection is tried again, within the one deadline
            try:
                data = self._fetch_once(url, key, follow, deadline)
                break
            except _Passing as exc:
                failures += 1
                if not pause_before_retry(failures, deadline, url, exc.reason):
                    raise ImageError(f"{safe_url(url)}: {exc.reason} (after {failures} attempt(s))") from None
        name = Path(unquote(urlsplit(url).path)).name
        query_d = parse_qs(urlsplit(url).query).get("d")
        if query_d:
            name = Path(query_d[0]).name
        return data, name

    def _fetch_once(self, url: str, key: tuple[str, str] | None, follow: bool, deadline: float) -> bytes:
        """One GET of ``url``, all of it before ``deadline``; :class:`_Passing` for a failure worth
        another try (a 5xx, a refused or reset connection)."""
        import requests
        import urllib3

        chunks, total = [], 0
        shown = safe_url(url) if "@" in urlsplit(url).netloc else url  # errors never name a password
        watch = _Watch()
        # the clock covers connect, TLS, the status line and headers too: a per-read timeout alone lets a
        # server that sends a header byte now and then hold this thread for ever
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), watch.expire)
        timer.daemon = True
        timer.start()
        try:
            with self._get(url, key, follow, watch) as r:
                if retryable_status(r.status_code):
                    raise _Passing(url, f"HTTP {r.status_code}")
                if r.status_code != 200:
                    raise ImageError(f"{shown}: HTTP {r.status_code}")
                sock = _socket_of(r.raw)
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ImageError(f"{shown}: not received within the deadline of {self.timeout:g} s")
                    if sock is not None:
                        sock.settimeout(left)
                    chunk = r.raw.read1(_READ_CHUNK)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > self.max_bytes:
                        raise ImageError(f"{shown}: more than the limit of {self.max_bytes} bytes")
                    chunks.append(chunk)
        except requests.RequestException as exc:
            if watch.expired:
                raise ImageError(f"{shown}: not received within the deadline of {self.timeout:g} s") from None
            if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.Timeout):
                raise _Passing(url, "connection failed") from None
            raise ImageError(f"{shown}: {_fetch_reason(exc, self.timeout)}") from None
        except (OSError, ValueError, urllib3.exceptions.HTTPError) as exc:
            if isinstance(exc, ImageError):
                raise
            if (
                watch.expired
                or time.monotonic() >= deadline
                or isinstance(exc, socket.timeout | TimeoutError)
            ):
                raise ImageError(f"{shown}: not received within the deadline of {self.timeout:g} s") from None
            raise _Passing(url, f"connection failed ({type(exc).__name__})") from None
        finally:
            timer.cancel()
        if watch.expired:  # cut mid-body: what arrived is not the image
            raise ImageError(f"{shown}: not received within the deadline of {self.timeout:g} s")
        return b"".join(chunks)

    def _get(self, url: str, key: tuple[str, str] | None, follow: bool, watch: _Watch) -> Any:
        """GET with the key's header (legacy token or PAT, :mod:`converters.lsauth`, exchanged at the key's
        own address only); a PAT's access token refused with 401 is exchanged once more and retried."""

        from converters.lsauth import TokenError, auth_headers, forget_access, is_personal_access_token

        timeout = (min(10.0, self.timeout), self.timeout)

        def headers() -> dict[str, str]:
            try:
                return auth_headers(key[0], key[1], self.timeout) if key else {}
            except TokenError as exc:
                raise ImageError(f"{safe_url(url)}: {exc}") from None

        def get() -> Any:
            with _watched_session(watch, self._allow_listed) as session:
                return session.get(
                    url, headers=headers(), timeout=timeout, stream=True, allow_redirects=follow
                )

        r = get()
        if r.status_code == 401 and key and is_personal_access_token(key[0]):
            r.close()
            forget_access(key[0], key[1])
            r = get()
        return r

    # -- decoding -------------------------------------------------------------------------------------
    def _too_big(self, where: str, w: int, h: int) -> ImageError:
        return ImageError(f"{where}: {w}x{h} pixels, more than the limit {self.max_pixels}")

    def decode(self, data: bytes, name: str, url: str = "") -> np.ndarray:
        """Decode bytes into (H, W, 3) uint8 RGB, checking the pixel limit first.

        PIL reads the header (size, mode: microseconds); 8-bit RGB/RGBA/grey/palette PNGs and RGB/grey
        JPEGs are then decoded by imagecodecs (libpng / libjpeg-turbo, 1.2-1.6x faster than PIL, pixel-
        identical: ``tests/converters/test_images.py``), everything else by PIL as before.
        """
        where = url or name
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+") or (
            Path(name).suffix.lower() in TIFF_SUFFIXES and not _format_of(data)
        ):
            return self._decode_tiff(data, where)
        fmt = _format_of(data)
        if fmt is None:
            kind = "an empty file" if not data else "not a PNG, JPEG or TIFF file"
            raise ImageError(f"{where}: not a readable image ({kind})")
        try:
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                w, h = im.size
                if w * h > self.max_pixels:
                    raise self._too_big(where, w, h)
                fast = _FAST_DECODERS.get((im.format or "", im.mode))
                if fast is None:
                    return _to_rgb(np.asarray(im.convert("RGB")), where)
            arr = fast(data)
            if arr.shape[:2] != (h, w):  # never expected; PIL's reading wins
                raise ValueError(f"decoded {arr.shape[:2]}, header says {(h, w)}")
            return _to_rgb(arr, where)
        except ImageError:
            raise
        except Image.DecompressionBombError:
            raise ImageError(f"{where}: more pixels than the limit {self.max_pixels}") from None
        except Exception as exc:  # PIL, imagecodecs (and ultralytics' PIL patch: ImportError)
            detail = "corrupt or truncated" if isinstance(exc, ImportError) else str(exc)[:200]
            raise ImageError(f"{where}: not a readable image ({fmt}: {detail})") from None

    @staticmethod
    def pixels_of(data: bytes, name: str) -> int | None:
        """Width x height from the image's header, without decoding it; None when the header is not
        readable (:meth:`decode` then says why)."""
        try:
            if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+") or (
                Path(name).suffix.lower() in TIFF_SUFFIXES and not _format_of(data)
            ):
                import tifffile

                with tifffile.TiffFile(io.BytesIO(data)) as tif:
                    shape = tif.pages[0].shape
                    return int(shape[0]) * int(shape[1])
            fmt = _format_of(data)
            if fmt is None:
                return None
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                return int(im.size[0]) * int(im.size[1])
        except Exception:  # any unreadable header: decode() gives the reason
            return None

    def _decode_tiff(self, data: bytes, where: str) -> np.ndarray:
        import tifffile

        try:
            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                page = tif.pages[0]
                h, w = page.shape[0], page.shape[1]
                if h * w > self.max_pixels:
                    raise self._too_big(where, w, h)
                arr = page.asarray()
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError(
                f"{where}: not a readable TIFF ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        return _to_rgb(arr, where)

    def load(
        self, url_or_path: str | Path, api_key: str | None = None, *, base_url: str | None = None
    ) -> np.ndarray:
        """Read an image as (H, W, 3) uint8 RGB; raises :class:`ImageError`."""
        data, name = self.read_bytes(url_or_path, api_key, base_url=base_url)
        return self.decode(data, name, str(url_or_path))


def _png(data: bytes) -> np.ndarray:
    import imagecodecs

    return imagecodecs.png_decode(data)


def _jpeg(data: bytes) -> np.ndarray:
    import imagecodecs

    return imagecodecs.jpeg8_decode(data)


_FAST_DECODERS = {
    **{("PNG", mode): _png for mode in ("RGB", "RGBA", "L", "P")},
    **{("JPEG", mode): _jpeg for mode in ("RGB", "L")},
}
"""(PIL format, PIL mode) -> the decoder whose pixels equal ``PIL .convert("RGB")``'s (alpha dropped)."""


def _format_of(data: bytes) -> str | None:
    for magic, fmt in _MAGIC.items():
        if data.startswith(magic) and (fmt != "WEBP" or data[8:12] == b"WEBP"):
            return fmt
    return None


class _Watch:
    """The sockets of one fetch; :meth:`expire` (the deadline's timer) shuts them down, which ends any
    read blocked on them at once."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.expired = False
        self._lock = threading.Lock()

    def add(self, sock: Any) -> None:
        with self._lock:
            if isinstance(sock, socket.socket):
                self.sockets.append(sock)
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self.sockets:
                _shut(sock)


def _shut(sock: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


class _Passing(ImageError):
    """A fetch failed for a reason that may pass (a 5xx answer, a refused or reset connection)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.reason = reason


_current_watch = threading.local()


@functools.cache
def _watched_adapter_class() -> type:
    """A requests adapter whose connections report their sockets to the fetch's :class:`_Watch`."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def report(sock: Any) -> None:
        watch = getattr(_current_watch, "watch", None)
        if watch is not None:
            watch.add(sock)

    class Watched:
        def _new_conn(self) -> Any:
            sock = super()._new_conn()  # type: ignore[misc]
            report(sock)
            return sock

        def connect(self) -> None:
            super().connect()  # type: ignore[misc]
            report(self.sock)  # type: ignore[attr-defined]  # the TLS socket, once wrapped

    class Conn(Watched, HTTPConnection):
        pass

    class ConnS(Watched, HTTPSConnection):
        pass

    class Pool(HTTPConnectionPool):
        ConnectionCls = Conn

    class PoolS(HTTPSConnectionPool):
        ConnectionCls = ConnS

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": PoolS}

    return Adapter


@contextmanager
def _watched_session(watch: _Watch, also: Callable[[str], bool]) -> Iterator[Any]:
    """A requests session (as ``requests.get`` makes one per call) whose new sockets join ``watch``; it
    follows redirects to the same origin, or where ``also`` says yes (:mod:`converters.redirects`)."""
    from converters.redirects import same_origin_session

    adapter = _watched_adapter_class()()
    with same_origin_session(also) as session:
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _current_watch.watch = watch
        try:
            yield session
        finally:
            _current_watch.watch = None


def open_regular(path: str | Path) -> BinaryIO:
    """A regular file, open for reading; ``OSError`` ("not a regular file (a FIFO)") for anything else.
    Opened without blocking first: opening a FIFO for reading waits for a writer, for ever if none comes."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = "a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else "a device"
            raise OSError(errno.EINVAL, f"not a regular file ({what})", str(path))
        os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
        fh.raw.name = str(path)  # type: ignore[attr-defined]  # as open() names it (tifffile reads it)
        return fh
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path) -> bytes:
    """A regular file's bytes (:func:`open_regular`)."""
    with open_regular(path) as fh:
        return fh.read()


def _socket_of(raw: Any) -> socket.socket | None:
    """The socket under a urllib3 response (to give each read only what is left of the deadline)."""
    sock = getattr(getattr(raw, "_connection", None), "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _fetch_reason(exc: Exception, timeout: float) -> str:
    import requests

    if isinstance(exc, requests.Timeout):
        return f"not received within the deadline of {timeout:g} s"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    if isinstance(exc, requests.TooManyRedirects):
        return "too many redirects"
    from converters.redirects import RedirectRefused

    if isinstance(exc, RedirectRefused):
        return str(exc)
    return type(exc).__name__


def _to_rgb(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.dtype != np.uint8:
        if arr.dtype == np.uint16:
            arr = (arr >> 8).astype(np.uint8)
        elif arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        else:
            raise ImageError(f"{where}: unsupported pixel type {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[:, :, :3]
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    else:
        raise ImageError(f"{where}: unsupported image shape {arr.shape}")
    return np.ascontiguousarray(arr)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file without decoding the pixels."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            shape = tif.pages[0].shape
            return int(shape[1]), int(shape[0])
    with Image.open(path) as im:
        return im.size
