"""Label Studio as new installs are: legacy tokens off, a Personal Access Token (PAT) for everything.

One more Label Studio 1.23.2 (``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=false``, its legacy token refused) and
its own histoloop backend, started with **no** API key: the PAT (made through Label Studio's API, as in
*Account & Settings*) reaches the backend only in the ML backend's ``extra_params`` (with ``uncertainty``),
as a lab connecting it would set it. Tasks are uploaded files (``/data/upload/...``: Label Studio serves
them only with credentials). Checked in Label Studio:

- *Retrieve predictions*: every task predicted (the images fetched with the PAT's access token), the task
  score the ``margin`` that ``extra_params`` chose;
- the export the retraining worker makes, through the PAT;
- ``histoloop predict --project N``: stopped after its first batch and run again it uploads only the rest,
  with the production ``model_version``; a third run uploads nothing; one prediction per task.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from waits import LONG

from converters.lsauth import is_personal_access_token
from histoloop.demo import retrieve_predictions
from histoloop.labelstudio import LabelStudioServer
from histoloop.stack import Stack, settings_env
from kernel.net import free_port
from kernel.settings import load_settings
from training.artifacts import ModelCard
from training.registry import Registry
from training.untrained import register_untrained

pytestmark = pytest.mark.labelstudio
ROOT = Path(__file__).resolve().parents[2]
TASKS = 5
CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="dx" toName="image">'
    '<Choice value="benign"/><Choice value="malignant"/></Choices></View>'
)


def _register_classifier(settings, project: str) -> str:
    card = ModelCard(
        kind="classify", classes=["benign", "malignant"], arch={"backbone": "resnet18"}, input_size=64
    )
    return register_untrained(Registry.from_settings(settings), project, card).label


@pytest.fixture(scope="module")
def pat_label_studio(tmp_path_factory):
    base = tmp_path_factory.mktemp("pat")
    port = free_port()
    # LABEL_STUDIO_HOST: /setup names the address histoloop is configured with, so the PAT that /setup
    # brings in extra_params is offered there (a /setup token goes only back to the hostname it names)
    ls = LabelStudioServer(
        venv=Path(os.environ.get("HISTOLOOP_LABEL_STUDIO_VENV", ROOT / ".venv-label-studio")),
        data_dir=base / "label-studio",
        document_root=base / "files",
        port=port,
        legacy_tokens=False,
        extra_env={"LABEL_STUDIO_HOST": f"http://127.0.0.1:{port}"},
    )
    (base / "files").mkdir()
    env = {
        "HISTOLOOP_MODEL_STORE": str(base / "store"),
        "HISTOLOOP_DEVICE": "cpu",
        "HISTOLOOP_REDIS_URL": "redis://127.0.0.1:9/0",
        "HISTOLOOP_LABEL_STUDIO_URL": ls.url,
        "HISTOLOOP_LABEL_STUDIO_API_KEY": "",
    }
    stack = Stack(env=settings_env(env), log_dir=base / "logs")
    try:
        ls.start()
        yield ls, env, stack
    finally:
        stack.stop()
        ls.stop()


def test_legacy_tokens_off_everything_through_a_personal_access_token(pat_label_studio) -> None:
    from label_studio_sdk.client import LabelStudio

    from workers.pipeline import export_project

    ls, env, stack = pat_label_studio
    assert requests.get(f"{ls.url}/api/projects", headers=ls.headers, timeout=LONG).status_code == 401
    pat = ls.personal_access_token()
    assert is_personal_access_token(pat)
    client = LabelStudio(base_url=ls.url, api_key=pat, timeout=600)
    project = client.projects.create(title="legacy tokens off", label_config=CONFIG)
    files = []
    for i in range(TASKS):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            buf, "PNG"
        )
        files.append((f"file{i}", (f"tile{i}.png", buf.getvalue(), "image/png")))
    access = requests.post(f"{ls.url}/api/token/refresh/", json={"refresh": pat}, timeout=LONG).json()[
        "access"
    ]
    r = requests.post(
        f"{ls.url}/api/projects/{project.id}/import",
        files=files,
        headers={"Authorization": f"Bearer {access}"},
        timeout=LONG,
    )
    assert r.status_code == 201, r.text
    tasks = list(client.tasks.list(project=project.id))
    assert len(tasks) == TASKS and all(t.data["image"].startswith("/data/upload/") for t in tasks)

    settings = load_settings(env=env)
    version = _register_classifier(settings, str(project.id))
    port = free_port()
    stack.backend("127.0.0.1", port)
    client.ml.create(
        project=project.id,
        url=f"http://127.0.0.1:{port}",
        title="histoloop",
        is_interactive=False,
        extra_params={"access_token": pat, "uncertainty": "margin"},
    )

    # Retrieve predictions: the images came through the PAT, the score is the margin extra_params chose
    retrieve_predictions(client, project.id)
    stored = {
        t.id: [p.model_dump() if hasattr(p, "model_dump") else p for p in t.predictions or []]
        for t in client.tasks.list(project=project.id, fields="all")
    }
    assert all(len(p) == 1 for p in stored.values()), stored
    for (pred,) in stored.values():
        assert pred["model_version"] == version
        (choice,) = pred["result"]
        p = choice["score"]
        assert pred["score"] == pytest.approx(2 * p - 1, abs=1e-4)  # margin, not the top probability

    # the export a retraining makes, through the PAT
    exported, config = export_project(
        load_settings(env={**env, "HISTOLOOP_LABEL_STUDIO_API_KEY": pat}), str(project.id)
    )
    assert len(exported) == TASKS and "Choices" in config

    # histoloop predict, stopped after its first batch, run again, and again
    client.actions.create(
        id="delete_tasks_predictions", project=project.id, selected_items={"all": True, "excluded": []}
    )
    from ml_backend.bulk import predict_project

    class Stop(Exception):
        pass

    def stop_after_first_batch(done: int, todo: int) -> None:
        if done >= 2:
            raise Stop

    pat_settings = load_settings(env={**env, "HISTOLOOP_LABEL_STUDIO_API_KEY": pat})
    with pytest.raises(Stop):
        predict_project(pat_settings, project.id, batch=2, progress=stop_after_first_batch)
    assert sum(bool(t.predictions) for t in client.tasks.list(project=project.id, fields="all")) == 2
    cli = [
        sys.executable,
        "-m",
        "histoloop.cli",
        "predict",
        "--project",
        str(project.id),
        "--batch",
        "2",
        "--json",
    ]
    child_env = settings_env({**env, "HISTOLOOP_LABEL_STUDIO_API_KEY": pat})
    child_env["PYTHONPATH"] = str(ROOT)
    reports = []
    for _ in range(2):
        done = subprocess.run(cli, env=child_env, capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        reports.append(json.loads(done.stdout[done.stdout.index("{") :]))
    assert (reports[0]["uploaded"], reports[0]["skipped"]) == (TASKS - 2, 2), reports[0]
    assert (reports[1]["uploaded"], reports[1]["skipped"]) == (0, TASKS), reports[1]
    assert reports[0]["model_version"] == version
    final = [t.predictions for t in client.tasks.list(project=project.id, fields="all")]
    assert all(len(p) == 1 for p in final)
    versions = {
        (p.model_dump() if hasattr(p, "model_dump") else p)["model_version"] for ps in final for p in ps
    }
    assert versions == {version}
