"""``/predict`` under load: latency and refusals at 1, 10 and 50 concurrent clients.

    .venv/bin/python -m benchmarks.load [--clients 1,10,50] [--requests 3] [--json OUT]

``histoloop serve`` (gunicorn, 1 process, 4 threads: 3 predict slots) on 127.0.0.1 with a tiny
classifier (resnet18, 224 px input, random weights) and 512x512 PNG tasks from the local-files root.
Each of N clients posts ``--requests`` single-task ``/predict`` one after the other. Reported per N:
p50 and p99 of the answered requests' wall time, and how many were ``503``. Baseline in the same run:
the same server with ``HISTOLOOP_PREDICT_QUEUE=0`` (no waiting: a ``503`` as soon as the slots are taken,
the behaviour before the queue).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import requests

from benchmarks.slowclients import serve
from kernel.settings import load_settings

CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="dx" toName="image">'
    '<Choice value="benign"/><Choice value="malignant"/></Choices></View>'
)
PROJECT = "7.1795424387"


def _prepare(root: Path) -> tuple[Path, Path]:
    from PIL import Image

    from training.artifacts import ModelCard
    from training.registry import Registry
    from training.untrained import register_untrained

    store, files = root / "store", root / "files"
    (files / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)).save(
            files / "images" / f"{i}.png"
        )
    settings = load_settings(env={"HISTOLOOP_MODEL_STORE": str(store), "HISTOLOOP_DEVICE": "cpu"})
    card = ModelCard(
        kind="classify",
        classes=["benign", "malignant"],
        arch={"backbone": "resnet18"},
        input_size=224,
    )
    register_untrained(Registry.from_settings(settings), "7", card, head_bias=0.5, by="benchmark")
    return store, files


def _client(url: str, n: int, offset: int) -> list[tuple[float, int]]:
    out = []
    with requests.Session() as session:
        for k in range(n):
            body = {
                "tasks": [
                    {"id": k, "data": {"image": f"/data/local-files/?d=images/{(offset + k) % 8}.png"}}
                ],
                "project": PROJECT,
                "label_config": CONFIG,
            }
            t0 = time.monotonic()
            r = session.post(f"{url}/predict", json=body, timeout=300)
            out.append((time.monotonic() - t0, r.status_code))
    return out


def _level(url: str, clients: int, per_client: int) -> dict[str, Any]:
    with ThreadPoolExecutor(clients) as pool:
        results = [
            x for f in [pool.submit(_client, url, per_client, i) for i in range(clients)] for x in f.result()
        ]
    answered = [s for s, code in results if code == 200]
    return {
        "clients": clients,
        "requests": len(results),
        "answered": len(answered),
        "refused_503": sum(code == 503 for _, code in results),
        "other": sum(code not in (200, 503) for _, code in results),
        "p50_ms": round(float(np.percentile(answered, 50)) * 1000, 1) if answered else None,
        "p99_ms": round(float(np.percentile(answered, 99)) * 1000, 1) if answered else None,
    }


def run(levels: list[int], per_client: int, queue: int | None) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        store, files = _prepare(Path(tmp))
        env = {"HISTOLOOP_LOCAL_FILES_ROOT": str(files)}
        if queue is not None:
            env["HISTOLOOP_PREDICT_QUEUE"] = str(queue)
        with serve(store, threads=4, env=env) as url:
            for _ in range(3):  # the model loads on the first; warm-up
                _client(url, 1, 0)
            return [_level(url, n, per_client) for n in levels]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,10,50")
    parser.add_argument("--requests", type=int, default=3, help="requests per client")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.clients.split(",")]
    result = {
        "queue (default: 64 waiting, 30 s)": run(levels, args.requests, None),
        "baseline: no queue (HISTOLOOP_PREDICT_QUEUE=0)": run(levels, args.requests, 0),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
