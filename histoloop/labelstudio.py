"""Run a real Label Studio next to histoloop: for the demo and the end-to-end tests.

Label Studio pins library versions that clash with ours, so it lives in its own virtual environment
(installed on first use from the package registry, ~1 GB, about a minute). It is started on loopback
with an admin user, a legacy API token, local-files serving and a local ML backend allowed — the settings
a lab needs to connect histoloop to a Label Studio on the same machine.

>>> server = LabelStudioServer(venv=Path("/tmp/ls-venv"), data_dir=Path("/tmp/ls-data"),
...                            document_root=Path("/tmp/images"), token="ab" * 20)
>>> server.url
'http://127.0.0.1:8080'
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

LABEL_STUDIO_VERSION = "1.23.2"


class LabelStudioError(RuntimeError):
    pass


@dataclass
class LabelStudioServer:
    venv: Path
    data_dir: Path
    document_root: Path
    port: int = 8080
    host: str = "127.0.0.1"
    username: str = "admin@example.com"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    token: str = field(default_factory=lambda: secrets.token_hex(20), repr=False)
    legacy_tokens: bool = True
    """False: Label Studio as new installs are (``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=false``): the API
    takes only Personal Access Tokens (:meth:`personal_access_token`), ``token`` is refused."""
    extra_env: dict[str, str] = field(default_factory=dict)
    """More of Label Studio's settings, e.g. ``LABEL_STUDIO_HOST`` (the address ``/setup`` names)."""
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def executable(self) -> Path:
        return Path(self.venv) / "bin" / "label-studio"

    def install(self, quiet: bool = True) -> Path:
        """Create the venv and install Label Studio into it, unless it is there already."""
        if self.executable.is_file():
            return self.executable
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        pip = [str(Path(self.venv) / "bin" / "python"), "-m", "pip", "install", *(["-q"] if quiet else [])]
        subprocess.run([*pip, f"label-studio=={LABEL_STUDIO_VERSION}"], check=True)
        return self.executable

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HISTOLOOP_", "VIRTUAL_ENV"))}
        env.update(
            LABEL_STUDIO_USERNAME=self.username,
            LABEL_STUDIO_PASSWORD=self.password,
            LABEL_STUDIO_USER_TOKEN=self.token,
            LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true" if self.legacy_tokens else "false",
            LOCAL_FILES_SERVING_ENABLED="true",
            LOCAL_FILES_DOCUMENT_ROOT=str(Path(self.document_root).resolve()),
            # histoloop's backend runs on 127.0.0.1: both switches must be off for Label Studio to call it
            ML_BLOCK_LOCAL_IP="false",
            SSRF_PROTECTION_ENABLED="false",
            COLLECT_ANALYTICS="false",
            LATEST_VERSION_CHECK="false",
            SENTRY_DSN="",
            FRONTEND_SENTRY_DSN="",
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 240.0) -> LabelStudioServer:
        """Start the server and wait until the API answers with the token (first start migrates: ~30 s)."""
        self.install()
        Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        log = open(Path(self.data_dir) / "label-studio.log", "ab")  # noqa: SIM115 (lives as long as the server)
        cmd = [
            str(self.executable),
            "start",
            "--no-browser",
            "--internal-host",
            self.host,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *(["--enable-legacy-api-token"] if self.legacy_tokens else []),
        ]
        self.process = subprocess.Popen(
            cmd, env=self.environment(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LabelStudioError(f"Label Studio exited with {self.process.returncode}; see {log.name}")
            try:
                if self.legacy_tokens:
                    r = requests.get(f"{self.url}/api/projects", headers=self.headers, timeout=3)
                else:
                    r = requests.get(f"{self.url}/health", timeout=3)
                if r.status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(1)
        self.stop()
        raise LabelStudioError(
            f"Label Studio did not answer at {self.url} within {timeout:.0f} s; see {log.name}"
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def personal_access_token(self) -> str:
        """A new Personal Access Token of the admin user (a JWT refresh token), made as a person makes one
        in *Account & Settings*: logged in with the password, ``POST /api/token/``."""
        session = requests.Session()
        session.get(f"{self.url}/user/login/", timeout=30)
        r = session.post(
            f"{self.url}/user/login/",
            data={
                "email": self.username,
                "password": self.password,
                "csrfmiddlewaretoken": session.cookies.get("csrftoken", ""),
            },
            headers={"Referer": f"{self.url}/user/login/"},
            timeout=60,
        )
        if r.status_code >= 400 or "sessionid" not in session.cookies:
            raise LabelStudioError(f"{self.url}: could not log in as {self.username} (HTTP {r.status_code})")
        r = session.post(
            f"{self.url}/api/token/",
            headers={"X-CSRFToken": session.cookies.get("csrftoken", ""), "Referer": f"{self.url}/"},
            timeout=60,
        )
        if r.status_code not in (200, 201) or "token" not in r.json():
            raise LabelStudioError(f"{self.url}: POST /api/token/ answered HTTP {r.status_code}")
        return str(r.json()["token"])

    def client(self) -> Any:
        """label_studio_sdk's client logged in with the legacy token (:mod:`converters.lsclient`)."""
        from converters.lsclient import LabelStudioClient

        # generous timeout: the retrieve-predictions action waits for the ML backend to predict every task
        return LabelStudioClient(self.url, self.token, timeout=600).sdk

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> LabelStudioServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
