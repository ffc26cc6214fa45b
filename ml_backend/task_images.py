"""Task images for the backend: one :class:`converters.images.ImageLoader` per Label Studio address.

Which Label Studio to fetch ``/data/upload/...`` from: the ``hostname`` that ``/setup`` sent, unless it
is a loopback address and the configured ``label_studio_url`` is another one. (Label Studio's default
hostname is ``http://localhost:<port>``, which is right only when the backend runs on its host; in
docker-compose the configured ``http://label-studio:8080`` is.) The token is the project's from
``/setup``, else the configured API key. ``/data/local-files/?d=...`` is read from the configured
local-files root directly (never outside it) by the loader.

>>> choose_base_url("http://localhost:8080", "http://label-studio:8080")
'http://label-studio:8080'
>>> choose_base_url("https://ls.lab.example", "http://localhost:8080")
'https://ls.lab.example'
"""

from __future__ import annotations

import ipaddress
import threading
import time
from urllib.parse import urlsplit

import numpy as np

from converters.images import ImageLoader
from kernel.settings import Settings
from ml_backend.projects import ProjectState

FETCH_TIMEOUT_S = 30.0


def _is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def choose_base_url(setup_hostname: str | None, configured: str) -> str:
    """The Label Studio address to fetch images from (see the module docstring)."""
    if not setup_hostname:
        return configured
    if _is_loopback(setup_hostname) and configured and configured.rstrip("/") != setup_hostname.rstrip("/"):
        return configured
    return setup_hostname


class TaskImages:
    """Loads task images with the right Label Studio address and token for each project."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._loaders: dict[str, ImageLoader] = {}

    def loader(self, base_url: str) -> ImageLoader:
        with self._lock:
            loader = self._loaders.get(base_url)
            if loader is None:
                loader = ImageLoader.from_settings(
                    self.settings, label_studio_url=base_url, timeout=FETCH_TIMEOUT_S
                )
                self._loaders[base_url] = loader
            return loader

    def load(self, url: str, state: ProjectState, timings: dict[str, float] | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB; raises ``converters.images.ImageError`` naming the URL and the reason.

        Adds to ``timings`` the seconds spent reading the bytes (``fetch``) and decoding them (``decode``).
        """
        base = choose_base_url(state.hostname, self.settings.label_studio_url)
        token = state.token.get() or None
        loader = self.loader(base)
        t0 = time.perf_counter()
        data, name = loader.read_bytes(url, api_key=token)
        t1 = time.perf_counter()
        try:
            return loader.decode(data, name, url)
        finally:
            if timings is not None:
                timings["fetch"] = timings.get("fetch", 0.0) + t1 - t0
                timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - t1
