"""Helpers for the workers tests (fixtures live in conftest.py).

- :class:`LabelStudioStub`: a small real HTTP server answering the three Label Studio endpoints a
  retraining job calls through label_studio_sdk (``/api/version/``, ``/api/projects/<id>/``,
  ``/api/projects/<id>/export``) with a real export JSON; it can be made slow or failing.
- :func:`start_worker`: a real ``histoloop worker`` process.
- :func:`annotation_webhook`: an ``ANNOTATION_CREATED`` body shaped like Label Studio 1.23.2's.
- :func:`connect`: record projects as connected, as Label Studio's ``/setup`` on connect does (webhooks
  of projects that never connected are ignored).
- :func:`wait_for`: poll a condition.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from waits import LONG

from kernel.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EXPORT = ROOT / "tests" / "data" / "labelstudio_export.json"
EXPORT_CONFIG = ROOT / "tests" / "data" / "labelstudio_config.xml"
SHARED_DATA = ROOT / ".." / "shared" / "data"

BOX_CHOICES_CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<RectangleLabels name="label" toName="image"><Label value="Tumor"/></RectangleLabels>'
    '<Choices name="dx" toName="image"><Choice value="benign"/><Choice value="malignant"/></Choices></View>'
)


def connect(settings: Settings, *projects: int | str) -> None:
    """Record ``projects`` as connected to the backend (what ``/setup`` does when Label Studio connects)."""
    from workers.events import EventStore

    store = EventStore.from_settings(settings)
    for project in projects:
        store.connect(str(project))


def annotation_webhook(
    project: int,
    annotation_id: int,
    *,
    label_config: str = BOX_CHOICES_CONFIG,
    action: str = "ANNOTATION_CREATED",
    cancelled: bool = False,
    ground_truth: bool = False,
    types: tuple[str, ...] = ("rectanglelabels", "choices"),
) -> dict[str, Any]:
    result = []
    if "rectanglelabels" in types:
        result.append(
            {
                "from_name": "label",
                "to_name": "image",
                "type": "rectanglelabels",
                "original_width": 640,
                "original_height": 480,
                "value": {
                    "x": 11,
                    "y": 21,
                    "width": 30,
                    "height": 40,
                    "rotation": 0,
                    "rectanglelabels": ["Tumor"],
                },
            }
        )
    if "choices" in types:
        result.append(
            {"from_name": "dx", "to_name": "image", "type": "choices", "value": {"choices": ["malignant"]}}
        )
    return {
        "action": action,
        "annotation": {
            "id": annotation_id,
            "result": result,
            "was_cancelled": cancelled,
            "ground_truth": ground_truth,
            "task": 1000 + annotation_id,
            "project": project,
            "completed_by": 1,
            "updated_by": 1,
        },
        "project": {
            "id": project,
            "title": f"p{project}",
            "label_config": label_config,
            "token": "SECRET-PROJECT-TOKEN",
        },
    }


class LabelStudioStub:
    """Real HTTP on 127.0.0.1 answering what ``label_studio_sdk`` asks for an export."""

    def __init__(self, tasks: list[dict[str, Any]], label_config: str) -> None:
        self.tasks = tasks
        self.label_config = label_config
        self.export_delay_s = 0.0
        self.fail_status: int | None = None
        self.requests: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].rstrip("/")
                stub.requests.append(path)
                if stub.fail_status is not None:
                    return self._send(stub.fail_status, {"detail": "unavailable"})
                if path == "/api/version":
                    return self._send(200, {"release": "1.23.2", "edition": "Community"})
                parts = path.split("/")
                if len(parts) == 4 and parts[:3] == ["", "api", "projects"]:
                    return self._send(
                        200, {"id": int(parts[3]), "title": "stub", "label_config": stub.label_config}
                    )
                if len(parts) == 5 and parts[4] == "export":
                    time.sleep(stub.export_delay_s)
                    return self._send(200, stub.tasks)
                return self._send(404, {"detail": "not found"})

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def exports(self) -> int:
        return sum(1 for p in self.requests if p.endswith("/export"))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class WorkerProcess:
    """A real ``histoloop worker`` process (its own session); :meth:`kill` sends SIGKILL to it alone."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        burst: bool = False,
        name: str | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        args = [*prefix, sys.executable, "-m", "histoloop.cli", "worker", "--device", "cpu"]
        if burst:
            args.append("--burst")
        if name:
            args += ["--name", name]
        self.log = log
        with open(log, "ab") as fh:
            self.process = subprocess.Popen(
                args, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(LONG)

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wenv(settings: Settings, config_file: Path | None = None) -> dict[str, str]:
    """The environment of a child process with these settings (project defaults via env, train via TOML)."""
    env = dict(os.environ)
    d = settings.project_defaults
    env.update(
        {
            "HISTOLOOP_MODEL_STORE": str(settings.model_store),
            "HISTOLOOP_REDIS_URL": settings.redis_url,
            "HISTOLOOP_QUEUE": settings.queue,
            "HISTOLOOP_DEVICE": settings.device,
            "HISTOLOOP_LABEL_STUDIO_URL": settings.label_studio_url,
            "HISTOLOOP_LABEL_STUDIO_API_KEY": settings.label_studio_api_key.get(),
            "HISTOLOOP_JOB_TIMEOUT": str(settings.job_timeout),
            "HISTOLOOP_HEARTBEAT": str(settings.heartbeat),
            "HISTOLOOP_RETRAIN_THRESHOLD": str(d.retrain_threshold),
            "HISTOLOOP_AUTO_PROMOTE": d.auto_promote,
            "HISTOLOOP_PROMOTION_MARGIN": str(d.promotion_margin),
            "HISTOLOOP_APPROVAL": d.approval,
            "HISTOLOOP_VAL_FRACTION": str(d.val_fraction),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if settings.local_files_root:
        env["HISTOLOOP_LOCAL_FILES_ROOT"] = str(settings.local_files_root)
    if settings.database_url:
        env["HISTOLOOP_DATABASE_URL"] = settings.database_url.get()
    else:
        env.pop("HISTOLOOP_DATABASE_URL", None)
    if config_file is not None:
        env["HISTOLOOP_CONFIG"] = str(config_file)
    else:
        env.pop("HISTOLOOP_CONFIG", None)
    return env


CHOICES_CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<Choices name="diagnosis" toName="image" choice="single"><Choice value="benign"/><Choice value="malignant"/>'
    "</Choices></View>"
)


def write_config(path: Path, kind: str, **train: Any) -> Path:
    """A TOML config file with the training options of ``kind`` (what a worker process reads)."""
    options = ", ".join(f"{k} = {json.dumps(v)}" for k, v in train.items())
    path.write_text(f"[train]\n{kind} = {{ {options} }}\n")
    return path


def predict_body(project: int, image: str, label_config: str = CHOICES_CONFIG) -> dict[str, Any]:
    """A /predict body as Label Studio 1.23 sends it."""
    return {
        "tasks": [{"id": 1, "data": {"image": image}, "project": project}],
        "project": f"{project}.1795424387",
        "label_config": label_config,
        "params": {"login": None, "password": None, "context": None},
    }
