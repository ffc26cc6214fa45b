"""Redirects from Label Studio are followed only to the same origin (scheme, host and port).

A Label Studio answer that redirects elsewhere (another host, another port, http from https) is not
followed: :class:`RedirectRefused` names the target (without credentials or signatures), and nothing is
sent there. The image loader also follows a redirect to a URL under a prefix ``HISTOLOOP_IMAGE_ALLOW``
names (a Label Studio that redirects to its cloud storage), through ``also``.

:func:`same_origin_session` is the ``requests`` session of :mod:`converters.lsclient` and
:mod:`converters.images`; :func:`check_httpx_redirect` the response hook of the label_studio_sdk client.

>>> same_origin("http://ls:8080/api/x", "/api/y"), same_origin("http://ls:8080/a", "http://ls:8081/a")
(True, False)
>>> same_origin("https://ls/a", "http://ls/a"), same_origin("http://LS:80/a", "http://ls/b")
(False, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

import requests

from converters.images import url_origin
from converters.retry import safe_url


def same_origin(url: str, location: str) -> bool:
    """Whether ``location`` (absolute, or relative to ``url``) has ``url``'s scheme, host and port."""
    origin = url_origin(url)
    return origin is not None and origin == url_origin(urljoin(url, location))


class RedirectRefused(requests.RequestException):
    """An answer redirected to another origin; not followed (the message names the target)."""

    def __init__(self, url: str, target: str) -> None:
        super().__init__(f"redirected to another origin ({safe_url(target)}), not followed")
        self.url, self.target = url, target


class _SameOriginSession(requests.Session):
    def __init__(self, also: Callable[[str], bool] | None = None) -> None:
        super().__init__()
        self.also = also

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is None:
            return None
        absolute = urljoin(resp.url, target)
        if not same_origin(resp.url, absolute) and not (self.also is not None and self.also(absolute)):
            resp.close()
            raise RedirectRefused(resp.url, absolute)
        return target


def same_origin_session(also: Callable[[str], bool] | None = None) -> requests.Session:
    """A ``requests`` session that follows a redirect only to the origin it came from (or where ``also``
    says yes); any other is :class:`RedirectRefused`."""
    return _SameOriginSession(also)


def check_httpx_redirect(response: Any) -> None:
    """httpx response hook: raise :class:`RedirectRefused` for a redirect to another origin (httpx calls
    it for every answer, before following a redirect)."""
    location = response.headers.get("location") if response.is_redirect else None
    if location is not None:
        url = str(response.request.url)
        if not same_origin(url, location):
            raise RedirectRefused(url, urljoin(url, location))


__all__ = ["RedirectRefused", "check_httpx_redirect", "same_origin", "same_origin_session"]
