"""Retrying an HTTP call that failed for a passing reason: a 5xx answer or a connection reset or refused.

One policy for the Label Studio client (:mod:`converters.lsclient`) and the image fetches
(:mod:`converters.images`): at most :data:`ATTEMPTS` tries, :data:`BACKOFF_S` seconds apart (doubling), and
never past the caller's deadline (a pause that would end after it is not taken: the last failure is
raised). A 4xx answer is never retried (the request itself is wrong, or the key). What is logged names the
URL without its credentials (:func:`safe_url`).

>>> [retryable_status(s) for s in (200, 404, 429, 500, 502, 503)]
[False, False, False, True, True, True]
>>> safe_url("https://user:secret@ls.example.org:8080/data/x.png?X-Amz-Signature=abc&d=tiles/1.png")
'https://ls.example.org:8080/data/x.png?X-Amz-Signature=...&d=tiles/1.png'
>>> [backoff(n) for n in (1, 2, 3)]
[0.5, 1.0, 2.0]
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

log = logging.getLogger(__name__)

ATTEMPTS = 3
"""Tries in all (the first and two retries)."""
BACKOFF_S = 0.5
"""The pause after the first failure; it doubles after each further one."""
_KEPT_QUERY = frozenset({"d", "fileuri", "project", "page", "page_size"})
"""Query parameters that name a file or a page, never a credential: shown as they are."""


def retryable_status(status: int) -> bool:
    """Whether an HTTP status is worth another try: a server error (5xx), never a client error (4xx)."""
    return 500 <= status < 600


def backoff(failures: int) -> float:
    """The pause after ``failures`` failed tries."""
    return BACKOFF_S * 2 ** (failures - 1)


def safe_url(url: str) -> str:
    """``url`` without user and password, and with the values of query parameters that may carry a
    signature or a token (anything but a file name or a page) replaced by ``...``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    query = urlencode(
        [(k, v if k in _KEPT_QUERY else "...") for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="./",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def pause_before_retry(failures: int, deadline: float, url: str, reason: str) -> bool:
    """After ``failures`` failed tries of ``url``: sleep the backoff and return True when another try is
    allowed and fits before ``deadline`` (``time.monotonic()``); False when the caller should give up."""
    if failures >= ATTEMPTS:
        return False
    wait = backoff(failures)
    if time.monotonic() + wait >= deadline:
        return False
    log.warning(
        "%s: %s; trying again in %.1f s (attempt %d of %d)",
        safe_url(url),
        reason,
        wait,
        failures + 1,
        ATTEMPTS,
    )
    time.sleep(wait)
    return True


__all__ = ["ATTEMPTS", "BACKOFF_S", "backoff", "pause_before_retry", "retryable_status", "safe_url"]
