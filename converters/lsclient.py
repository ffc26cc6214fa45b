"""The one Label Studio API client: every module that talks to Label Studio's REST API builds one of these.

:class:`LabelStudioClient` holds the address, the key (a Personal Access Token or a legacy token, never
logged: :mod:`converters.lsauth`) and the timeout, and offers two ways in:

- :attr:`LabelStudioClient.sdk`: label_studio_sdk's client, for everything it does well (projects,
  storages, task import, annotations, actions, ML backends, the JSON export of :meth:`export`). The SDK
  exchanges a PAT itself and retries 5xx, 429 and refused or reset connections (two retries, backoff).
- a few thin calls of its own (:meth:`call`, :meth:`tasks`, :meth:`import_predictions`,
  :meth:`label_config`) where the SDK costs more than the call: it builds a pydantic model of every task
  and every prediction (``benchmarks/lsclient.py``: BENCHMARKS.md). These retry 5xx answers and reset or
  refused connections (:mod:`converters.retry`: at most 3 tries, never past the call's deadline, never
  on a 4xx), exchange a PAT's access token again after a ``401``, and raise :class:`LabelStudioError` (or
  :class:`LabelStudioUnavailable` when Label Studio could not be reached or kept answering 5xx/429),
  naming the method and URL, never the key.

Both follow a redirect only to Label Studio's own origin (scheme, host and port: :mod:`converters.redirects`);
one elsewhere is a :class:`LabelStudioError` naming the target, and nothing is sent there. A user or
password in the Label Studio URL never appears in an error or a log line (:attr:`LabelStudioClient.shown`).

>>> client = LabelStudioClient("http://ls:8080/", "0123456789abcdef0123456789abcdef01234567")
>>> client.url, "0123" in repr(client)
('http://ls:8080', False)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from converters.lsauth import TokenError, auth_headers, forget_access, is_personal_access_token
from converters.retry import pause_before_retry, retryable_status, safe_url

if TYPE_CHECKING:
    from label_studio_sdk.client import LabelStudio

    from kernel.settings import Secret, Settings

log = logging.getLogger(__name__)

TIMEOUT_S = 120.0
PAGE_SIZE = 500
NO_KEY = "no Label Studio API key: set HISTOLOOP_LABEL_STUDIO_API_KEY (a PAT or legacy token)"


class LabelStudioError(RuntimeError):
    """Label Studio refused a call (``status``: its HTTP status) or gave an answer that cannot be used."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LabelStudioUnavailable(LabelStudioError):
    """Label Studio could not be reached, or answered 5xx/429 on every try: worth trying later."""


class LabelStudioClient:
    """A Label Studio at ``url`` with the API ``key`` (see the module docstring)."""

    def __init__(self, url: str, key: str | Secret, *, timeout: float = TIMEOUT_S) -> None:
        from kernel.settings import Secret

        secret = key if isinstance(key, Secret) else Secret(key)
        if not secret.get():
            raise LabelStudioError(NO_KEY)
        self.url, self._key, self.timeout = url.rstrip("/"), secret, timeout
        self.shown = safe_url(self.url)
        """The URL as errors and logs name it: without user and password."""
        self._sdk: LabelStudio | None = None
        self._session: Any = None

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = TIMEOUT_S) -> LabelStudioClient:
        return cls(settings.label_studio_url, settings.label_studio_api_key, timeout=timeout)

    def __repr__(self) -> str:
        return f"LabelStudioClient({self.shown!r})"

    def _scrub(self, text: str) -> str:
        """``text`` without the Label Studio URL's credentials (an exception's own message may hold them)."""
        from urllib.parse import quote, urlsplit

        text = text.replace(self.url, self.shown)
        password = urlsplit(self.url).password
        for form in {password, quote(password or "", safe="")} - {None, ""}:
            text = text.replace(str(form), "***")
        return text

    @property
    def sdk(self) -> LabelStudio:
        """label_studio_sdk's client for the same Label Studio, key and timeout (made on first use)."""
        if self._sdk is None:
            import httpx
            from label_studio_sdk.client import LabelStudio

            from converters.redirects import check_httpx_redirect

            client = httpx.Client(
                timeout=self.timeout, follow_redirects=True, event_hooks={"response": [check_httpx_redirect]}
            )
            self._sdk = LabelStudio(
                base_url=self.url, api_key=self._key.get(), timeout=self.timeout, httpx_client=client
            )
        return self._sdk

    # -- the thin calls -------------------------------------------------------------------------------
    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """``method path`` (``params=``, ``json=``), its JSON answer (None when empty); see the module
        docstring for the retries and the errors."""
        import requests

        from converters.redirects import RedirectRefused, same_origin_session

        if self._session is None:
            self._session = same_origin_session()
        url = self.url + path
        deadline = time.monotonic() + self.timeout
        failures, refreshed = 0, False
        while True:
            try:
                headers = auth_headers(self._key.get(), self.url)
            except TokenError as exc:
                raise LabelStudioError(str(exc)) from None
            left = max(1.0, deadline - time.monotonic())
            try:
                r = self._session.request(method, url, headers=headers, timeout=left, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                failures += 1
                reason = type(exc).__name__
                if isinstance(exc, requests.Timeout) or not pause_before_retry(
                    failures, deadline, url, reason
                ):
                    raise LabelStudioUnavailable(
                        f"{method} {safe_url(url)}: {reason} (after {failures} attempt(s))"
                    ) from None
                continue
            except RedirectRefused as exc:
                raise LabelStudioError(f"{method} {safe_url(url)}: {exc}") from None
            except requests.RequestException as exc:
                raise LabelStudioError(f"{method} {safe_url(url)}: {type(exc).__name__}") from None
            if r.status_code == 401 and not refreshed and is_personal_access_token(self._key.get()):
                forget_access(self._key.get(), self.url)
                refreshed = True
                continue
            if retryable_status(r.status_code):
                failures += 1
                if pause_before_retry(failures, deadline, url, f"HTTP {r.status_code}"):
                    continue
                raise LabelStudioUnavailable(
                    f"{method} {safe_url(url)}: HTTP {r.status_code} (after {failures} attempt(s))",
                    r.status_code,
                )
            if r.status_code >= 400:
                error = LabelStudioUnavailable if r.status_code == 429 else LabelStudioError
                raise error(f"{method} {safe_url(url)}: HTTP {r.status_code}: {r.text[:300]}", r.status_code)
            try:
                return r.json() if r.content else None
            except ValueError:
                raise LabelStudioError(f"{method} {safe_url(url)}: the answer is not JSON") from None

    def label_config(self, project: int) -> str:
        """The project's label config (XML)."""
        body = self.call("GET", f"/api/projects/{project}/")
        if not isinstance(body, dict) or "label_config" not in body:
            raise LabelStudioError(f"{self.shown}/api/projects/{project}/: the answer has no label_config")
        return str(body["label_config"] or "")

    def tasks(
        self, project: int, include: str = "id,data,predictions_model_versions,total_predictions"
    ) -> Iterator[dict[str, Any]]:
        """Every task of ``project`` as plain dicts with only the ``include`` fields, page by page."""
        page = 1
        while True:
            params = {"project": project, "page": page, "page_size": PAGE_SIZE, "fields": "all"}
            if include:
                params["include"] = include
            try:
                body = self.call("GET", "/api/tasks/", params=params)
            except LabelStudioError as exc:
                if exc.status == 404 and page > 1:  # past the last page
                    return
                raise
            tasks = body.get("tasks", []) if isinstance(body, dict) else body
            yield from tasks
            if len(tasks) < PAGE_SIZE:
                return
            page += 1

    def import_predictions(self, project: int, predictions: list[dict[str, Any]]) -> int:
        """Upload ``predictions`` (``task``, ``result``, ``score``, ``model_version``) in one request; how
        many Label Studio created."""
        body = self.call("POST", f"/api/projects/{project}/import/predictions", json=predictions)
        return int((body or {}).get("created", len(predictions)))

    # -- through the SDK ------------------------------------------------------------------------------
    def export(self, project: int) -> tuple[list[dict[str, Any]], str]:
        """The project's tasks (Label Studio's JSON export, with their annotations) and its label config.
        :class:`LabelStudioUnavailable` when Label Studio cannot be reached or answers 5xx/429."""
        import httpx
        from label_studio_sdk.core.api_error import ApiError

        from converters.redirects import RedirectRefused

        try:
            label_config = self.sdk.projects.get(id=project).label_config
            tasks = self.sdk.projects.exports.as_json(project)
        except RedirectRefused as exc:
            raise LabelStudioError(f"Label Studio at {self.shown}: {exc}") from None
        except (httpx.TransportError, OSError) as exc:
            raise LabelStudioUnavailable(
                self._scrub(f"Label Studio at {self.shown}: {type(exc).__name__}: {exc}")
            ) from None
        except ApiError as exc:
            if exc.status_code is None or exc.status_code >= 500 or exc.status_code == 429:
                raise LabelStudioUnavailable(
                    f"Label Studio at {self.shown} answered {exc.status_code}", exc.status_code
                ) from None
            raise LabelStudioError(
                f"Label Studio refused the export of project {project}: HTTP {exc.status_code}",
                exc.status_code,
            ) from None
        if not isinstance(tasks, list):
            raise LabelStudioError(f"project {project}: the export is not a list of tasks")
        return tasks, label_config or ""


__all__ = ["LabelStudioClient", "LabelStudioError", "LabelStudioUnavailable"]
