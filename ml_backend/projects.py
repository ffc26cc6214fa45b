"""What ``/setup`` told the backend about each Label Studio project, kept in this process's memory.

Label Studio sends ``/setup`` on connect and before every batch of predictions, with the project key
``"<id>.<created ts>"``, the label config, its hostname and an access token (the legacy API token of
the project's creator). The token is kept only here, as a :class:`~kernel.settings.Secret` (masked in
``repr``), used only to fetch ``/data/upload/...`` images, and never logged or echoed. With several
gunicorn workers a ``/predict`` may reach a worker that has not seen ``/setup``: it then uses the
label config sent with ``/predict`` and the token from the settings.

The project key itself is :func:`kernel.labelstudio.project_key`'s.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from kernel.settings import Secret


@dataclass(frozen=True)
class ProjectState:
    label_config: str | None = None
    hostname: str | None = None
    token: Secret = Secret("")


class Projects:
    """Thread-safe map project key -> :class:`ProjectState`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, ProjectState] = {}

    def setup(
        self, key: str, label_config: str | None, hostname: str | None, token: str | None
    ) -> ProjectState:
        with self._lock:
            old = self._states.get(key, ProjectState())
            state = ProjectState(
                label_config=label_config or old.label_config,
                hostname=hostname or old.hostname,
                token=Secret(token) if token else old.token,
            )
            self._states[key] = state
            return state

    def get(self, key: str) -> ProjectState:
        with self._lock:
            return self._states.get(key, ProjectState())

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._states, key=lambda k: (len(k), k))
