"""A project of thousands of small tasks: ``histoloop predict`` against Label Studio's "Retrieve predictions".

    .venv/bin/python -m benchmarks.bulk [--tasks 2000] [--json OUT.json]

A real Label Studio 1.23.2 (its own venv, ``HISTOLOOP_LABEL_STUDIO_VENV``), two projects with the same
``--tasks`` tasks (64x64 H&E-like PNG tiles, local files), a tiny classifier (resnet18 at 64 px, random
init) registered and promoted for both, and ``histoloop serve`` connected to the second one:

- **bulk**: ``predict_project(..., batch=32)`` on the first project (what ``histoloop predict --project N
  --batch 32`` runs), then a second run (resume: nothing left to do);
- **retrieve**: the Data Manager action ``retrieve_tasks_predictions`` on all tasks of the second project,
  which Label Studio sends to the backend as **one** ``/predict`` with every task and waits at most 100 s
  for (its ``ML_TIMEOUT_PREDICT``); reported: its wall time and how many tasks got a prediction.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from kernel.net import free_port

ROOT = Path(__file__).resolve().parents[1]
CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="dx" toName="image">'
    '<Choice value="benign"/><Choice value="malignant"/></Choices></View>'
)


def _register(settings: Any, project: str) -> str:
    from training.artifacts import ModelCard
    from training.registry import Registry
    from training.untrained import register_untrained

    card = ModelCard(
        kind="classify", classes=["benign", "malignant"], arch={"backbone": "resnet18"}, input_size=64
    )
    return register_untrained(Registry.from_settings(settings), project, card, by="benchmark").label


def _count_predicted(client: Any, project: int) -> int:
    return sum(1 for t in client.tasks.list(project=project, fields="all") if t.predictions)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from PIL import Image

    from converters.synthetic import make_tile
    from histoloop.demo import local_files_url, retrieve_predictions
    from histoloop.labelstudio import LabelStudioServer
    from histoloop.stack import Stack, settings_env
    from kernel.settings import load_settings
    from ml_backend.bulk import predict_project

    tmp = Path(tempfile.mkdtemp(prefix="histoloop-bench-bulk-"))
    files = tmp / "files"
    (files / "tiles").mkdir(parents=True)
    paths = []
    for i in range(args.tasks):
        p = files / "tiles" / f"t{i:05d}.png"
        Image.fromarray(make_tile(seed=i % 50, size=64, malignant=i % 2 == 0).image).save(p)
        paths.append(p)
    ls = LabelStudioServer(
        venv=Path(os.environ.get("HISTOLOOP_LABEL_STUDIO_VENV", ROOT / ".venv-label-studio")),
        data_dir=tmp / "ls",
        document_root=files,
        port=free_port(),
    )
    env = {
        "HISTOLOOP_MODEL_STORE": str(tmp / "store"),
        "HISTOLOOP_LOCAL_FILES_ROOT": str(files),
        "HISTOLOOP_DEVICE": "cpu",
        "HISTOLOOP_REDIS_URL": "redis://127.0.0.1:9/0",
        "HISTOLOOP_LABEL_STUDIO_URL": ls.url,
        "HISTOLOOP_LABEL_STUDIO_API_KEY": ls.token,
    }
    stack = Stack(env=settings_env(env), log_dir=tmp / "logs")
    out: dict[str, Any] = {"tasks": args.tasks, "load_before": os.getloadavg()[0]}
    try:
        ls.start()
        client = ls.client()
        settings = load_settings(env=env)
        ids = []
        for title in ("bulk", "retrieve"):
            project = client.projects.create(title=f"benchmark {title}", label_config=CONFIG)
            client.import_storage.local.create(
                project=project.id, path=str(files / "tiles"), use_blob_urls=True
            )
            client.projects.import_tasks(
                project.id, request=[{"image": local_files_url(p, files)} for p in paths]
            )
            _register(settings, str(project.id))
            ids.append(project.id)
        t0 = time.perf_counter()
        report = predict_project(settings, ids[0], batch=32)
        out["bulk"] = {
            "seconds": time.perf_counter() - t0,
            "uploaded": report.uploaded,
            "failed": report.failed,
            "predicted_in_label_studio": _count_predicted(client, ids[0]),
        }
        t0 = time.perf_counter()
        again = predict_project(settings, ids[0], batch=32)
        out["bulk_rerun"] = {
            "seconds": time.perf_counter() - t0,
            "uploaded": again.uploaded,
            "skipped": again.skipped,
        }
        print(json.dumps(out), flush=True)
        port = free_port()
        stack.backend("127.0.0.1", port)
        client.ml.create(
            project=ids[1], url=f"http://127.0.0.1:{port}", title="histoloop", is_interactive=False
        )
        t0 = time.perf_counter()
        error = None
        try:
            retrieve_predictions(client, ids[1])
        except Exception as exc:  # what a user sees when Label Studio gives up
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        out["retrieve"] = {
            "seconds": time.perf_counter() - t0,
            "error": error,
            "predicted_in_label_studio": _count_predicted(client, ids[1]),
        }
    finally:
        stack.stop()
        ls.stop()
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
