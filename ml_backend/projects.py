"""What ``/setup`` told the backend about each Label Studio project, kept in this process's memory.

Label Studio sends ``/setup`` on connect and before every batch of predictions, with the project key
``"<id>.<created ts>"``, the label config, its hostname and an access token (the legacy API token of
the project's creator). The token is kept only here, as a :class:`~kernel.settings.Secret` (masked in
``repr``), used only to fetch ``/data/upload/...`` images from the ``hostname`` it came with (see
:mod:`ml_backend.task_images`), and never logged or echoed. A ``/setup`` that names another hostname
without a token drops the token it had: a token never follows a hostname change. With several
gunicorn workers a ``/predict`` may reach a worker that has not seen ``/setup``: it then uses the
label config sent with ``/predict`` and the token from the settings.

``extra_params`` (the JSON object of the ML backend's *Extra params* in Label Studio, sent with every
``/setup``) is read too: ``access_token`` (or ``api_key``: a Personal Access Token or legacy token to use
instead of the legacy token Label Studio sends, which does not work where legacy tokens are off) and the
serving settings ``min_score``, ``label_map`` and ``uncertainty`` for this project, over the config file's.
Other keys, and values of the wrong type, are ignored with a warning.

The project key itself is :func:`kernel.labelstudio.project_key`'s.

>>> state = Projects().setup("4", None, None, "legacy", {"min_score": 0.6, "access_token": "pat", "x": 1})
>>> state.token.get(), state.overrides
('pat', {'min_score': 0.6})
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
        typ = SERVING_KEYS.get(key)
        if typ is None:
            log.warning(
                "/setup: extra_params key %r is not a serving setting (%s); ignored",
                key,
                sorted(SERVING_KEYS),
            )
        elif typ is float and isinstance(value, int | float) and not isinstance(value, bool):
            overrides[key] = float(value)
        elif typ is dict and isinstance(value, Mapping):
            overrides[key] = {str(k): str(v) for k, v in value.items()}
        elif key == "uncertainty" and value in UNCERTAINTY_MEASURES:
            overrides[key] = value
        else:
            want = "|".join(UNCERTAINTY_MEASURES) if key == "uncertainty" else f"a {typ.__name__}"
            log.warning("/setup: extra_params %r must be %s; ignored", key, want)
    return token, overrides


MAX_PROJECTS = 256
"""Projects remembered per process (least recently set up forgotten first): a flood of made-up
``/setup`` s cannot grow memory without bound. A forgotten project uses the config ``/predict`` sends
and the configured key, as a process that never saw its ``/setup`` does."""


class Projects:
    """Thread-safe map project key -> :class:`ProjectState` (at most :data:`MAX_PROJECTS`)."""

    def __init__(self, max_projects: int = MAX_PROJECTS) -> None:
        self._lock = threading.Lock()
        self._states: OrderedDict[str, ProjectState] = OrderedDict()
        self.max_projects = max_projects

    def setup(
        self, key: str, label_config: str | None, hostname: str | None, token: str | None, extra: Any = None
    ) -> ProjectState:
        extra_token, overrides = read_extra_params(extra)
        token = extra_token or token
        with self._lock:
            old = self._states.get(key, ProjectState())
            moved = bool(hostname) and hostname != old.hostname
            state = ProjectState(
                label_config=label_config or old.label_config,
                hostname=hostname or old.hostname,
                token=Secret(token) if token else Secret("") if moved else old.token,
                overrides=overrides if extra is not None else old.overrides,
            )
            self._states[key] = state
            self._states.move_to_end(key)
            while len(self._states) > self.max_projects:
                self._states.popitem(last=False)
            return state

    def get(self, key: str) -> ProjectState:
        with self._lock:
            return self._states.get(key, ProjectState())

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._states, key=lambda k: (len(k), k))
