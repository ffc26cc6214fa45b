"""Task images for the backend: which Label Studio address, which key, what may be read at all.

**The address** ``/data/upload/...`` and other Label Studio paths are fetched from: the ``hostname`` that
``/setup`` sent when it is the configured ``label_studio_url`` (same scheme, host and port) or is named
in ``image_allow``; otherwise the configured ``label_studio_url`` (Label Studio's default hostname
``http://localhost:<port>`` is right only on its own host; in docker-compose the configured
``http://label-studio:8080`` is). A ``/setup`` cannot point the backend at another host.

**The key** (the rule, for every fetch): the configured API key goes only to the configured
``label_studio_url``; the token a ``/setup`` sent goes only back to the ``hostname`` that same ``/setup``
named, and is dropped when a later ``/setup`` names another hostname (:mod:`ml_backend.projects`).
Nothing else ever gets a key.

**What is read**: Label Studio's own URLs, the local-files root, and what ``image_allow`` names
(:class:`converters.images.ImageLoader` with ``allow``); everything else is refused before any request.

>>> choose_base_url("http://localhost:8080", "http://label-studio:8080")
'http://label-studio:8080'
>>> choose_base_url("https://ls.lab.example", "http://localhost:8080")
'http://localhost:8080'
>>> choose_base_url("https://ls.lab.example", "http://localhost:8080", allow=["https://ls.lab.example"])
'https://ls.lab.example'
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np

from converters.images import ImageLoader, url_origin
from kernel.settings import Settings
from ml_backend.projects import ProjectState


def choose_base_url(setup_hostname: str | None, configured: str, allow: Iterable[str] = ()) -> str:
    """The Label Studio address to fetch images from (see the module docstring)."""
    origin = url_origin(setup_hostname)
    if not setup_hostname or origin is None:
        return configured
    if origin == url_origin(configured) or origin in {url_origin(a) for a in allow}:
        return setup_hostname.rstrip("/")
    return configured


class TaskImages:
    """Loads task images with the right Label Studio address and token for each project."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loader = ImageLoader.from_settings(settings)

    def load(self, url: str, state: ProjectState, timings: dict[str, float] | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB; raises ``converters.images.ImageError`` naming the URL and the reason.

        Adds to ``timings`` the seconds spent reading the bytes (``fetch``) and decoding them (``decode``).
        """
        t0 = time.perf_counter()
        data, name = self.read(url, state)
        t1 = time.perf_counter()
        try:
            return self.loader.decode(data, name, url)
        finally:
            if timings is not None:
                timings["fetch"] = timings.get("fetch", 0.0) + t1 - t0
                timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - t1

    def read(self, url: str, state: ProjectState) -> tuple[bytes, str]:
        """The image's bytes and a name (for its suffix), from the right address with the right token."""
        base = choose_base_url(state.hostname, self.settings.label_studio_url, self.settings.image_allow)
        # the /setup token is bound to the hostname it came with: it is offered for that address only
        token = state.token.get() or None if state.hostname and base == state.hostname.rstrip("/") else None
        return self.loader.read_bytes(url, token, base_url=base)
