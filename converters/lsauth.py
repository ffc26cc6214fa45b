"""Label Studio API credentials: a legacy token or a Personal Access Token, as the right header.

Label Studio (1.20+) has two kinds of API key. A **legacy token** (40 hex characters, off by default in new
installs; ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true`` turns it on) is sent as ``Authorization: Token
<key>``. A **Personal Access Token** (PAT) is a JWT *refresh* token: it is exchanged at
``POST <label studio>/api/token/refresh/`` ``{"refresh": <PAT>}`` for a short-lived *access* token (about
5 minutes), sent as ``Authorization: Bearer <access>``. :func:`auth_headers` gives the header for either:
access tokens are cached per (Label Studio, key) in this process and exchanged again 30 s before they
expire, or at once after a ``401`` (:func:`forget_access`). label_studio_sdk's client does the same for
exports and project calls; this module is for the plain ``requests`` calls (image fetches).

The key and the access token are never logged; errors name the Label Studio URL and the HTTP status only.

>>> auth_headers("0123456789abcdef0123456789abcdef01234567", "http://ls:8080")
{'Authorization': 'Token 0123456789abcdef0123456789abcdef01234567'}
>>> jwt_claims("not-a-jwt") is None
True
"""

from __future__ import annotations

import threading
import time
from typing import Any

REFRESH_PATH = "/api/token/refresh/"
EARLY_S = 30.0
"""An access token is exchanged again this long before it expires."""


class TokenError(RuntimeError):
    """A Personal Access Token could not be exchanged (the message names the URL and status, not the key)."""


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT (PyJWT), read without verifying its signature or expiry (Label Studio verifies
    them), or None for anything that is no JWT (a legacy token, a malformed header or payload)."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    return claims if isinstance(claims, dict) else None


def is_personal_access_token(key: str) -> bool:
    """Whether ``key`` is a PAT (a JWT refresh token) rather than a legacy token."""
    claims = jwt_claims(key)
    return claims is not None and claims.get("token_type") == "refresh"


class _Access:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.token: str | None = None
        self.expires = 0.0


_cache: dict[tuple[str, str], _Access] = {}
_cache_lock = threading.Lock()


def _entry(base_url: str, key: str) -> _Access:
    with _cache_lock:
        return _cache.setdefault((base_url.rstrip("/"), key), _Access())


def access_token(key: str, base_url: str, timeout: float = 10.0) -> str:
    """A valid access token for the PAT ``key`` at ``base_url`` (exchanged when none is cached or it expires)."""
    entry = _entry(base_url, key)
    with entry.lock:
        if entry.token is not None and time.time() < entry.expires - EARLY_S:
            return entry.token
        import requests

        url = base_url.rstrip("/") + REFRESH_PATH
        try:
            r = requests.post(url, json={"refresh": key}, timeout=timeout)
        except requests.RequestException as exc:
            raise TokenError(
                f"{url}: cannot exchange the personal access token ({type(exc).__name__})"
            ) from None
        if r.status_code != 200:
            raise TokenError(
                f"{url}: HTTP {r.status_code} exchanging the personal access token "
                "(revoked or expired? create a new one in Label Studio: Account & Settings)"
            )
        try:
            token = r.json()["access"]
        except (ValueError, KeyError, TypeError):
            raise TokenError(f"{url}: the token refresh answer has no 'access' token") from None
        claims = jwt_claims(token) or {}
        entry.token = str(token)
        entry.expires = float(claims.get("exp") or time.time() + 60.0)
        return entry.token


def forget_access(key: str, base_url: str) -> None:
    """Drop the cached access token (after a ``401``): the next call exchanges the PAT again."""
    entry = _entry(base_url, key)
    with entry.lock:
        entry.token, entry.expires = None, 0.0


def auth_headers(key: str, base_url: str, timeout: float = 10.0) -> dict[str, str]:
    """``Authorization`` for ``key`` at ``base_url``: ``Token <key>`` (legacy) or ``Bearer <access>`` (PAT)."""
    if is_personal_access_token(key):
        return {"Authorization": f"Bearer {access_token(key, base_url, timeout)}"}
    return {"Authorization": f"Token {key}"}
