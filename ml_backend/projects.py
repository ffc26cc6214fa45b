"""What ``/setup`` told the backend about each Label Studio project, kept in this process's memory.

Label Studio sends ``/setup`` on connect and before every batch of predictions, with the project key
``"<id>.<created ts>"``, the label config, its hostname and an access token (the legacy API token of
the project's creator). The token is kept only here, as a :class:`~kernel.settings.Secret` (masked in
``repr``), used only to fetch ``/data/upload/...`` images from the ``hostname`` it came with (see
:mod:`ml_backend.task_images`), and never logged or echoed. A ``/setup`` that names another hostname
without a token drops the token it had: a token never follows a hostname change. Only an authenticated
``/setup`` (the backend has basic auth: ``trusted``) may replace a project's token or move it to another
hostname: without basic auth the first token a project set up with stays, with its hostname, for the
life of the process (a ``/setup`` from anyone who reaches the port cannot swap it). With several
gunicorn workers a ``/predict`` may reach a worker that has not seen ``/setup``: it then uses the
label config sent with ``/predict`` and the token from the settings.

``extra_params`` (the JSON object of the ML backend's *Extra params* in Label Studio, sent with every
``/setup``) is read too: ``access_token`` (or ``api_key``: a Personal Access Token or legacy token to use
instead of the legacy token Label Studio sends, which does not work where legacy tokens are off) and the
serving settings ``min_score`` (a number in [0, 1]), ``label_map`` (an object of strings, at most
:data:`MAX_LABEL_MAP` entries) and ``uncertainty`` for this project, over the config file's; a bad value
of one of them is an :class:`ExtraParamsError` (a ``400`` with the reason), other keys are ignored with a
warning. ``extra_params: null`` (what Label Studio sends when none are set) resets the overrides to the
config file's; a ``/setup`` without the key keeps them.

What is kept per project is bounded: a label config over :data:`MAX_KEPT_CONFIG_BYTES` is not kept
(``/predict`` uses the config it is sent, as Label Studio always does), and at most :data:`MAX_PROJECTS`
projects and :data:`MAX_KEPT_BYTES` of label configs in all are remembered (least recently set up
forgotten first).

The project key itself is :func:`kernel.labelstudio.project_key`'s.

>>> state = Projects().setup("4", None, None, "legacy", {"min_score": 0.6, "access_token": "pat", "x": 1})
>>> state.token.get(), state.overrides
('pat', {'min_score': 0.6})
>>> try:
...     read_extra_params({"min_score": 1e9})
... except ExtraParamsError as exc:
...     print(exc)
extra_params 'min_score' must be a number in [0, 1], not 1000000000.0
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kernel.settings import UNCERTAINTY_MEASURES, ProjectSettings, Secret

log = logging.getLogger(__name__)

TOKEN_KEYS = ("access_token", "api_key", "personal_access_token")
SERVING_KEYS: dict[str, type] = {"min_score": float, "label_map": dict, "uncertainty": str}
MAX_LABEL_MAP = 1000
"""Entries of an ``extra_params`` ``label_map`` (each name at most :data:`MAX_NAME_CHARS`)."""
MAX_NAME_CHARS = 256
KEEP: Any = object()
"""``extra`` of :meth:`Projects.setup` when ``/setup`` had no ``extra_params`` key: keep the overrides."""


class ExtraParamsError(ValueError):
    """A serving setting in ``extra_params`` with a value it cannot have (the message says why)."""


@dataclass(frozen=True)
class ProjectState:
    label_config: str | None = None
    hostname: str | None = None
    token: Secret = Secret("")
    overrides: dict[str, Any] = field(default_factory=dict)
    """Serving settings from ``extra_params`` (see the module docstring)."""

    def settings(self, base: ProjectSettings) -> ProjectSettings:
        """``base`` (the config file's) with this project's ``extra_params`` overrides."""
        return dataclasses.replace(base, **self.overrides) if self.overrides else base


def read_extra_params(raw: Any) -> tuple[str | None, dict[str, Any]]:
    """``(token, serving overrides)`` from ``/setup``'s ``extra_params`` (an object, or JSON text of one)."""
    if isinstance(raw, str) and raw.strip():
        try:
            raw = json.loads(raw)
        except ValueError:
            log.warning("/setup: extra_params is not JSON; ignored")
            return None, {}
    if not isinstance(raw, Mapping):
        return None, {}
    token = next((raw[k] for k in TOKEN_KEYS if isinstance(raw.get(k), str) and raw[k]), None)
    overrides: dict[str, Any] = {}
    for key, value in raw.items():
        if key in TOKEN_KEYS:
            continue
        if key not in SERVING_KEYS:
            log.warning(
                "/setup: extra_params key %r is not a serving setting (%s); ignored",
                key,
                sorted(SERVING_KEYS),
            )
            continue
        overrides[key] = _serving_value(key, value)
    return token, overrides


def _serving_value(key: str, value: Any) -> Any:
    if key == "min_score":
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is None or not 0.0 <= float(number) <= 1.0:
            shown = float(number) if number is not None else json.dumps(value)[:40]
            raise ExtraParamsError(f"extra_params 'min_score' must be a number in [0, 1], not {shown}")
        return float(number)
    if key == "uncertainty":
        if value not in UNCERTAINTY_MEASURES:
            want = "|".join(UNCERTAINTY_MEASURES)
            raise ExtraParamsError(f"extra_params 'uncertainty' must be {want}, not {json.dumps(value)[:40]}")
        return value
    if (
        not isinstance(value, Mapping)
        or len(value) > MAX_LABEL_MAP
        or not all(
            isinstance(k, str)
            and isinstance(v, str)
            and len(k) <= MAX_NAME_CHARS
            and len(v) <= MAX_NAME_CHARS
            for k, v in value.items()
        )
    ):
        raise ExtraParamsError(
            f"extra_params 'label_map' must be an object of at most {MAX_LABEL_MAP} names to names "
            f"(strings of at most {MAX_NAME_CHARS} characters)"
        )
    return dict(value)


MAX_KEPT_CONFIG_BYTES = 1024 * 1024
"""A label config longer than this (in UTF-8 bytes) is not kept for its project."""
MAX_KEPT_BYTES = 32 * 1024 * 1024
"""Label configs kept for all projects together, at most."""
MAX_PROJECTS = 256
"""Projects remembered per process (least recently set up forgotten first): a flood of made-up
``/setup`` s cannot grow memory without bound. A forgotten project uses the config ``/predict`` sends
and the configured key, as a process that never saw its ``/setup`` does."""


class Projects:
    """Thread-safe map project key -> :class:`ProjectState` (at most :data:`MAX_PROJECTS`)."""

    def __init__(self, max_projects: int = MAX_PROJECTS, max_bytes: int = MAX_KEPT_BYTES) -> None:
        self._lock = threading.Lock()
        self._states: OrderedDict[str, ProjectState] = OrderedDict()
        self._bytes: dict[str, int] = {}
        self.max_projects = max_projects
        self.max_bytes = max_bytes

    def setup(
        self,
        key: str,
        label_config: str | None,
        hostname: str | None,
        token: str | None,
        extra: Any = KEEP,
        *,
        trusted: bool = False,
    ) -> ProjectState:
        """Remember what a ``/setup`` said; ``extra`` is its ``extra_params`` (``None`` resets the
        overrides, :data:`KEEP` keeps them); ``trusted``: the request was authenticated (only then may it
        replace the project's token or hostname once it has a token). Raises :class:`ExtraParamsError`
        before anything changes."""
        extra_token, overrides = read_extra_params(None if extra is KEEP else extra)
        token = extra_token or token
        size = len(label_config.encode("utf-8", "replace")) if label_config else 0
        if size > MAX_KEPT_CONFIG_BYTES:
            log.warning(
                "/setup: project %s: a label config of %d bytes is not kept (over %d); /predict uses the "
                "one it is sent",
                key,
                size,
                MAX_KEPT_CONFIG_BYTES,
            )
            label_config, size = None, 0
        with self._lock:
            old = self._states.get(key, ProjectState())
            if (
                not trusted
                and old.token
                and ((token and token != old.token.get()) or (hostname and hostname != old.hostname))
            ):
                log.warning(
                    "/setup: project %s: an unauthenticated /setup cannot replace the project's token or "
                    "hostname (set HISTOLOOP_BASIC_AUTH_USER/_PASSWORD); the first ones are kept",
                    key,
                )
                token, hostname = None, None
            moved = bool(hostname) and hostname != old.hostname
            state = ProjectState(
                label_config=label_config or old.label_config,
                hostname=hostname or old.hostname,
                token=Secret(token) if token else Secret("") if moved else old.token,
                overrides=old.overrides if extra is KEEP else overrides,
            )
            self._states[key] = state
            self._states.move_to_end(key)
            if label_config:
                self._bytes[key] = size
            while len(self._states) > self.max_projects or (
                len(self._states) > 1 and sum(self._bytes.values()) > self.max_bytes
            ):
                gone, _ = self._states.popitem(last=False)
                self._bytes.pop(gone, None)
            return state

    def kept_bytes(self) -> int:
        """Bytes of label configs kept, all projects together."""
        with self._lock:
            return sum(self._bytes.values())

    def get(self, key: str) -> ProjectState:
        with self._lock:
            return self._states.get(key, ProjectState())

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._states, key=lambda k: (len(k), k))
